//! linux.namespaces and linux.timeOffsets: which namespaces the container gets new and which it
//! joins by path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxNamespaceType};

use super::host::Host;
use super::{PlanError, absolute};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    Mount,
    Uts,
    Ipc,
    User,
    Pid,
    Net,
    Cgroup,
    Time,
}

impl NsKind {
    pub fn flag(self) -> nix::sched::CloneFlags {
        use nix::sched::CloneFlags as F;
        match self {
            NsKind::Mount => F::CLONE_NEWNS,
            NsKind::Uts => F::CLONE_NEWUTS,
            NsKind::Ipc => F::CLONE_NEWIPC,
            NsKind::User => F::CLONE_NEWUSER,
            NsKind::Pid => F::CLONE_NEWPID,
            NsKind::Net => F::CLONE_NEWNET,
            NsKind::Cgroup => F::CLONE_NEWCGROUP,
            NsKind::Time => F::from_bits_retain(libc::CLONE_NEWTIME),
        }
    }

    /// The runtime-spec name, also the name under /proc/<pid>/ns/ (but for "mnt" and "net").
    pub fn spec_name(self) -> &'static str {
        match self {
            NsKind::Mount => "mount",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::User => "user",
            NsKind::Pid => "pid",
            NsKind::Net => "network",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    pub(super) fn from_spec(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::Mount => NsKind::Mount,
            LinuxNamespaceType::Uts => NsKind::Uts,
            LinuxNamespaceType::Ipc => NsKind::Ipc,
            LinuxNamespaceType::User => NsKind::User,
            LinuxNamespaceType::Pid => NsKind::Pid,
            LinuxNamespaceType::Network => NsKind::Net,
            LinuxNamespaceType::Cgroup => NsKind::Cgroup,
            LinuxNamespaceType::Time => NsKind::Time,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// Namespaces the container gets fresh.
    pub new: Vec<NsKind>,
    /// Namespaces the container joins, by path.
    pub join: Vec<(NsKind, PathBuf)>,
}

impl Namespaces {
    pub fn is_new(&self, k: NsKind) -> bool {
        self.new.contains(&k)
    }
    pub fn joined(&self, k: NsKind) -> Option<&Path> {
        self.join
            .iter()
            .find(|(j, _)| *j == k)
            .map(|(_, p)| p.as_path())
    }
    /// A new pid namespace for a container that joins a user namespace by path must belong to
    /// that user namespace (or its procfs cannot be mounted), so the init makes it once it has
    /// joined, and forks into it, rather than the clone.
    pub fn pid_after_user_join(&self) -> bool {
        self.is_new(NsKind::Pid) && self.joined(NsKind::User).is_some()
    }
    /// Private to the container, whether new or joined (so not the runtime's own).
    pub fn is_private(&self, k: NsKind) -> bool {
        self.is_new(k) || self.joined(k).is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeOffset {
    pub clock: &'static str,
    pub secs: i64,
    pub nanos: u32,
}

pub fn plan(linux: &Linux, host: &dyn Host) -> Result<Namespaces, PlanError> {
    let mut namespaces = Namespaces::default();
    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        let kind = NsKind::from_spec(ns.typ());
        if !seen.insert(kind) {
            return Err(PlanError::field(
                &field,
                format!("{} namespace given twice", kind.spec_name()),
            ));
        }
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                let p = absolute(&format!("{field}.path"), p)?;
                if !host.exists(&p) {
                    return Err(PlanError::field(
                        &format!("{field}.path"),
                        format!("{} does not exist", p.display()),
                    ));
                }
                namespaces.join.push((kind, p));
            }
            _ => namespaces.new.push(kind),
        }
    }
    Ok(namespaces)
}

pub fn time_offsets(linux: &Linux) -> Result<Vec<TimeOffset>, PlanError> {
    let mut out = Vec::new();
    for (clock, off) in linux.time_offsets().iter().flatten() {
        let clock = match clock.as_str() {
            "monotonic" => "monotonic",
            "boottime" => "boottime",
            other => {
                return Err(PlanError::field(
                    "linux.timeOffsets",
                    format!("unknown clock {other:?}"),
                ));
            }
        };
        out.push(TimeOffset {
            clock,
            secs: off.secs().unwrap_or(0),
            nanos: off.nanosecs().unwrap_or(0),
        });
    }
    Ok(out)
}
