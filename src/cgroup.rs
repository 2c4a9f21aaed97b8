//! Cgroup placement: finding the host's layout (v1, v2 or hybrid), making the container's cgroup in
//! every hierarchy, putting the init there, and removing it again. The resource controllers
//! themselves arrive with the cgroups work; the devices rules of v1 are written here because
//! every default config carries them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::DeviceRule;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading the cgroup layout: {0}")]
    Layout(io::Error),
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "linux.resources.devices: device rules need the v1 devices controller; eBPF device programs for cgroup v2 are not supported yet"
    )]
    DevicesOnV2,
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
            let mountpoint = PathBuf::from(l[4].replace("\\040", " "));
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

    /// Refuses what this layout cannot apply, before anything is created.
    pub fn check(&self, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        if !rules.is_empty() && !self.has_v1_devices() {
            return Err(CgroupError::DevicesOnV2);
        }
        Ok(())
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

    /// Makes the container's cgroup in every hierarchy. On error, what was made is removed.
    pub fn create(&self, cgroups_path: &str) -> Result<Placement, CgroupError> {
        let mut placement = Placement::default();
        let all = self
            .v1
            .iter()
            .map(|h| (h, false))
            .chain(self.unified.iter().map(|h| (h, true)));
        for (h, unified) in all {
            let dir = Layout::dir_for(h, cgroups_path);
            let cpuset = !unified && h.controllers.split(',').any(|c| c == "cpuset");
            if let Err(e) = mkdir_tracked(&dir, &mut placement.created, cpuset) {
                placement.remove_created();
                return Err(CgroupError::Io {
                    path: dir,
                    source: e,
                });
            }
            if unified {
                placement.unified = Some(dir);
            } else {
                if h.controllers.split(',').any(|c| c == "devices") {
                    placement.devices = Some(dir.clone());
                }
                placement.v1.push(dir);
            }
        }
        Ok(placement)
    }
}

/// mkdir -p that records each directory it made, parents first. A new v1 cpuset starts with no
/// cpus and mems, and refuses tasks until it has them: copy the parent's.
fn mkdir_tracked(dir: &Path, created: &mut Vec<PathBuf>, cpuset: bool) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        cur = match cur.parent() {
            Some(p) => p,
            None => break,
        };
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => {
                created.push(d.clone());
                if cpuset {
                    let parent = d.parent().unwrap_or(Path::new("/"));
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if fs::read_to_string(d.join(f))?.trim().is_empty() {
                            fs::write(d.join(f), fs::read_to_string(parent.join(f))?.trim())?;
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Where a container's cgroup is, in every hierarchy; kept in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub v1: Vec<PathBuf>,
    pub unified: Option<PathBuf>,
    pub devices: Option<PathBuf>,
    /// Directories this container made (so delete removes those, and not a shared parent).
    pub created: Vec<PathBuf>,
}

impl Placement {
    /// Adds `pid` to the cgroup in every hierarchy but the unified one when the init was cloned
    /// straight into it.
    pub fn add(&self, pid: i32, skip_unified: bool) -> Result<(), CgroupError> {
        let unified = if skip_unified {
            None
        } else {
            self.unified.as_ref()
        };
        for dir in self.v1.iter().chain(unified) {
            let f = dir.join("cgroup.procs");
            fs::write(&f, pid.to_string()).map_err(io_err(&f))?;
        }
        Ok(())
    }

    /// Writes the devices rules, then allows the devices every container gets (runc does the same,
    /// so that a deny-all rule still leaves /dev/null and the pty usable).
    pub fn apply_device_rules(&self, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        let Some(dir) = &self.devices else {
            return Ok(());
        };
        let defaults = [
            ('c', None, None, "m"),
            ('b', None, None, "m"),
            ('c', Some(1), Some(3), "rwm"),
            ('c', Some(1), Some(5), "rwm"),
            ('c', Some(1), Some(7), "rwm"),
            ('c', Some(1), Some(8), "rwm"),
            ('c', Some(1), Some(9), "rwm"),
            ('c', Some(5), Some(0), "rwm"),
            ('c', Some(5), Some(1), "rwm"),
            ('c', Some(5), Some(2), "rwm"),
            ('c', Some(136), None, "rwm"),
        ]
        .map(|(kind, major, minor, access)| DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access: access.into(),
        });
        for rule in rules.iter().chain(defaults.iter()) {
            let f = dir.join(if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            });
            fs::write(&f, rule.v1_line()).map_err(io_err(&f))?;
        }
        Ok(())
    }

    /// The pids in the container's cgroup (from the first hierarchy that has it).
    pub fn pids(&self) -> Vec<i32> {
        self.unified
            .iter()
            .chain(self.v1.iter())
            .find_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Removes the cgroup directories this container made, deepest first. A cgroup whose last
    /// task is still exiting is busy for a moment, so busy ones are retried briefly.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in self.created.iter().rev() {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    // A parent that another container still uses stays.
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !self.is_leaf(d) => break,
                    Err(e) => {
                        return Err(CgroupError::Io {
                            path: d.clone(),
                            source: e,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn is_leaf(&self, d: &Path) -> bool {
        self.v1.iter().chain(self.unified.iter()).any(|l| l == d)
    }

    fn remove_created(&self) {
        for d in self.created.iter().rev() {
            let _ = fs::remove_dir(d);
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
