//! Hardware for containers: each provider turns a request (the container's annotations, whether
//! it has a user namespace, its ids) into a `Grant`: device nodes, cgroup rules and other config
//! edits in the runtime-spec's vocabulary, plus actions that are not config (a measurement).
//! chitin merges a grant into the container's config before planning it, so every injected
//! item meets the same checks as the user's.
//!
//! Host reads go through the roots of a `Host` (/sys, /dev), so that every provider is tested on
//! fake trees shaped like real hosts. Nothing here changes the host.

pub mod cdi;
pub mod enclave;
pub mod host;
pub mod rdma;
pub mod sriov;
#[cfg(test)]
mod testing;
pub mod tpm;
pub mod vfio;

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Hook, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxNetDevice,
    LinuxRdma, Mount, PosixRlimit,
};
use serde::{Deserialize, Serialize};

pub use host::{Host, HostNode};

/// What a provider may look at: the container's annotations, its process's ids and its mounts.
pub struct Request<'a> {
    pub annotations: &'a BTreeMap<String, String>,
    pub uid: u32,
    pub gid: u32,
    pub mounts: &'a [Mount],
    /// The container has a user namespace (its init sets rlimits inside it).
    pub userns: bool,
}

/// What the runtime is asked to do beyond the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Before `start` lets the container run: extend this PCR with the container's measurement
    /// (the effective config, the image's digest), recorded in the runtime's event log.
    Measure { pcr: u32 },
    /// A file that a measurement of the container covers besides its config, by the digest it
    /// had when the container was created: a CDI spec, whose hooks run as root.
    Digest { file: String, sha256: String },
    /// With `Measure`: the measurement covers the digest of the rootfs tree, taken at start.
    MeasureRootfs,
    /// At create, before anything moves: the SR-IOV physical function `pf` gives its virtual
    /// function `vf` this MAC address and VLAN, as the SR-IOV CNI sets them, and the VF's own
    /// interface `iface` (where it has one) takes the MAC too; put back as they were on delete.
    ConfigureVf {
        pf: String,
        vf: u32,
        mac: Option<[u8; 6]>,
        vlan: Option<u16>,
        iface: Option<String>,
    },
    /// At create, with linux.netDevices: the RDMA device moves into the container's network
    /// namespace (the RDMA subsystem is in exclusive mode, where a device is usable only from
    /// the namespace it belongs to).
    RdmaNamespace { device: String, annotation: String },
}

/// When a hook runs, by the runtime-spec's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

/// A provider's answer, with where it came from ("chitin's TPM provider").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub origin: String,
    /// The config's own items at the same key stay (a mount at the same destination, an rlimit
    /// of the same type); else the grant's replace them.
    pub fallback: bool,
    pub devices: Vec<LinuxDevice>,
    pub device_rules: Vec<LinuxDeviceCgroup>,
    /// KEY=VALUE each.
    pub env: Vec<String>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<(HookPhase, Hook)>,
    pub additional_gids: Vec<u32>,
    pub rlimits: Vec<PosixRlimit>,
    pub hugepage_limits: Vec<LinuxHugepageLimit>,
    /// Host interfaces to move into the container (linux.netDevices), by their host name.
    pub net_devices: Vec<(String, LinuxNetDevice)>,
    /// rdma cgroup limits (linux.resources.rdma), by device.
    pub rdma: Vec<(String, LinuxRdma)>,
    /// The cpus and memory nodes to pin the container to (linux.resources.cpu's cpus, mems).
    pub cpuset: Option<(String, String)>,
    pub actions: Vec<Action>,
}

impl Grant {
    /// The host's character device `n` at `path`, its mode and owner the host node's, with the
    /// rule that lets the container read and write it.
    pub fn char_device(&mut self, path: &str, n: &HostNode) {
        let mut d = char_node(path, n.major, n.minor, n.mode);
        d.set_uid(Some(n.uid));
        d.set_gid(Some(n.gid));
        self.devices.push(d);
        self.device_rules.push(allow_rule(
            LinuxDeviceType::C,
            Some(n.major),
            Some(n.minor),
            "rw",
        ));
    }
}

/// A request that cannot be granted, by the annotation that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceError {
    pub annotation: String,
    pub reason: String,
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotations[{:?}]: {}", self.annotation, self.reason)
    }
}

impl std::error::Error for DeviceError {}

/// An annotation a provider reads: for `features`, and whether it widens what the container can
/// reach (then it is among `potentiallyUnsafeConfigAnnotations`).
pub struct Annotation {
    pub key: &'static str,
    pub what: &'static str,
    pub unsafe_: bool,
}

/// A true-or-false annotation; absent is false.
pub(crate) fn flag(req: &Request<'_>, key: &str) -> Result<bool, DeviceError> {
    match req.annotations.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(DeviceError {
            annotation: key.into(),
            reason: format!("{v:?} is not true or false"),
        }),
    }
}

/// Every annotation of every provider.
pub fn annotations() -> Vec<Annotation> {
    cdi::ANNOTATIONS
        .into_iter()
        .chain(enclave::ANNOTATIONS)
        .chain(sriov::ANNOTATIONS)
        .chain(vfio::ANNOTATIONS)
        .chain(rdma::ANNOTATIONS)
        .chain(tpm::ANNOTATIONS)
        .collect()
}

/// Every provider's grant for `req`, in order.
pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Vec<Grant>, DeviceError> {
    let mut grants = cdi::resolve(host, req)?;
    grants.extend(enclave::resolve(host, req)?);
    let vfs = sriov::resolve(host, req)?;
    grants.extend(vfs.net);
    grants.extend(vfio::resolve(host, req, vfs.vfio)?);
    grants.extend(rdma::resolve(host, req)?);
    grants.extend(tpm::resolve(host, req)?);
    Ok(grants)
}

/// The names in a sysfs directory, sorted; none where it cannot be read.
pub(crate) fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A character device node of root's, as a grant (or chitin's defaults) gives it.
pub fn char_node(path: &str, major: i64, minor: i64, mode: u32) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(path.into());
    d.set_typ(LinuxDeviceType::C);
    d.set_major(major);
    d.set_minor(minor);
    d.set_file_mode(Some(mode));
    d.set_uid(Some(0));
    d.set_gid(Some(0));
    d
}

/// A cgroup rule that allows `access` to the devices it names (None: any major or minor).
pub fn allow_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_owned()));
    r
}
