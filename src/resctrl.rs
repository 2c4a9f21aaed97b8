//! resctrl groups (Intel RDT, AMD QoS): the class of service a container's processes go in,
//! with its schemata, and the monitoring group that counts them. resctrl is a pseudo-filesystem:
//! mkdir makes a group with its files, rmdir removes it with them.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("linux.intelRdt: {what}: {source}")]
pub struct RdtError {
    what: String,
    source: io::Error,
}

fn ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> RdtError {
    let what = what.into();
    move |source| RdtError { what, source }
}

/// A container's group, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdtGroup {
    /// The class of service: a directory of the resctrl mount (its root for closID "/").
    pub dir: PathBuf,
    /// chitin made the group, and removes it with the container; a group the config named
    /// that existed before is left as it was found.
    pub made: bool,
    /// The monitoring group the processes go in (enableMonitoring), always chitin's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<PathBuf>,
}

impl RdtGroup {
    /// Makes the group where it is chitin's to make, writes `schemata` in order, and makes the
    /// monitoring group.
    pub fn make(&self, schemata: &[String]) -> Result<(), RdtError> {
        if self.made {
            mkdir(&self.dir)?;
        }
        for s in schemata {
            self.set_schemata(s)?;
        }
        if let Some(m) = &self.monitor {
            mkdir(m)?;
        }
        Ok(())
    }

    /// Puts `pid` (a thread, and what it forks from then on) in the group, through its
    /// monitoring group where it has one.
    pub fn add(&self, pid: i32) -> Result<(), RdtError> {
        let file = self.monitor.as_ref().unwrap_or(&self.dir).join("tasks");
        std::fs::write(&file, pid.to_string()).map_err(ctx(format!("writing {}", file.display())))
    }

    /// Writes schemata lines: one write, as the kernel takes a schemata text whole.
    pub fn set_schemata(&self, text: &str) -> Result<(), RdtError> {
        let file = self.dir.join("schemata");
        std::fs::write(&file, format!("{text}\n"))
            .map_err(ctx(format!("writing {}", file.display())))
    }

    /// Removes what chitin made: the monitoring group, then the group. Gone already is fine.
    pub fn remove(&self) -> Result<(), RdtError> {
        let dirs = self.monitor.iter().chain(self.made.then_some(&self.dir));
        for d in dirs {
            match std::fs::remove_dir(d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(ctx(format!("removing {}", d.display()))(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn mkdir(dir: &Path) -> Result<(), RdtError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(ctx(format!("making {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Where resctrl is mounted in this mount namespace, from mountinfo.
pub fn mount_point() -> Option<PathBuf> {
    mount_point_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
}

fn mount_point_in(mountinfo: &str) -> Option<PathBuf> {
    crate::fsutil::mounts(mountinfo)
        .find_map(|(fstype, point)| (fstype == "resctrl").then_some(point))
}

#[cfg(test)]
mod tests;
