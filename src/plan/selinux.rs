//! SELinux contexts from the config: the process label and the mount label, checked against the
//! loaded policy while planning, so that a context the kernel would refuse fails before anything
//! is made, naming its field.

use std::io::Write;

use super::PlanError;

/// Where the kernel answers "is this a valid context?": a write that fails with EINVAL if not.
const CONTEXT: &str = "/sys/fs/selinux/context";

/// linux.mountLabel: ignored with a warning where SELinux is not running, as runc (which drops it
/// silently) and crun do: the mounts are the same, only unlabelled, and a config written for
/// SELinux hosts runs elsewhere. Checked like a process label where SELinux runs.
pub fn mount_label(label: Option<&str>) -> Result<Option<String>, PlanError> {
    const FIELD: &str = "linux.mountLabel";
    if label.is_some_and(|l| !l.is_empty()) && !std::path::Path::new(CONTEXT).exists() {
        crate::logger::warn(&format!(
            "{FIELD}: SELinux is not enabled in this kernel; the mounts are not labelled"
        ));
        return Ok(None);
    }
    self::label(FIELD, label)
}

/// A label to apply; refused where SELinux is not running, since the container would otherwise
/// run unlabelled while its config says it is not, and where the loaded policy does not know it.
pub fn label(field: &str, label: Option<&str>) -> Result<Option<String>, PlanError> {
    let Some(l) = label.filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if l.contains(['\n', '\0']) {
        return Err(PlanError::field(field, "not an SELinux context"));
    }
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTEXT)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(PlanError::field(
                field,
                "SELinux is not enabled in this kernel",
            ));
        }
        Err(e) => return Err(PlanError::field(field, format!("{CONTEXT}: {e}"))),
    };
    match f.write(l.as_bytes()) {
        Ok(_) => Ok(Some(l.to_owned())),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(PlanError::field(
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
