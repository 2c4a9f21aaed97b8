//! Cgroups: finding the host's layout (v1, v2 or hybrid), making the container's cgroup in every
//! hierarchy, putting the init there, and removing it again. `resources` applies
//! `linux.resources` to whichever hierarchy holds each controller; `freezer` and `stats` serve
//! pause/resume and events.

pub mod bpf_devices;
pub mod freezer;
pub mod resources;
pub mod stats;
pub mod systemd;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::DeviceRule;
use crate::plan::cgroups::{CgroupPlan, Unit};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading the cgroup layout: {0}")]
    Layout(io::Error),
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("linux.resources.devices: this host has neither a v1 devices controller nor cgroup v2")]
    NoDevices,
    #[error("linux.resources.{field}: {reason}")]
    Resource { field: String, reason: String },
    #[error(
        "no freezer: this host has neither a v1 freezer controller nor cgroup.freeze (cgroup v2, Linux 5.2)"
    )]
    NoFreezer,
    #[error("container's cgroup unexpectedly frozen ({})", .0.display())]
    Frozen(PathBuf),
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
}

impl From<crate::plan::resources::Invalid> for CgroupError {
    fn from(e: crate::plan::resources::Invalid) -> Self {
        CgroupError::Resource {
            field: e.field,
            reason: e.reason,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// "cpu,cpuacct", "name=systemd", or "" for cgroup2.
    pub controllers: String,
    pub mountpoint: PathBuf,
    /// This process's cgroup in that hierarchy (relative cgroupsPath values start here).
    pub own: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub v1: Vec<Hierarchy>,
    pub unified: Option<Hierarchy>,
}

impl Layout {
    pub fn detect() -> Result<Layout, CgroupError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Layout)?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::Layout)?;
        Ok(Layout::parse(&mountinfo, &own))
    }

    fn parse(mountinfo: &str, own: &str) -> Layout {
        // /proc/self/cgroup: "id:controllers:path"; cgroup2 has id 0 and no controllers.
        let own_path = |ctrls: &str| -> PathBuf {
            own.lines()
                .filter_map(|l| {
                    let mut it = l.splitn(3, ':');
                    let (_, c, p) = (it.next()?, it.next()?, it.next()?);
                    (c == ctrls).then(|| PathBuf::from(p))
                })
                .next()
                .unwrap_or_else(|| PathBuf::from("/"))
        };
        let mut layout = Layout::default();
        for line in mountinfo.lines() {
            // "... mountpoint opts ... - fstype source superopts"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                continue;
            }
            let mountpoint = crate::fsutil::mountinfo_path(l[4]);
            match r[0] {
                "cgroup2" if layout.unified.is_none() => {
                    layout.unified = Some(Hierarchy {
                        controllers: String::new(),
                        own: own_path(""),
                        mountpoint,
                    });
                }
                "cgroup" => {
                    let controllers: Vec<&str> = r[2]
                        .split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro")
                                && !o.starts_with("clone_children")
                                && !o.starts_with("release_agent")
                                && *o != "xattr"
                                && *o != "noprefix"
                                && *o != "cpuset_v2_mode"
                        })
                        .collect();
                    let controllers = controllers.join(",");
                    if !layout.v1.iter().any(|h| h.controllers == controllers) {
                        layout.v1.push(Hierarchy {
                            own: own_path(&controllers),
                            controllers,
                            mountpoint,
                        });
                    }
                }
                _ => {}
            }
        }
        layout
    }

    pub fn has_v1_devices(&self) -> bool {
        self.v1
            .iter()
            .any(|h| h.controllers.split(',').any(|c| c == "devices"))
    }

    /// Where a controller would live for a new container: a v1 hierarchy that has it bound,
    /// else the unified one if its root offers it. "" asks for the unified hierarchy itself.
    pub fn kind_of(&self, controller: &str) -> Option<resources::Kind> {
        if !controller.is_empty()
            && self
                .v1
                .iter()
                .any(|h| h.controllers.split(',').any(|c| c == controller))
        {
            return Some(resources::Kind::V1);
        }
        let u = self.unified.as_ref()?;
        if controller.is_empty() {
            return Some(resources::Kind::V2);
        }
        let avail = fs::read_to_string(u.mountpoint.join("cgroup.controllers")).unwrap_or_default();
        avail
            .split_whitespace()
            .any(|c| c == controller)
            .then_some(resources::Kind::V2)
    }

    /// Works out the resource writes for this host, refusing what it cannot apply, before
    /// anything is created.
    pub fn check(
        &self,
        res: Option<&crate::plan::resources::Resources>,
        rules: &[DeviceRule],
    ) -> Result<Vec<resources::Write>, CgroupError> {
        if !rules.is_empty() && !self.has_v1_devices() && self.unified.is_none() {
            return Err(CgroupError::NoDevices);
        }
        match res {
            Some(r) => resources::writes(r, &|c| self.kind_of(c)),
            None => Ok(Vec::new()),
        }
    }

    fn dir_for(h: &Hierarchy, cgroups_path: &str) -> PathBuf {
        let rel = cgroups_path.trim_start_matches('/');
        let base = if cgroups_path.starts_with('/') {
            h.mountpoint.clone()
        } else {
            h.mountpoint.join(h.own.strip_prefix("/").unwrap_or(&h.own))
        };
        base.join(rel)
    }

    /// Where the container's cgroup goes in every hierarchy, and which of those directories
    /// (parents included) do not exist yet: the ones `make` will create and `delete` remove.
    /// Known before anything is made, so that the state can record it first and a create killed
    /// at any point leaves nothing `delete -f` cannot find. With the systemd driver, what chitin
    /// makes is known only once systemd has made its part (`enter_scope`).
    pub fn place(&self, cg: &CgroupPlan) -> Placement {
        let mut placement = Placement {
            default_parent: cg.default_parent,
            unit: cg.unit.clone(),
            ..Placement::default()
        };
        for h in &self.v1 {
            placement.v1.push(V1Dir {
                controllers: h.controllers.clone(),
                path: Layout::dir_for(h, &cg.path),
            });
        }
        placement.unified = self.unified.as_ref().map(|h| Layout::dir_for(h, &cg.path));
        if placement.unit.is_none() {
            placement.created = placement.all_dirs().flat_map(missing).collect();
        }
        placement
    }

    /// The systemd driver's create, first half: the scope around `pid`. What chitin itself
    /// will make (the v1 hierarchies systemd leaves alone) is known from here, for the record.
    pub fn start_scope(
        &self,
        placement: &mut Placement,
        pid: i32,
        props: Vec<systemd::props::Property>,
    ) -> Result<(), CgroupError> {
        let unit = placement.unit.as_ref().expect("a systemd placement");
        let v2 = !self.has_v1_devices();
        systemd::Systemd::connect()?.start(unit, pid, props, v2)?;
        placement.created = placement.v1.iter().flat_map(|d| missing(&d.path)).collect();
        Ok(())
    }

    /// The second half: the container's cgroup where systemd did not make it, with `pid` in it.
    pub fn join_scope(&self, placement: &Placement, pid: i32) -> Result<(), CgroupError> {
        self.make(placement)?;
        placement.add(pid, true)
    }

    /// Makes the directories of `place`. On error, what was made is removed.
    pub fn make(&self, placement: &Placement) -> Result<(), CgroupError> {
        let all = placement
            .v1
            .iter()
            .map(|d| (&d.path, d.controllers.split(',').any(|c| c == "cpuset")))
            .chain(placement.unified.iter().map(|d| (d, false)));
        for (dir, cpuset) in all {
            if let Err(e) = mkdir_cgroup(dir, cpuset) {
                placement.remove_created();
                return Err(CgroupError::Io {
                    path: dir.clone(),
                    source: e,
                });
            }
        }
        // Under systemd, the slices' controllers are systemd's to enable.
        if let (Some(h), Some(dir), None) = (&self.unified, &placement.unified, &placement.unit) {
            enable_controllers(&h.mountpoint, dir);
        }
        Ok(())
    }
}

/// The directories of `dir` (itself included) that do not exist, parents first.
fn missing(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// mkdir -p. A new v1 cpuset starts with no cpus and mems, and refuses tasks until it has them:
/// every empty one on the path gets its parent's, parents first. Also those we did not make: a
/// parallel create may have made a shared parent an instant ago and not filled it yet.
fn mkdir_cgroup(dir: &Path, cpuset: bool) -> io::Result<()> {
    for d in missing(dir) {
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if !cpuset {
        return Ok(());
    }
    let files = ["cpuset.cpus", "cpuset.mems"];
    let empty = |d: &Path| {
        files
            .iter()
            .any(|f| fs::read_to_string(d.join(f)).is_ok_and(|v| v.trim().is_empty()))
    };
    let unfilled: Vec<&Path> = dir.ancestors().take_while(|d| empty(d)).collect();
    for d in unfilled.into_iter().rev() {
        let parent = d.parent().unwrap_or(Path::new("/"));
        for f in files {
            if fs::read_to_string(d.join(f))?.trim().is_empty() {
                fs::write(d.join(f), fs::read_to_string(parent.join(f))?.trim())?;
            }
        }
    }
    Ok(())
}

/// On cgroup v2 a controller is usable in a cgroup only if every ancestor enables it for its
/// children: enable, down to the container's parent, whatever each level offers.
fn enable_controllers(mountpoint: &Path, dir: &Path) {
    let Ok(rel) = dir.strip_prefix(mountpoint) else {
        return;
    };
    let mut cur = mountpoint.to_path_buf();
    for comp in rel
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(Some)
        .chain([None])
    {
        let avail = fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        for c in avail.split_whitespace() {
            // Best effort: a level with processes of its own refuses, and then so would runc.
            let _ = fs::write(cur.join("cgroup.subtree_control"), format!("+{c}"));
        }
        match comp {
            Some(c) => cur.push(c),
            None => break,
        }
    }
}

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

    fn all_dirs(&self) -> impl Iterator<Item = &Path> {
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
    pub fn kill_all(&self) {
        if let Some(u) = &self.unified {
            if fs::write(u.join("cgroup.kill"), "1").is_ok() {
                return;
            }
        }
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
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
            Some(u) => systemd::Systemd::connect().and_then(|mut s| s.stop(u)),
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
        let owner = systemd::Systemd::connect().and_then(|mut s| s.owner(u));
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

    fn remove_created(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
    const OWN: &str = "4:devices:/user.slice\n3:cpu,cpuacct:/\n1:name=systemd:/x\n0::/init.scope\n";

    #[test]
    fn hybrid_layout_and_paths() {
        let l = Layout::parse(MOUNTINFO, OWN);
        assert_eq!(l.v1.len(), 3);
        assert!(l.has_v1_devices());
        let u = l.unified.as_ref().unwrap();
        assert_eq!(u.own, Path::new("/init.scope"));
        let dev = &l.v1[1];
        assert_eq!(
            Layout::dir_for(dev, "/a/b"),
            Path::new("/sys/fs/cgroup/devices/a/b")
        );
        assert_eq!(
            Layout::dir_for(dev, "a/b"),
            Path::new("/sys/fs/cgroup/devices/user.slice/a/b")
        );
        assert_eq!(l.v1[2].controllers, "name=systemd");
    }

    #[test]
    fn device_rule_lines() {
        let r = DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(136),
            minor: None,
            access: "rwm".into(),
        };
        assert_eq!(r.v1_line(), "c 136:* rwm");
    }
}
