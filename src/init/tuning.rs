//! The process's scheduling, I/O priority, CPU affinity, personality and NUMA memory policy, set
//! in the init or exec'd process once it is in the container's cgroup and before any seccomp
//! filter (which may forbid these calls). All survive execve.

use super::{InitError, Step};
use crate::plan::tuning::{MAX_CPUS, Mask, SchedAttr, Tuning};

/// struct sched_attr as sched_setattr(2) reads it (SCHED_ATTR_SIZE_VER1, with the clamps).
#[repr(C)]
struct RawSchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

pub fn apply(t: &Tuning) -> Result<(), InitError> {
    // Not the runtime's affinity: since Linux 6.2 an affinity asked for survives the move into a
    // cpuset, so a runtime pinned by its caller would pin the container too. All CPUs, which the
    // kernel narrows to the cpuset's; execCPUAffinity.initial alone leaves what the kernel chose.
    match (&t.affinity.last, &t.affinity.initial) {
        (Some(m), _) => set_affinity(m).step(|| "process.execCPUAffinity.final".into())?,
        (None, Some(_)) => {}
        (None, None) => set_affinity(&Mask(vec![u64::MAX; MAX_CPUS / 64]))
            .step(|| "resetting the CPU affinity to the cpuset's".into())?,
    }
    if let Some(s) = &t.scheduler {
        sched_setattr(s).step(|| {
            let rt = matches!(s.policy as i32, libc::SCHED_FIFO | libc::SCHED_RR);
            format!(
                "process.scheduler: sched_setattr{}",
                if rt {
                    " (a real-time policy needs a budget in the cgroup: linux.resources.cpu.realtimeRuntime)"
                } else {
                    ""
                }
            )
        })?;
    }
    if let Some(v) = t.io_priority {
        // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, self, value) takes plain integers.
        let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, v) };
        nix::errno::Errno::result(rc).step(|| "process.ioPriority: ioprio_set".into())?;
    }
    if let Some(persona) = t.personality {
        // SAFETY: personality(2) with a plain value; it returns the previous persona.
        let rc = unsafe { libc::personality(persona as libc::c_ulong) };
        nix::errno::Errno::result(rc).step(|| "linux.personality".into())?;
    }
    if let Some(p) = &t.memory_policy {
        // The kernel reads maxnode - 1 bits: one more than the mask holds.
        let maxnode = p.nodes.0.len() * 64 + 1;
        let ptr = if p.nodes.0.is_empty() {
            std::ptr::null()
        } else {
            p.nodes.0.as_ptr()
        };
        // SAFETY: the mask outlives the call and holds (maxnode - 1) bits.
        let rc = unsafe { libc::syscall(libc::SYS_set_mempolicy, p.mode, ptr, maxnode) };
        nix::errno::Errno::result(rc).step(|| "linux.memoryPolicy: set_mempolicy".into())?;
    }
    Ok(())
}

/// sched_setaffinity(2) of the calling thread.
pub fn set_affinity(m: &Mask) -> nix::Result<()> {
    // SAFETY: the mask is live for the call and its length is given in bytes.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setaffinity, 0, m.0.len() * 8, m.0.as_ptr()) };
    nix::errno::Errno::result(rc).map(drop)
}

fn sched_setattr(s: &SchedAttr) -> nix::Result<()> {
    // The clamps' size (SCHED_ATTR_SIZE_VER1, Linux 5.3) only when a clamp flag asks for them:
    // an older kernel refuses a larger struct whose extra bytes are not zero (E2BIG).
    const UTIL_CLAMP: u64 = 0x20 | 0x40;
    let size = match s.flags & UTIL_CLAMP {
        0 => std::mem::offset_of!(RawSchedAttr, util_min),
        _ => std::mem::size_of::<RawSchedAttr>(),
    };
    let attr = RawSchedAttr {
        size: size as u32,
        policy: s.policy,
        flags: s.flags,
        nice: s.nice,
        priority: s.priority,
        runtime: s.runtime,
        deadline: s.deadline,
        period: s.period,
        // The spec has no clamp values: the flags alone ask for the defaults (0 and 1024).
        util_min: 0,
        util_max: 1024,
    };
    // SAFETY: a sched_attr whose size field says how much the kernel may read.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    nix::errno::Errno::result(rc).map(drop)
}
