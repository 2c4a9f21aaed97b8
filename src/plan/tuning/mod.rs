//! How a process is scheduled and where it runs and allocates: `process.scheduler`,
//! `process.ioPriority`, `process.execCPUAffinity`, and the container-wide `linux.personality`
//! and `linux.memoryPolicy`, checked and turned into the values the system calls take.

use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality,
    LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, Scheduler,
};

use std::path::Path;

use super::PlanError;
use super::host::Host;

/// The largest CPU or node number a list may name (the kernel's NR_CPUS is at most 8192).
pub const MAX_CPUS: usize = 8192;

/// sched_setattr(2)'s arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// A set of CPUs or NUMA nodes as the kernel's bitmask: 64 a word, in native byte order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mask(pub Vec<u64>);

impl Mask {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn contains(&self, id: usize) -> bool {
        self.0.get(id / 64).is_some_and(|w| w & 1 << (id % 64) != 0)
    }

    /// The ids in the set, ascending.
    pub fn ids(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.0.len() * 64).filter(|&i| self.contains(i))
    }
}

/// process.execCPUAffinity: the runtime's affinity before the process is in the container's
/// cgroup, and the process's once it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecAffinity {
    pub initial: Option<Mask>,
    pub last: Option<Mask>,
}

/// set_mempolicy(2)'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicy {
    /// The mode with its MPOL_F_* flags.
    pub mode: i32,
    pub nodes: Mask,
}

/// The tuning of one process: its own fields and the container's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuning {
    pub scheduler: Option<SchedAttr>,
    /// ioprio_set(2)'s value: the class in the top bits, the level below.
    pub io_priority: Option<u32>,
    pub affinity: ExecAffinity,
    /// personality(2)'s persona.
    pub personality: Option<u32>,
    pub memory_policy: Option<MemPolicy>,
}

/// A "0-3,7" list as a mask; every part must parse and name a number below MAX_CPUS.
pub fn parse_list(field: &str, text: &str) -> Result<Mask, PlanError> {
    let bad = |why: String| PlanError::field(field, format!("{text:?}: {why}"));
    let mut words = Vec::new();
    for part in text.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("{part:?} is not a number or a range")))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(bad(format!("{part:?} is a range backwards")));
        }
        if b >= MAX_CPUS {
            return Err(bad(format!("{b} is above {}", MAX_CPUS - 1)));
        }
        words.resize(words.len().max(b / 64 + 1), 0u64);
        for i in a..=b {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    Ok(Mask(words))
}

/// The container-wide fields (`linux`), for the init and every exec'd process.
pub fn container(
    personality: Option<&LinuxPersonality>,
    policy: Option<&LinuxMemoryPolicy>,
    host: &dyn Host,
) -> Result<(Option<u32>, Option<MemPolicy>), PlanError> {
    let persona = personality
        .map(|p| {
            if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(PlanError::field(
                    "linux.personality.flags",
                    "the runtime-spec defines no flags",
                ));
            }
            Ok(match p.domain() {
                LinuxPersonalityDomain::PerLinux => 0,
                LinuxPersonalityDomain::PerLinux32 => 0x0008,
            })
        })
        .transpose()?;
    let policy = policy.map(memory_policy).transpose()?;
    if let Some(p) = &policy {
        online_nodes(host, &p.nodes)?;
    }
    Ok((persona, policy))
}

/// A memory policy needs a kernel with NUMA, and names only nodes it has online.
fn online_nodes(host: &dyn Host, nodes: &Mask) -> Result<(), PlanError> {
    let field = "linux.memoryPolicy";
    let online = host.read_file(Path::new(ONLINE_NODES)).map_err(|_| {
        PlanError::field(
            field,
            "this kernel has no NUMA memory policies (CONFIG_NUMA)",
        )
    })?;
    let online = parse_list(ONLINE_NODES, online.trim())?;
    match nodes.ids().find(|&n| !online.contains(n)) {
        Some(n) => Err(PlanError::field(
            &format!("{field}.nodes"),
            format!(
                "node {n} is not online (online: {})",
                format_ids(online.ids())
            ),
        )),
        None => Ok(()),
    }
}

const ONLINE_NODES: &str = "/sys/devices/system/node/online";

/// Ascending ids as a list with ranges, as the kernel writes them ("0-3,8").
pub fn format_ids(ids: impl IntoIterator<Item = usize>) -> String {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for i in ids {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => out.push((i, i)),
        }
    }
    let parts: Vec<String> = out
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(",")
}

/// The process's own fields.
pub fn process(
    scheduler: Option<&Scheduler>,
    io: Option<&LinuxIOPriority>,
    affinity: Option<&ExecCPUAffinity>,
) -> Result<Tuning, PlanError> {
    let affinity = affinity.map_or(Ok(ExecAffinity::default()), |a| {
        let list = |field: &str, s: &Option<String>| {
            s.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| parse_list(field, s))
                .transpose()
        };
        Ok::<_, PlanError>(ExecAffinity {
            initial: list("process.execCPUAffinity.initial", a.initial())?,
            last: list("process.execCPUAffinity.final", a.cpu_affinity_final())?,
        })
    })?;
    Ok(Tuning {
        scheduler: scheduler.map(sched_attr).transpose()?,
        io_priority: io.map(io_priority).transpose()?,
        affinity,
        ..Tuning::default()
    })
}

fn sched_attr(s: &Scheduler) -> Result<SchedAttr, PlanError> {
    use LinuxSchedulerPolicy as P;
    let f = |name: &str| format!("process.scheduler.{name}");
    let policy = match s.policy() {
        P::SchedOther => libc::SCHED_OTHER,
        P::SchedFifo => libc::SCHED_FIFO,
        P::SchedRr => libc::SCHED_RR,
        P::SchedBatch => libc::SCHED_BATCH,
        P::SchedIdle => libc::SCHED_IDLE,
        P::SchedDeadline => 6,
        P::SchedIso => {
            return Err(PlanError::field(
                &f("policy"),
                "SCHED_ISO is reserved: Linux does not implement it",
            ));
        }
    } as u32;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(PlanError::field(
            &f("nice"),
            format!("{nice} is outside -20..19"),
        ));
    }
    let realtime = matches!(s.policy(), P::SchedFifo | P::SchedRr);
    let priority = s.priority().unwrap_or(0);
    if realtime && !(1..=99).contains(&priority) {
        return Err(PlanError::field(
            &f("priority"),
            format!("{priority}: SCHED_FIFO and SCHED_RR take 1..99"),
        ));
    }
    if !realtime && priority != 0 {
        return Err(PlanError::field(
            &f("priority"),
            "only SCHED_FIFO and SCHED_RR have a priority",
        ));
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if *s.policy() == P::SchedDeadline {
        // The kernel's own rules (sched_dl_overflow aside): a runtime of at least 1024 ns, and
        // runtime <= deadline <= period, a period of 0 meaning the deadline.
        if runtime < 1024 || deadline < runtime || (period != 0 && period < deadline) {
            return Err(PlanError::field(
                "process.scheduler",
                "SCHED_DEADLINE needs 1024 <= runtime <= deadline <= period (ns; period 0 is the deadline)",
            ));
        }
    } else if runtime != 0 || deadline != 0 || period != 0 {
        return Err(PlanError::field(
            "process.scheduler",
            "runtime, deadline and period are SCHED_DEADLINE's",
        ));
    }
    let flags = s.flags().iter().flatten().fold(0u64, |acc, fl| {
        acc | match fl {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        }
    });
    Ok(SchedAttr {
        policy,
        flags,
        nice,
        priority: priority as u32,
        runtime,
        deadline,
        period,
    })
}

fn io_priority(io: &LinuxIOPriority) -> Result<u32, PlanError> {
    let class = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = io.priority();
    if !(0..=7).contains(&level) {
        return Err(PlanError::field(
            "process.ioPriority.priority",
            format!("{level} is outside 0..7"),
        ));
    }
    Ok(class << 13 | level as u32)
}

fn memory_policy(p: &LinuxMemoryPolicy) -> Result<MemPolicy, PlanError> {
    use MemoryPolicyModeType as M;
    let nodes = match p.nodes().as_deref() {
        None | Some("") => Mask::default(),
        Some(s) => parse_list("linux.memoryPolicy.nodes", s)?,
    };
    let (mode, needs_nodes, takes_nodes) = match p.mode() {
        M::MpolDefault => (0, false, false),
        M::MpolPreferred => (1, false, true),
        M::MpolBind => (2, true, true),
        M::MpolInterleave => (3, true, true),
        M::MpolLocal => (4, false, false),
        M::MpolPreferredMany => (5, true, true),
        M::MpolWeightedInterleave => (6, true, true),
    };
    let name = p.mode().to_string();
    if needs_nodes && nodes.is_empty() {
        return Err(PlanError::field(
            "linux.memoryPolicy.nodes",
            format!("{name} needs nodes"),
        ));
    }
    if !takes_nodes && !nodes.is_empty() {
        return Err(PlanError::field(
            "linux.memoryPolicy.nodes",
            format!("{name} takes no nodes"),
        ));
    }
    let flags = p.flags().iter().flatten().collect::<Vec<_>>();
    let has = |f: MemoryPolicyFlagType| flags.contains(&&f);
    if has(MemoryPolicyFlagType::MpolFStaticNodes) && has(MemoryPolicyFlagType::MpolFRelativeNodes)
    {
        return Err(PlanError::field(
            "linux.memoryPolicy.flags",
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        ));
    }
    if has(MemoryPolicyFlagType::MpolFNumaBalancing) && !matches!(mode, 2 | 5) {
        return Err(PlanError::field(
            "linux.memoryPolicy.flags",
            "MPOL_F_NUMA_BALANCING goes with MPOL_BIND or MPOL_PREFERRED_MANY only",
        ));
    }
    if !flags.is_empty() && mode == 0 {
        return Err(PlanError::field(
            "linux.memoryPolicy.flags",
            "MPOL_DEFAULT takes no flags",
        ));
    }
    let flags = flags.iter().fold(0, |acc, f| {
        acc | match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        }
    });
    Ok(MemPolicy {
        mode: mode | flags,
        nodes,
    })
}

#[cfg(test)]
mod tests;
