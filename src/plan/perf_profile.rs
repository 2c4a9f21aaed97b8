//! Performance profiles: what a container needs said relative to the host ("2 whole cores on
//! one NUMA node, memory bound there, 4 of the largest hugepages"), resolved against the host's
//! topology into plain runtime-spec fields. The profiles chitin ships are in profiles/performance.

use std::collections::BTreeSet;

use oci_spec::runtime::{LinuxIOPriority, LinuxMemoryPolicy, Scheduler};
use serde::Deserialize;
use serde_json::{Value, json};

use super::PlanError;
use super::topology::{Cpu, Topology};

/// The annotation that names a shipped profile.
pub const ANNOTATION: &str = "org.chitin.profile.performance";

/// The shipped profiles, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "latency-pinned",
        include_str!("../../profiles/performance/latency-pinned.json"),
    ),
    (
        "throughput",
        include_str!("../../profiles/performance/throughput.json"),
    ),
    (
        "numa-local-dpdk",
        include_str!("../../profiles/performance/numa-local-dpdk.json"),
    ),
    (
        "mpi-rank-per-node",
        include_str!("../../profiles/performance/mpi-rank-per-node.json"),
    ),
    (
        "edge-small",
        include_str!("../../profiles/performance/edge-small.json"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    pub description: String,
    #[serde(default)]
    pub cpus: Option<CpuRule>,
    #[serde(default)]
    pub memory: Option<MemoryRule>,
    #[serde(default)]
    pub hugepages: Option<HugepageRule>,
    #[serde(default)]
    pub scheduler: Option<Scheduler>,
    #[serde(default)]
    pub io_priority: Option<LinuxIOPriority>,
    /// Where exec'd processes run (process.execCPUAffinity.final).
    #[serde(default)]
    pub exec_cpus: Option<ExecCpus>,
    /// A real-time scheduler's budget from the cgroup, where the kernel groups one.
    #[serde(default)]
    pub realtime: Option<RealtimeRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeRule {
    /// This share of each 1 s period (linux.resources.cpu.realtimeRuntime).
    pub percent: u8,
}

/// The period a profile's rt budget is a share of, in µs: the kernel's default.
pub const RT_PERIOD_US: u64 = 1_000_000;

/// The rt budget `rule` asks for, where the kernel has budgets (`budget` is the parent's),
/// or what the parent lacks.
pub fn realtime(
    name: &str,
    rule: &RealtimeRule,
    budget: Option<&super::host::RtBudget>,
) -> Result<Option<i64>, PlanError> {
    let Some(b) = budget else {
        return Ok(None);
    };
    let want = (RT_PERIOD_US * u64::from(rule.percent.min(100)) / 100) as i64;
    let parent = b.parent.display();
    if !b.exists {
        return Err(unmet(
            name,
            format!(
                "needs an rt budget of {want} µs a second from the parent cgroup {parent}, which chitin would make without one"
            ),
        ));
    }
    match b.free_us {
        Some(free) if free < want => Err(unmet(
            name,
            format!(
                "needs an rt budget of {want} µs a second; the parent cgroup {parent} has {free} µs left to give (cpu.rt_runtime_us)"
            ),
        )),
        _ => Ok(Some(want)),
    }
}

/// The CPUs an exec'd process (a probe, a debugging shell) is kept to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecCpus {
    /// The first chosen core's threads, so that the others stay the workload's alone.
    FirstCore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuRule {
    /// This many whole cores (every hardware thread of each), all on one NUMA node.
    #[serde(default)]
    pub cores: Option<usize>,
    /// Every core but this many on each node (left to the host's housekeeping).
    #[serde(default)]
    pub all_but_per_node: Option<usize>,
    #[serde(default)]
    pub isolated: Isolated,
    /// Which NUMA nodes the cores may come from.
    #[serde(default)]
    pub near: Near,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Near {
    /// Any node.
    #[default]
    Any,
    /// The node of the PCI devices the container was given (VFIO groups, SR-IOV interfaces);
    /// any node for a container given none that has a node.
    Devices,
}

/// Which CPUs the kernel keeps for isolated work (isolcpus=, nohz_full=) may be chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolated {
    /// Only those.
    Only,
    /// Never those.
    #[default]
    Avoid,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryRule {
    #[serde(default)]
    pub placement: Placement,
    /// A memory limit of this share of the memory of the nodes used.
    #[serde(default)]
    pub percent: Option<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Bound to the nodes of the chosen CPUs (cpuset mems and MPOL_BIND).
    #[default]
    Local,
    /// Spread page by page over every node (MPOL_INTERLEAVE).
    Interleave,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HugepageRule {
    /// This many pages of the largest size the chosen nodes have free.
    pub largest: u64,
}

/// A profile resolved for one host: the runtime-spec values it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub cpus: String,
    pub mems: String,
    pub memory_policy: Option<LinuxMemoryPolicy>,
    pub memory_limit: Option<i64>,
    /// (runtime-spec page size, "2MB"/"1GB"; limit in bytes).
    pub hugepages: Option<(String, u64)>,
    pub scheduler: Option<Scheduler>,
    pub io_priority: Option<LinuxIOPriority>,
    /// process.execCPUAffinity.final.
    pub exec_cpus: Option<String>,
    /// linux.resources.cpu.realtimeRuntime, of RT_PERIOD_US.
    pub realtime_runtime: Option<i64>,
}

fn unmet(name: &str, why: String) -> PlanError {
    PlanError::field(
        &format!("annotations[{ANNOTATION:?}]"),
        format!("{name}: {why}"),
    )
}

/// The shipped profile `name`.
pub fn shipped(name: &str) -> Result<Profile, PlanError> {
    let (_, text) = SHIPPED.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        unmet(
            name,
            format!("no such profile (chitin ships {})", names.join(", ")),
        )
    })?;
    Ok(serde_json::from_str(text).expect("a shipped profile parses"))
}

/// The profile an annotation's value names: a shipped one by name, or a file by its absolute
/// path (read through `host`, parsed as strictly as the shipped ones).
pub fn named(value: &str, host: &dyn super::host::Host) -> Result<Profile, PlanError> {
    if !value.starts_with('/') {
        return shipped(value);
    }
    let text = host
        .read_file(std::path::Path::new(value))
        .map_err(|e| unmet(value, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| unmet(value, format!("not a profile: {e}")))
}

/// `profile` on the machine `t`, or what it needs that the machine lacks.
pub fn resolve(name: &str, profile: &Profile, t: &Topology) -> Result<Resolved, PlanError> {
    let (cpus, first_core) = match &profile.cpus {
        Some(rule) => choose_cpus(name, rule, t)?,
        None => (t.cpus.iter().map(|c| c.id).collect(), BTreeSet::new()),
    };
    let used: BTreeSet<usize> = t
        .cpus
        .iter()
        .filter(|c| cpus.contains(&c.id))
        .map(|c| c.node)
        .collect();
    let all: BTreeSet<usize> = t.nodes.iter().map(|n| n.id).collect();
    let placement = profile.memory.as_ref().map(|m| m.placement);
    let mem_nodes = match placement {
        Some(Placement::Interleave) => &all,
        _ => &used,
    };
    // A kernel without NUMA has no memory policies, and nothing to place.
    let memory_policy = placement.filter(|_| t.numa).map(|p| {
        let mode = match p {
            Placement::Local => "MPOL_BIND",
            Placement::Interleave => "MPOL_INTERLEAVE",
        };
        serde_json::from_value(json!({"mode": mode, "nodes": list(mem_nodes)}))
            .expect("a memory policy")
    });
    let node_mem: u64 = t
        .nodes
        .iter()
        .filter(|n| mem_nodes.contains(&n.id))
        .map(|n| n.mem_bytes)
        .sum();
    let memory_limit = profile
        .memory
        .as_ref()
        .and_then(|m| m.percent)
        // In whole MiB: the kernel would round to its page size, and the saved config should
        // say what is in force.
        .map(|p| ((u128::from(node_mem) * u128::from(p.min(100)) / 100) as i64) & !((1 << 20) - 1));
    let hugepages = profile
        .hugepages
        .as_ref()
        .map(|h| largest_pages(name, h.largest, &used, t))
        .transpose()?;
    Ok(Resolved {
        cpus: list(&cpus),
        mems: list(mem_nodes),
        memory_policy,
        memory_limit,
        hugepages,
        scheduler: profile.scheduler.clone(),
        io_priority: profile.io_priority,
        exec_cpus: match profile.exec_cpus {
            Some(ExecCpus::FirstCore) if !first_core.is_empty() => Some(list(&first_core)),
            Some(ExecCpus::FirstCore) => {
                return Err(unmet(name, "execCpus first-core needs a cpus rule".into()));
            }
            None => None,
        },
        realtime_runtime: None,
    })
}

/// The cores a rule asks for, as CPU ids, and the first of them.
fn choose_cpus(
    name: &str,
    rule: &CpuRule,
    t: &Topology,
) -> Result<(BTreeSet<usize>, BTreeSet<usize>), PlanError> {
    let allowed = |c: &Cpu| c.isolated == (rule.isolated == Isolated::Only);
    // Whole cores only: every thread of the core may be chosen.
    let mut cores: Vec<(usize, (i64, i64), Vec<usize>)> = Vec::new();
    for c in &t.cpus {
        match cores.iter_mut().find(|(_, k, _)| *k == c.core) {
            Some((_, _, ids)) => ids.push(c.id),
            None => cores.push((c.node, c.core, vec![c.id])),
        }
    }
    let whole: Vec<&(usize, (i64, i64), Vec<usize>)> = cores
        .iter()
        .filter(|(_, _, ids)| {
            ids.iter()
                .all(|id| t.cpus.iter().any(|c| c.id == *id && allowed(c)))
        })
        .collect();
    let kind = match rule.isolated {
        Isolated::Only => "isolated ",
        Isolated::Avoid => "",
    };
    let per_node = |n: usize| {
        whole
            .iter()
            .filter(|(node, _, _)| *node == n)
            .collect::<Vec<_>>()
    };
    match (rule.cores, rule.all_but_per_node) {
        (Some(want), None) => {
            let best = t
                .nodes
                .iter()
                .map(|n| (per_node(n.id).len(), n.id))
                .max_by_key(|(k, n)| (*k, std::cmp::Reverse(*n)));
            let fits = t.nodes.iter().find(|n| per_node(n.id).len() >= want);
            match fits {
                Some(n) => Ok(with_first(per_node(n.id).into_iter().take(want))),
                None => {
                    let (most, node) = best.unwrap_or((0, 0));
                    Err(unmet(
                        name,
                        format!(
                            "needs {want} whole {kind}cores on one NUMA node; the most here is {most} (node {node})"
                        ),
                    ))
                }
            }
        }
        (None, Some(keep)) => {
            let chosen = with_first(
                t.nodes
                    .iter()
                    .flat_map(|n| per_node(n.id).into_iter().skip(keep)),
            );
            if chosen.0.is_empty() {
                return Err(unmet(
                    name,
                    format!("needs more than {keep} whole {kind}cores on some NUMA node"),
                ));
            }
            Ok(chosen)
        }
        _ => Err(unmet(
            name,
            "cpus: give one of cores and allButPerNode".into(),
        )),
    }
}

/// The CPUs of `cores`, and those of the first.
fn with_first<'a>(
    cores: impl Iterator<Item = &'a &'a (usize, (i64, i64), Vec<usize>)>,
) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let mut first = BTreeSet::new();
    let mut all = BTreeSet::new();
    for (i, (_, _, ids)) in cores.enumerate() {
        if i == 0 {
            first.extend(ids.iter().copied());
        }
        all.extend(ids.iter().copied());
    }
    (all, first)
}

/// `count` pages of the largest size the nodes have that many free of.
fn largest_pages(
    name: &str,
    count: u64,
    nodes: &BTreeSet<usize>,
    t: &Topology,
) -> Result<(String, u64), PlanError> {
    let mut sizes: Vec<u64> = t
        .nodes
        .iter()
        .flat_map(|n| n.free_hugepages.iter().map(|(s, _)| *s))
        .collect();
    sizes.sort();
    sizes.dedup();
    let largest = *sizes.last().ok_or_else(|| {
        unmet(
            name,
            "needs hugepages; this host has no hugepage pool".into(),
        )
    })?;
    let free: u64 = t
        .nodes
        .iter()
        .filter(|n| nodes.contains(&n.id))
        .flat_map(|n| {
            n.free_hugepages
                .iter()
                .filter(|(s, _)| *s == largest)
                .map(|(_, f)| *f)
        })
        .sum();
    if free < count {
        return Err(unmet(
            name,
            format!(
                "needs {count} free {} hugepages on node(s) {}; there are {free}",
                page_size(largest),
                list(nodes)
            ),
        ));
    }
    Ok((page_size(largest), count * largest))
}

/// A page size as the runtime-spec writes it: "2MB", "1GB", "64KB".
fn page_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{}GB", b >> 30),
        b if b >= 1 << 20 => format!("{}MB", b >> 20),
        b => format!("{}KB", b >> 10),
    }
}

/// Ids as a list with ranges: "0-3,8".
pub fn list(ids: &BTreeSet<usize>) -> String {
    super::tuning::format_ids(ids.iter().copied())
}

impl Resolved {
    /// The fields as a runtime-spec fragment, as `profile explain` prints them.
    pub fn as_json(&self) -> Value {
        let mut v =
            json!({"linux": {"resources": {"cpu": {"cpus": self.cpus, "mems": self.mems}}}});
        if let Some(p) = &self.memory_policy {
            v["linux"]["memoryPolicy"] = serde_json::to_value(p).expect("serializes");
        }
        if let Some(l) = self.memory_limit {
            v["linux"]["resources"]["memory"] = json!({"limit": l});
        }
        if let Some((size, limit)) = &self.hugepages {
            v["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": size, "limit": limit}]);
        }
        if let Some(s) = &self.scheduler {
            v["process"]["scheduler"] = serde_json::to_value(s).expect("serializes");
        }
        if let Some(io) = &self.io_priority {
            v["process"]["ioPriority"] = serde_json::to_value(io).expect("serializes");
        }
        if let Some(r) = self.realtime_runtime {
            let cpu = &mut v["linux"]["resources"]["cpu"];
            cpu["realtimeRuntime"] = r.into();
            cpu["realtimePeriod"] = RT_PERIOD_US.into();
        }
        if let Some(c) = &self.exec_cpus {
            v["process"]["execCPUAffinity"] = json!({"final": c});
        }
        v
    }
}

pub mod near;
#[cfg(test)]
mod tests;
