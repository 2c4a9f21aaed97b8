//! What the providers' tests share: fake host trees in temp directories, and requests.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use oci_spec::runtime::Mount;

use crate::Request;
use crate::vfio::{Status, Vfio};

/// A temp directory for a fake host, fresh, removed when dropped.
pub struct Tree(pub PathBuf);

impl Tree {
    /// One of its own: tests run in parallel.
    pub fn new(name: &str) -> Tree {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("chitin-devices-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Tree(root)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A grant's nodes as (path, major, minor).
pub fn nodes(g: &crate::Grant) -> Vec<(String, i64, i64)> {
    g.devices
        .iter()
        .map(|d| (d.path().display().to_string(), d.major(), d.minor()))
        .collect()
}

pub fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A request with these annotations, for a process of uid and gid `id`, with `mounts`.
pub fn request<'a>(a: &'a BTreeMap<String, String>, id: u32, mounts: &'a [Mount]) -> Request<'a> {
    Request {
        annotations: a,
        uid: id,
        gid: id,
        mounts,
        userns: false,
    }
}

/// A PCI function at `addr` in IOMMU group `group`, bound to `driver`, of PCI class `class`.
pub fn function(root: &Path, addr: &str, group: &str, driver: Option<&str>, class: &str) {
    let dev = root.join("sys/bus/pci/devices").join(addr);
    std::fs::create_dir_all(&dev).unwrap();
    symlink(
        format!("../../../kernel/iommu_groups/{group}"),
        dev.join("iommu_group"),
    )
    .unwrap();
    if let Some(d) = driver {
        symlink(format!("../../../bus/pci/drivers/{d}"), dev.join("driver")).unwrap();
    }
    std::fs::write(dev.join("class"), format!("{class}\n")).unwrap();
    let members = root
        .join("sys/kernel/iommu_groups")
        .join(group)
        .join("devices");
    std::fs::create_dir_all(&members).unwrap();
    symlink(
        format!("../../../../bus/pci/devices/{addr}"),
        members.join(addr),
    )
    .unwrap();
}

/// A VFIO driver that says `status` of every group.
pub struct Says(pub Status);

impl Vfio for Says {
    fn status(&self, _: &Path) -> Result<Status, String> {
        Ok(self.0)
    }
}
