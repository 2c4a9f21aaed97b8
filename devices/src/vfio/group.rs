//! An IOMMU group as sysfs shows it, and as the VFIO driver answers for it.

use std::os::fd::AsRawFd;
use std::path::Path;

use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_GROUP_FLAGS_VIABLE, VFIO_TYPE, vfio_group_status,
};

use crate::Host;

/// The PCI class of a bridge (0x0604xx): it may stay with its own driver in a group.
const BRIDGE_CLASS: &str = "0x0604";

/// The group of PCI function `addr`, once every member is checked to be ours to hand over: a
/// clearer refusal than the driver's "not viable", which the status check still has the last
/// word on.
pub fn of(host: &Host, addr: &str) -> Result<String, String> {
    let dev = host.sys.join("bus/pci/devices").join(addr);
    let link = std::fs::read_link(dev.join("iommu_group")).map_err(|e| {
        format!("{addr}: no IOMMU group ({e}): is the IOMMU on (intel_iommu=on, amd_iommu)?")
    })?;
    let group = link
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{addr}: iommu_group links to {}", link.display()))?
        .to_owned();
    if driver(&dev).as_deref() != Some("vfio-pci") {
        return Err(format!(
            "{addr} is bound to {}, not vfio-pci",
            driver(&dev).unwrap_or_else(|| "no driver".into())
        ));
    }
    let members = host
        .sys
        .join("kernel/iommu_groups")
        .join(&group)
        .join("devices");
    let list = std::fs::read_dir(&members).map_err(|e| format!("{}: {e}", members.display()))?;
    for m in list {
        let m = m.map_err(|e| e.to_string())?;
        let name = m.file_name().to_string_lossy().into_owned();
        // The group's own link, which also finds members that are not PCI functions.
        let dev = m.path();
        let bridge =
            std::fs::read_to_string(dev.join("class")).is_ok_and(|c| c.starts_with(BRIDGE_CLASS));
        match driver(&dev) {
            None => {}
            // pci-stub parks a device so that no host driver takes it, as the kernel allows.
            Some(d) if d == "vfio-pci" || d == "pci-stub" => {}
            Some(_) if bridge => {}
            Some(d) => {
                return Err(format!(
                    "{name}, in IOMMU group {group} with {addr}, is bound to {d}: bind it to vfio-pci or unbind it"
                ));
            }
        }
    }
    Ok(group)
}

/// The name of the driver a PCI function is bound to.
pub(crate) fn driver(dev: &Path) -> Option<String> {
    let link = std::fs::read_link(dev.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// What the VFIO driver says of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Viable,
    /// A member is bound to a host driver.
    NotViable,
    /// Another process holds the group open (a group opens once).
    InUse,
}

/// Asks the driver about a group node; the kernel's answer on a real host.
pub trait Vfio {
    fn status(&self, node: &Path) -> Result<Status, String>;
}

pub struct Kernel;

// VFIO_GROUP_GET_STATUS is _IO(VFIO_TYPE, VFIO_BASE + 3) though it takes a pointer: a "bad"
// ioctl, whose number does not encode its argument.
nix::ioctl_readwrite_bad!(
    group_get_status,
    nix::request_code_none!(VFIO_TYPE, VFIO_BASE + 3),
    vfio_group_status
);

impl Vfio for Kernel {
    fn status(&self, node: &Path) -> Result<Status, String> {
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(node)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(Status::InUse),
            Err(e) => return Err(format!("{}: {e}", node.display())),
        };
        let mut st = vfio_group_status {
            argsz: std::mem::size_of::<vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: the ioctl writes a vfio_group_status of the size argsz gives.
        unsafe { group_get_status(f.as_raw_fd(), &mut st) }
            .map_err(|e| format!("VFIO_GROUP_GET_STATUS: {e}"))?;
        Ok(if st.flags & VFIO_GROUP_FLAGS_VIABLE != 0 {
            Status::Viable
        } else {
            Status::NotViable
        })
    }
}
