//! Where a container's cgroup is, in every hierarchy (recorded in its state), and what is done
//! there: adding processes, device rules, reading its pids, emptying and removing it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{CgroupError, bpf_devices, freezer, io_err, systemd};
use crate::plan::DeviceRule;
use crate::plan::cgroups::Unit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Dir {
    pub controllers: String,
    pub path: PathBuf,
}

/// Where a container's cgroup is, in every hierarchy; kept in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub v1: Vec<V1Dir>,
    pub unified: Option<PathBuf>,
    /// Directories this container made (so delete removes those, and not a shared parent).
    pub created: Vec<PathBuf>,
    /// The path was chitin's default, whose parent is chitin's to remove when empty.
    #[serde(default)]
    pub default_parent: bool,
    /// The systemd driver's unit: the driver a container was made with is the one that
    /// updates and deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
}

/// Which hierarchy serves a controller for this container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Placement {
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.controllers.split(',').any(|c| c == controller))
            .map(|d| d.path.as_path())
    }

    /// The hierarchy that holds `controller`: a v1 one that has it bound, else the unified one
    /// if it is enabled there.
    pub fn controller(&self, controller: &str) -> Option<Ctl<'_>> {
        if let Some(d) = self.v1_dir(controller) {
            return Some(Ctl::V1(d));
        }
        let u = self.unified.as_deref()?;
        let avail = fs::read_to_string(u.join("cgroup.controllers")).unwrap_or_default();
        avail
            .split_whitespace()
            .any(|c| c == controller)
            .then_some(Ctl::V2(u))
    }

    /// No cgroup at all: rootless mode where nothing was delegated.
    pub fn is_empty(&self) -> bool {
        self.v1.is_empty() && self.unified.is_none() && self.unit.is_none()
    }

    /// Rootless mode: keeps the hierarchies where the container's cgroup would be made in a
    /// directory the caller may write (a delegated subtree), drops the others; their names.
    pub fn keep_delegated(&mut self) -> Vec<String> {
        let writable = |dir: &Path| {
            let existing = dir.ancestors().find(|d| d.exists());
            existing.is_some_and(|d| nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok())
        };
        let mut dropped: Vec<String> = Vec::new();
        self.v1.retain(|d| {
            let keep = writable(&d.path);
            if !keep {
                dropped.push(d.controllers.clone());
            }
            keep
        });
        if self.unified.as_deref().is_some_and(|u| !writable(u)) {
            self.unified = None;
            dropped.push("unified".into());
        }
        let kept: Vec<PathBuf> = self.all_dirs().map(Path::to_path_buf).collect();
        self.created
            .retain(|c| kept.iter().any(|k| k.starts_with(c)));
        dropped
    }

    pub(super) fn all_dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|d| d.path.as_path())
            .chain(self.unified.as_deref())
    }

    /// Adds `pid` to the cgroup in every hierarchy but the unified one when the init was cloned
    /// straight into it.
    pub fn add(&self, pid: i32, skip_unified: bool) -> Result<(), CgroupError> {
        let unified = if skip_unified {
            None
        } else {
            self.unified.as_deref()
        };
        for dir in self.v1.iter().map(|d| d.path.as_path()).chain(unified) {
            let f = dir.join("cgroup.procs");
            fs::write(&f, pid.to_string()).map_err(io_err(&f))?;
        }
        Ok(())
    }

    /// Writes the devices rules (with the ones every container gets, edits::Defaults).
    pub fn apply_device_rules(&self, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        if rules.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.v1_dir("devices") {
            for rule in rules {
                let f = dir.join(if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                });
                fs::write(&f, rule.v1_line()).map_err(io_err(&f))?;
            }
            return Ok(());
        }
        let dir = self.unified.as_deref().ok_or(CgroupError::NoDevices)?;
        bpf_devices::attach(dir, rules).map_err(|e| CgroupError::Io {
            path: dir.to_path_buf(),
            source: io::Error::new(e.kind(), format!("attaching the eBPF device program: {e}")),
        })
    }

    /// The pids in the container's cgroup and the cgroups made below it (from the first
    /// hierarchy that has it).
    /// As runc: a frozen cgroup is refused (the init would stop in it for good), one that holds
    /// processes is warned of.
    pub fn check_reuse(&self) -> Result<(), CgroupError> {
        // A cgroup about to be made is neither: no reads on the usual path.
        if self.all_dirs().all(|d| self.created.iter().any(|c| c == d)) {
            return Ok(());
        }
        if freezer::is_frozen(self) {
            let dir = self.v1_dir("freezer").or(self.unified.as_deref());
            return Err(CgroupError::Frozen(
                dir.unwrap_or(Path::new("")).to_path_buf(),
            ));
        }
        let n = self.pids().len();
        if n > 0 {
            crate::logger::warn(&format!(
                "container's cgroup is not empty: {n} process(es) found"
            ));
        }
        Ok(())
    }

    pub fn pids(&self) -> Vec<i32> {
        let Some(dir) = self
            .unified
            .iter()
            .map(|p| p.as_path())
            .chain(self.v1.iter().map(|d| d.path.as_path()))
            .find(|d| d.join("cgroup.procs").exists())
        else {
            return Vec::new();
        };
        subtree(dir)
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// SIGKILLs every process in the cgroup: with cgroup.kill where the kernel has it (no race
    /// with forks), else pid by pid.
    /// Frozen tasks die only once thawed: a frozen cgroup is thawed after. A cgroup that is now
    /// another container's (`is_foreign`) is not this one's to empty.
    pub fn kill_all(&self) {
        if self.is_foreign() {
            return;
        }
        let killed = self
            .unified
            .as_ref()
            .is_some_and(|u| fs::write(u.join("cgroup.kill"), "1").is_ok());
        if !killed {
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if freezer::is_frozen(self) {
            let _ = freezer::set(self, false);
        }
    }

    /// Removes the container's cgroup, then the parents this container made and, when the path
    /// was chitin's default, the shared default parent; a parent still in use stays. The leaf of
    /// a container whose last task is still exiting is busy for a moment, so it is retried.
    pub fn remove(&self) -> Result<(), CgroupError> {
        // systemd removes the cgroup of the unit it stops; what it could not stop is reported
        // once chitin's own directories are gone. A unit made again for another container
        // (after this one stopped) holds that one's cgroup: nothing here is this one's.
        let stopped = match &self.unit {
            Some(u) => systemd::Systemd::connect(u.user).and_then(|mut s| s.stop(u)),
            None => Ok(systemd::Owner::This),
        };
        if matches!(stopped, Ok(systemd::Owner::Other)) {
            return Ok(());
        }
        self.remove_dirs()?;
        stopped?;
        Ok(())
    }

    /// The systemd driver's unit is now another container's (see `remove`).
    pub fn is_foreign(&self) -> bool {
        let Some(u) = &self.unit else { return false };
        let owner = systemd::Systemd::connect(u.user).and_then(|mut s| s.owner(u));
        matches!(owner, Ok(systemd::Owner::Other))
    }

    fn remove_dirs(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        // Every hierarchy is tried, and cgroups the container made below its own go first; the
        // first failure is reported once the rest are done.
        let mut first_error = None;
        for dir in self.all_dirs().flat_map(subtree) {
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => {
                        first_error.get_or_insert(CgroupError::Io {
                            path: dir.clone(),
                            source: e,
                        });
                        break;
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let default_parents = self
            .all_dirs()
            .filter(|_| self.default_parent)
            .filter_map(|l| l.parent());
        for d in self
            .created
            .iter()
            .rev()
            .map(|p| p.as_path())
            .filter(|d| !self.is_leaf(d))
            .chain(default_parents)
        {
            let _ = fs::remove_dir(d);
        }
        Ok(())
    }

    fn is_leaf(&self, d: &Path) -> bool {
        self.all_dirs().any(|l| l == d)
    }

    pub(super) fn remove_created(&self) {
        for d in self.created.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// `dir` and every cgroup below it, the deepest first (the order rmdir needs).
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(subtree(&e.path()));
            }
        }
    }
    out.push(dir.to_path_buf());
    out
}
