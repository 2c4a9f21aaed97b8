//! The container process: capabilities, rlimits and user, checked and turned into plain values.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::Path;
use std::str::FromStr;

use caps::{Capability, CapsHashSet};
use nix::fcntl::OFlag;
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit};

use super::PlanError;

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

fn rlimit_resource(name: &str) -> Option<i32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU as i32,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE as i32,
        "RLIMIT_DATA" => libc::RLIMIT_DATA as i32,
        "RLIMIT_STACK" => libc::RLIMIT_STACK as i32,
        "RLIMIT_CORE" => libc::RLIMIT_CORE as i32,
        "RLIMIT_RSS" => libc::RLIMIT_RSS as i32,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC as i32,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE as i32,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK as i32,
        "RLIMIT_AS" => libc::RLIMIT_AS as i32,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS as i32,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING as i32,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE as i32,
        "RLIMIT_NICE" => libc::RLIMIT_NICE as i32,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO as i32,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME as i32,
        _ => return None,
    })
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

/// Looks `name` up in the rootfs's /etc/passwd, read through an fd resolved inside the rootfs.
/// Returns (uid, gid).
pub fn lookup_user(rootfs: &Path, name: &str) -> Result<(u32, u32), PlanError> {
    let field = "process.user.username";
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| PlanError::field(field, format!("opening rootfs: {e}")))?;
    let text =
        crate::fsutil::read_small_file_in_root(root.as_fd(), Path::new("/etc/passwd"), 1 << 20)
            .map_err(|e| {
                PlanError::field(field, format!("reading /etc/passwd in the rootfs: {e}"))
            })?;
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
