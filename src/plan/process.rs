//! The container process (and an exec'd one): arguments, environment, user, capabilities,
//! rlimits and LSM labels, checked and turned into plain values.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::{Capability, CapsHashSet};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit};

use super::host::Host;
use super::tuning::Tuning;
use super::{PlanError, absolute};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub caps: CapSets,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    /// The AppArmor profile the process is confined by from its execve on.
    pub apparmor_profile: Option<String>,
    /// The SELinux context the process runs in from its execve on (and its session keyring has).
    pub selinux_label: Option<String>,
    /// Scheduling, I/O priority, CPU affinity, personality and NUMA memory policy.
    pub tuning: Tuning,
}

/// The process part of a config (also `exec --process`), with the container-wide settings of
/// `linux` that every process of the container gets: checked and in plain values.
pub fn plan(
    p: &oci_spec::runtime::Process,
    linux: Option<&oci_spec::runtime::Linux>,
    rootfs: &Path,
    host: &dyn Host,
) -> Result<ProcessPlan, PlanError> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(PlanError::field("process.args", "must name a program"));
    }
    let cwd = absolute("process.cwd", p.cwd())?;
    let env = p.env().clone().unwrap_or_default();
    if let Some(i) = env
        .iter()
        .position(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(PlanError::field(
            &format!("process.env[{i}]"),
            "not of the form KEY=VALUE",
        ));
    }
    let user = p.user();
    let (mut uid, mut gid) = (user.uid(), user.gid());
    if let Some(name) = user.username().as_deref().filter(|n| !n.is_empty()) {
        (uid, gid) = lookup_user(host, rootfs, name)?;
    }
    let terminal = p.terminal().unwrap_or(false);
    let console_size = p.console_size().as_ref().map(|b| {
        (
            b.height().min(u16::MAX as u64) as u16,
            b.width().min(u16::MAX as u64) as u16,
        )
    });
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(PlanError::field(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    let mut tuning = super::tuning::process(
        p.scheduler().as_ref(),
        p.io_priority().as_ref(),
        p.exec_cpu_affinity().as_ref(),
    )?;
    if let Some(l) = linux {
        (tuning.personality, tuning.memory_policy) =
            super::tuning::container(l.personality().as_ref(), l.memory_policy().as_ref(), host)?;
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        uid,
        gid,
        umask: user.umask(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        caps: capabilities(p.capabilities().as_ref())?,
        rlimits: rlimits(p.rlimits().as_ref())?,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        terminal,
        console_size,
        apparmor_profile: super::lsm::apparmor_profile(
            host,
            "process.apparmorProfile",
            p.apparmor_profile().as_deref(),
        )?,
        selinux_label: super::lsm::label(
            host,
            "process.selinuxLabel",
            p.selinux_label().as_deref(),
        )?,
        tuning,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// RLIMIT_*, as an int (glibc and musl type it differently).
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

fn cap_set(
    field: &str,
    set: Option<&HashSet<oci_spec::runtime::Capability>>,
) -> Result<CapsHashSet, PlanError> {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        // oci-spec serializes a capability as its runtime-spec name, "CAP_...".
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let cap = Capability::from_str(&name)
            .map_err(|_| PlanError::field(field, format!("unknown capability {name:?}")))?;
        out.insert(cap);
    }
    Ok(out)
}

pub fn capabilities(c: Option<&LinuxCapabilities>) -> Result<CapSets, PlanError> {
    let Some(c) = c else {
        return Ok(CapSets::default());
    };
    let mut sets = CapSets {
        bounding: cap_set("process.capabilities.bounding", c.bounding().as_ref())?,
        effective: cap_set("process.capabilities.effective", c.effective().as_ref())?,
        inheritable: cap_set("process.capabilities.inheritable", c.inheritable().as_ref())?,
        permitted: cap_set("process.capabilities.permitted", c.permitted().as_ref())?,
        ambient: cap_set("process.capabilities.ambient", c.ambient().as_ref())?,
    };
    // The kernel refuses to raise an ambient capability that is not both permitted and
    // inheritable. runc runs such configs (its own `runc spec` writes one) without it, so the
    // capability is left out, with a warning.
    let (permitted, inheritable) = (&sets.permitted, &sets.inheritable);
    sets.ambient.retain(|c| {
        let ok = permitted.contains(c) && inheritable.contains(c);
        if !ok {
            crate::logger::warn(&format!(
                "process.capabilities.ambient: {c} is not both permitted and inheritable; not raised"
            ));
        }
        ok
    });
    Ok(sets)
}

/// The rlimits by their runtime-spec names.
const RLIMITS: [(&str, i32); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU as i32),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as i32),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as i32),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as i32),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as i32),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as i32),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as i32),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as i32),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as i32),
    ("RLIMIT_AS", libc::RLIMIT_AS as i32),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as i32),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as i32),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as i32),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as i32),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as i32),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as i32),
];

fn rlimit_resource(name: &str) -> Option<i32> {
    RLIMITS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The runtime-spec's name of `resource`.
pub fn rlimit_name(resource: i32) -> &'static str {
    RLIMITS
        .iter()
        .find(|(_, r)| *r == resource)
        .map_or("an rlimit", |(n, _)| n)
}

pub fn rlimits(list: Option<&Vec<PosixRlimit>>) -> Result<Vec<Rlimit>, PlanError> {
    let mut out: Vec<Rlimit> = Vec::new();
    for (i, r) in list.into_iter().flatten().enumerate() {
        let field = format!("process.rlimits[{i}]");
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let resource = rlimit_resource(&name)
            .ok_or_else(|| PlanError::field(&field, format!("unknown type {name:?}")))?;
        if r.soft() > r.hard() {
            return Err(PlanError::field(
                &field,
                format!("soft limit {} exceeds hard limit {}", r.soft(), r.hard()),
            ));
        }
        if out.iter().any(|o| o.resource == resource) {
            return Err(PlanError::field(&field, format!("{name} is given twice")));
        }
        out.push(Rlimit {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    Ok(out)
}

/// Looks `name` up in the rootfs's /etc/passwd, read inside the rootfs. Returns (uid, gid).
fn lookup_user(host: &dyn Host, rootfs: &Path, name: &str) -> Result<(u32, u32), PlanError> {
    let field = "process.user.username";
    let text = host
        .read_in_rootfs(rootfs, Path::new("/etc/passwd"))
        .map_err(|e| PlanError::field(field, format!("reading /etc/passwd in the rootfs: {e}")))?;
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == name)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .next()
        .ok_or_else(|| {
            PlanError::field(
                field,
                format!("no user {name:?} in the rootfs's /etc/passwd"),
            )
        })
}
