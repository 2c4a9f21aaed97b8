//! linux.cgroupsPath: where the container's cgroup goes (its resources are checked against the
//! host's layout by cgroup::Layout).

use oci_spec::runtime::Linux;

use super::{DEFAULT_CGROUP_PARENT, PlanError};

/// The cgroup path, and whether it is chitin's default (so its parent is chitin's too).
pub fn path(linux: &Linux, id: &str) -> Result<(String, bool), PlanError> {
    let default = format!("{DEFAULT_CGROUP_PARENT}/{id}");
    let path = match linux.cgroups_path() {
        Some(p) if !p.as_os_str().is_empty() => {
            let s = p
                .to_str()
                .ok_or_else(|| PlanError::field("linux.cgroupsPath", "not UTF-8"))?;
            if s.split('/').any(|c| c == "..") {
                return Err(PlanError::field(
                    "linux.cgroupsPath",
                    "must not contain \"..\"",
                ));
            }
            if s.contains(':') {
                return Err(PlanError::field(
                    "linux.cgroupsPath",
                    "systemd slice:prefix:name paths need --systemd-cgroup, which chitin does not support",
                ));
            }
            s.to_owned()
        }
        _ => default.clone(),
    };
    let is_default = path == default;
    Ok((path, is_default))
}
