//! Hardware for containers: each provider turns a request (the container's annotations, whether
//! it has a user namespace, its ids) into a `Grant`: device nodes, cgroup rules and other config
//! edits in the runtime-spec's vocabulary, plus actions that are not config (a measurement).
//! chitin merges a grant into the container's config before planning it, so every injected
//! item meets the same checks as the user's.
//!
//! Host reads go through the roots of a `Host` (/sys, /dev), so that every provider is tested on
//! fake trees shaped like real hosts. Nothing here changes the host.

pub mod host;
pub mod tpm;

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use serde::{Deserialize, Serialize};

pub use host::Host;

/// What a provider may look at.
pub struct Request<'a> {
    pub annotations: &'a BTreeMap<String, String>,
}

/// What the runtime is asked to do beyond the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Before `start` lets the container run: extend this PCR with the container's measurement
    /// (the effective config, the image's digest), recorded in the runtime's event log.
    Measure { pcr: u32 },
}

/// A provider's answer, with where it came from ("TPM (org.chitin.tpm.device)").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub origin: String,
    pub devices: Vec<LinuxDevice>,
    pub device_rules: Vec<LinuxDeviceCgroup>,
    pub actions: Vec<Action>,
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

/// Every annotation of every provider.
pub fn annotations() -> Vec<Annotation> {
    tpm::ANNOTATIONS.into_iter().collect()
}

/// Every provider's grant for `req`, in order.
pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Vec<Grant>, DeviceError> {
    Ok(tpm::resolve(host, req)?.into_iter().collect())
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
