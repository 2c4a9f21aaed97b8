//! What planning reads of the host, behind one trait: the LSMs, the page size, paths of the
//! bundle and the rootfs, and joined user namespaces. `RealHost` reads the machine; tests give a
//! `FakeHost`, so that both sides of every host-dependent rule run on any machine.

use std::io;
use std::path::{Path, PathBuf};

use super::IdMap;

pub trait Host {
    /// The kernel runs AppArmor.
    fn apparmor_enabled(&self) -> bool;
    /// The kernel runs SELinux.
    fn selinux_enabled(&self) -> bool;
    /// Whether the loaded SELinux policy knows `context`.
    fn selinux_valid(&self, context: &str) -> io::Result<bool>;
    fn page_size(&self) -> usize;
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    /// A small file of the rootfs, resolved inside it (never through its symlinks out of it).
    fn read_in_rootfs(&self, rootfs: &Path, path: &Path) -> io::Result<String>;
    /// The uid and gid maps of the user namespace at `path`, read from a process in it.
    fn userns_maps(&self, path: &Path) -> Result<(Vec<IdMap>, Vec<IdMap>), String>;
    /// The highest hard limit the init can give `resource`: the runtime's own, when it cannot
    /// raise it (no CAP_SYS_RESOURCE, or `in_userns`: the init sets it from inside the
    /// container's user namespace); None when it can.
    fn rlimit_ceiling(&self, resource: i32, in_userns: bool) -> Option<u64>;
    /// The runtime runs as root (not rootless).
    fn is_root(&self) -> bool;
    /// The runtime's effective uid and gid.
    fn caller(&self) -> (u32, u32);
    /// The host's uid for the runtime (its euid mapped out of its user namespace): whose
    /// systemd user manager the systemd driver uses in rootless mode.
    fn host_uid(&self) -> u32;
    /// The index of a network interface in the runtime's network namespace.
    fn interface_index(&self, name: &str) -> Option<u32>;
    /// Where resctrl is mounted, if it is.
    fn resctrl_root(&self) -> Option<PathBuf>;
    /// A small file of the host's pseudo-filesystems.
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// The names in a directory of the host's pseudo-filesystems.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The CPUs and memory nodes that the cgroup above `cg` allows (its nearest existing
    /// ancestor's effective cpuset), as lists; None where no cpuset controller is found.
    fn parent_cpuset(&self, cg: &super::cgroups::CgroupPlan) -> Option<(String, String)>;
    /// The real-time budget the cgroup above `cg` has to give (cgroup v1's cpu.rt_runtime_us,
    /// with CONFIG_RT_GROUP_SCHED); None where there is no such budget to ask.
    fn rt_budget(&self, cg: &super::cgroups::CgroupPlan) -> Option<RtBudget>;
}

/// A parent cgroup's real-time budget, in µs of each 1 s period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtBudget {
    pub parent: PathBuf,
    /// The parent exists (else chitin makes it, with no budget).
    pub exists: bool,
    /// Not yet given to its children; None: unlimited (a runtime of -1).
    pub free_us: Option<i64>,
}

/// Where the kernel answers "is this a valid context?": a write that fails with EINVAL if not.
const SELINUX_CONTEXT: &str = "/sys/fs/selinux/context";

/// This machine.
pub struct RealHost;

impl Host for RealHost {
    fn apparmor_enabled(&self) -> bool {
        std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.starts_with(b"Y"))
    }

    fn selinux_enabled(&self) -> bool {
        Path::new(SELINUX_CONTEXT).exists()
    }

    fn selinux_valid(&self, context: &str) -> io::Result<bool> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(SELINUX_CONTEXT)?;
        match f.write(context.as_bytes()) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn page_size(&self) -> usize {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as usize)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn read_in_rootfs(&self, rootfs: &Path, path: &Path) -> io::Result<String> {
        use std::os::fd::AsFd;
        let root = nix::fcntl::open(
            rootfs,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        crate::fsutil::read_small_file_in_root(root.as_fd(), path, 1 << 20)
    }

    fn userns_maps(&self, path: &Path) -> Result<(Vec<IdMap>, Vec<IdMap>), String> {
        super::userns::maps_of(path)
    }

    fn rlimit_ceiling(&self, resource: i32, in_userns: bool) -> Option<u64> {
        let sys_resource = caps::Capability::CAP_SYS_RESOURCE;
        if !in_userns && caps::has_cap(None, caps::CapSet::Effective, sys_resource).unwrap_or(false)
        {
            return None;
        }
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the rlimit it is given.
        (unsafe { libc::getrlimit(resource as _, &mut r) } == 0).then_some(r.rlim_max)
    }

    fn is_root(&self) -> bool {
        nix::unistd::geteuid().is_root() && !crate::rootless::is()
    }

    fn caller(&self) -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    fn host_uid(&self) -> u32 {
        crate::rootless::host_uid()
    }

    fn interface_index(&self, name: &str) -> Option<u32> {
        // Not /sys/class/net, which shows the network namespace of whoever mounted sysfs.
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: a NUL-terminated name that outlives the call.
        Some(unsafe { libc::if_nametoindex(name.as_ptr()) }).filter(|i| *i != 0)
    }

    fn resctrl_root(&self) -> Option<PathBuf> {
        crate::resctrl::mount_point()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn parent_cpuset(&self, cg: &super::cgroups::CgroupPlan) -> Option<(String, String)> {
        let placement = crate::cgroup::Layout::detect().ok()?.place(cg);
        // A v1 cpuset hierarchy first: on a hybrid host the unified one has no cpuset.
        let v1 = (placement.v1.iter())
            .find(|d| d.controllers.split(',').any(|c| c == "cpuset"))
            .map(|d| {
                (
                    d.path.clone(),
                    "cpuset.effective_cpus",
                    "cpuset.effective_mems",
                )
            });
        let v2 = (placement.unified).map(|d| (d, "cpuset.cpus.effective", "cpuset.mems.effective"));
        let (dir, cpus, mems) = v1.or(v2)?;
        let read = |p: PathBuf| std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned());
        dir.ancestors()
            .skip(1)
            .find_map(|d| Some((read(d.join(cpus))?, read(d.join(mems))?)))
    }

    fn rt_budget(&self, cg: &super::cgroups::CgroupPlan) -> Option<RtBudget> {
        let placement = crate::cgroup::Layout::detect().ok()?.place(cg);
        let dir = (placement.v1.iter())
            .find(|d| d.controllers.split(',').any(|c| c == "cpu"))?
            .path
            .clone();
        let parent = dir.parent()?.to_path_buf();
        let runtime = |d: &Path| -> Option<i64> {
            std::fs::read_to_string(d.join("cpu.rt_runtime_us"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let Some(own) = runtime(&parent) else {
            // A parent still to be made: there is a budget to ask only if its ancestors have one.
            let existing = parent.ancestors().find(|d| d.exists())?;
            runtime(existing)?;
            return Some(RtBudget {
                parent,
                exists: false,
                free_us: Some(0),
            });
        };
        let given: i64 = std::fs::read_dir(&parent)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| runtime(&e.path()))
            .sum();
        let free_us = (own >= 0).then(|| own - given);
        Some(RtBudget {
            parent,
            exists: true,
            free_us,
        })
    }
}

#[cfg(test)]
pub use fake::FakeHost;

#[cfg(test)]
mod fake {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// A host made of values: the paths that exist (directories, and files with their text),
    /// the LSMs, the page size and the joined user namespaces' maps.
    #[derive(Default)]
    pub struct FakeHost {
        pub apparmor: bool,
        /// None: no SELinux; else the contexts its policy knows.
        pub selinux: Option<Vec<String>>,
        pub page_size: usize,
        pub dirs: BTreeSet<PathBuf>,
        pub files: BTreeMap<PathBuf, String>,
        pub userns: BTreeMap<PathBuf, (Vec<IdMap>, Vec<IdMap>)>,
        /// The hard limits the runtime cannot raise, by resource.
        pub rlimit_ceilings: BTreeMap<i32, u64>,
        pub rootless: bool,
        /// The runtime's euid and egid (root's by default).
        pub caller: (u32, u32),
        pub interfaces: BTreeSet<String>,
        /// Where resctrl is mounted.
        pub resctrl: Option<PathBuf>,
        /// The parent cgroup's cpus and mems.
        pub cpuset: Option<(String, String)>,
        pub rt_budget: Option<RtBudget>,
    }

    impl FakeHost {
        /// A bundle at /b with its rootfs, a passwd there, and 4 KiB pages.
        pub fn bundle() -> FakeHost {
            let mut h = FakeHost {
                page_size: 4096,
                ..Default::default()
            };
            h.dirs.extend(["/b", "/b/rootfs"].map(PathBuf::from));
            h.files.insert(
                "/b/rootfs/etc/passwd".into(),
                "root:x:0:0::/root:/bin/sh\nsvc:x:1001:1002::/:/bin/sh\n".into(),
            );
            h
        }
    }

    impl Host for FakeHost {
        fn apparmor_enabled(&self) -> bool {
            self.apparmor
        }
        fn selinux_enabled(&self) -> bool {
            self.selinux.is_some()
        }
        fn selinux_valid(&self, context: &str) -> io::Result<bool> {
            match &self.selinux {
                Some(known) => Ok(known.iter().any(|k| k == context)),
                None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
        }
        fn page_size(&self) -> usize {
            self.page_size
        }
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            match self.exists(path) {
                true => Ok(path.to_owned()),
                false => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
        }
        fn exists(&self, path: &Path) -> bool {
            self.is_dir(path) || self.files.contains_key(path) || self.userns.contains_key(path)
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.dirs.contains(path)
        }
        fn read_in_rootfs(&self, rootfs: &Path, path: &Path) -> io::Result<String> {
            let full = rootfs.join(crate::fsutil::relative(path));
            self.files
                .get(&full)
                .cloned()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
        }
        fn userns_maps(&self, path: &Path) -> Result<(Vec<IdMap>, Vec<IdMap>), String> {
            self.userns
                .get(path)
                .cloned()
                .ok_or_else(|| format!("no process is in the user namespace {}", path.display()))
        }

        fn rlimit_ceiling(&self, resource: i32, _: bool) -> Option<u64> {
            self.rlimit_ceilings.get(&resource).copied()
        }
        fn is_root(&self) -> bool {
            !self.rootless
        }
        fn caller(&self) -> (u32, u32) {
            self.caller
        }
        fn host_uid(&self) -> u32 {
            self.caller.0
        }
        fn interface_index(&self, name: &str) -> Option<u32> {
            let i = self.interfaces.iter().position(|n| n == name)?;
            Some(i as u32 + 2)
        }
        fn resctrl_root(&self) -> Option<PathBuf> {
            self.resctrl.clone()
        }
        fn read_file(&self, path: &Path) -> io::Result<String> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
        }
        fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            let names: BTreeSet<String> = (self.dirs.iter().chain(self.files.keys()))
                .filter(|p| p.parent() == Some(path))
                .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                .collect();
            match self.is_dir(path) {
                true => Ok(names.into_iter().collect()),
                false => Err(io::Error::from_raw_os_error(libc::ENOENT)),
            }
        }
        fn parent_cpuset(&self, _: &crate::plan::cgroups::CgroupPlan) -> Option<(String, String)> {
            self.cpuset.clone()
        }
        fn rt_budget(&self, _: &crate::plan::cgroups::CgroupPlan) -> Option<RtBudget> {
            self.rt_budget.clone()
        }
    }
}
