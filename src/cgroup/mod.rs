//! Cgroups: finding the host's layout (v1, v2 or hybrid), making the container's cgroup in every
//! hierarchy, putting the init there, and removing it again. `resources` applies
//! `linux.resources` to whichever hierarchy holds each controller; `freezer` and `stats` serve
//! pause/resume and events.

pub mod bpf_devices;
pub mod freezer;
mod placement;
pub mod resources;
pub mod stats;
pub mod systemd;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::plan::DeviceRule;
use crate::plan::cgroups::CgroupPlan;
pub use placement::{Ctl, Placement, V1Dir};

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
        systemd::Systemd::connect(unit.user)?.start(unit, pid, props, v2)?;
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
