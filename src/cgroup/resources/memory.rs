//! The memory controller: v1's limit files, or v2's max, swap.max and low (OCI's swap is
//! memory+swap; memory.swap.max is the swap alone).

use crate::plan::resources::Memory;

use super::{Kind, Writes, err, max_or};
use crate::cgroup::CgroupError;

pub(super) fn writes(m: &Memory, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    match w.kind("memory", "memory")? {
        Kind::V1 => v1(m, w),
        Kind::V2 => v2(m, w)?,
    }
    Ok(())
}

fn v1(m: &Memory, w: &mut Writes<'_>) {
    // The kernel keeps memory.limit <= memsw.limit at every write: the limit goes first unless
    // swap becomes unlimited (raising both is sorted out by apply's second pass).
    let swap_first = m.swap == Some(-1);
    if let (Some(s), true) = (m.swap, swap_first) {
        w.push("memory", "memory.memsw.limit_in_bytes", s);
    }
    if let Some(l) = m.limit {
        w.push("memory", "memory.limit_in_bytes", l);
    }
    if let (Some(s), false) = (m.swap, swap_first) {
        w.push("memory", "memory.memsw.limit_in_bytes", s);
    }
    if let Some(r) = m.reservation {
        w.push("memory", "memory.soft_limit_in_bytes", r);
    }
    if let Some(v) = m.kernel {
        w.push("memory", "memory.kmem.limit_in_bytes", v);
    }
    if let Some(v) = m.kernel_tcp {
        w.push("memory", "memory.kmem.tcp.limit_in_bytes", v);
    }
    if let Some(s) = m.swappiness {
        w.push("memory", "memory.swappiness", s);
    }
    if m.disable_oom_killer {
        w.push("memory", "memory.oom_control", 1);
    }
    if let Some(h) = m.use_hierarchy {
        w.push("memory", "memory.use_hierarchy", u8::from(h));
    }
}

fn v2(m: &Memory, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    if let Some(l) = m.limit {
        w.push("memory", "memory.max", max_or(l));
    }
    if let Some(s) = m.swap {
        let v = match (s, m.limit) {
            (s, _) if s < 0 => "max".to_string(),
            (s, Some(l)) if l >= 0 && s >= l => (s - l).to_string(),
            (_, Some(l)) if l >= 0 => {
                return Err(err("memory.swap", "must not be below memory.limit"));
            }
            _ => return Err(err("memory.swap", "needs memory.limit on cgroup v2")),
        };
        w.push("memory", "memory.swap.max", v);
    }
    if let Some(r) = m.reservation {
        w.push("memory", "memory.low", max_or(r));
    }
    for (f, set) in [
        ("memory.kernel", m.kernel.is_some()),
        ("memory.kernelTCP", m.kernel_tcp.is_some()),
        ("memory.swappiness", m.swappiness.is_some()),
        ("memory.disableOOMKiller", m.disable_oom_killer),
        ("memory.useHierarchy", m.use_hierarchy == Some(false)),
    ] {
        if set {
            return Err(err(f, "cgroup v2 has no such setting"));
        }
    }
    Ok(())
}
