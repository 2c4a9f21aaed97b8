//! The LSM fields: the AppArmor profile, and the SELinux process and mount labels, checked
//! against what the host runs (and SELinux's loaded policy) while planning, so that a label the
//! kernel would refuse fails before anything is made, naming its field.

use super::PlanError;
use super::host::Host;

/// A profile to confine the process by; refused where AppArmor is not running, since the
/// process would otherwise run unconfined while its config says it is not.
pub fn apparmor_profile(
    host: &dyn Host,
    field: &str,
    profile: Option<&str>,
) -> Result<Option<String>, PlanError> {
    match profile.filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) if p.contains(['\n', '\0']) => Err(PlanError::field(field, "not a profile name")),
        Some(_) if !host.apparmor_enabled() => Err(PlanError::field(
            field,
            "AppArmor is not enabled in this kernel",
        )),
        Some(p) => Ok(Some(p.to_owned())),
    }
}

/// linux.mountLabel: ignored with a warning where SELinux is not running, as runc (which drops it
/// silently) and crun do: the mounts are the same, only unlabelled, and a config written for
/// SELinux hosts runs elsewhere. Checked like a process label where SELinux runs.
pub fn mount_label(host: &dyn Host, label: Option<&str>) -> Result<Option<String>, PlanError> {
    const FIELD: &str = "linux.mountLabel";
    if label.is_some_and(|l| !l.is_empty()) && !host.selinux_enabled() {
        crate::logger::warn(&format!(
            "{FIELD}: SELinux is not enabled in this kernel; the mounts are not labelled"
        ));
        return Ok(None);
    }
    self::label(host, FIELD, label)
}

/// A label to apply; refused where SELinux is not running, since the container would otherwise
/// run unlabelled while its config says it is not, and where the loaded policy does not know it.
pub fn label(
    host: &dyn Host,
    field: &str,
    label: Option<&str>,
) -> Result<Option<String>, PlanError> {
    let Some(l) = label.filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if l.contains(['\n', '\0']) {
        return Err(PlanError::field(field, "not an SELinux context"));
    }
    if !host.selinux_enabled() {
        return Err(PlanError::field(
            field,
            "SELinux is not enabled in this kernel",
        ));
    }
    match host.selinux_valid(l) {
        Ok(true) => Ok(Some(l.to_owned())),
        Ok(false) => Err(PlanError::field(
            field,
            format!("{l:?} is not a valid context in the loaded SELinux policy"),
        )),
        Err(e) => Err(PlanError::field(field, format!("checking {l:?}: {e}"))),
    }
}

/// Mount data with the container's context for every file of the filesystem. Quoted, because
/// MLS contexts have commas ("s0:c1,c2"); the kernel takes LSM options out of the data before the
/// filesystem parses it.
pub fn mount_data(data: &str, label: Option<&str>) -> String {
    match label {
        None => data.to_owned(),
        Some(l) if data.is_empty() => format!("context=\"{l}\""),
        Some(l) => format!("{data},context=\"{l}\""),
    }
}
