//! The host's CPU and memory topology, read from sysfs through `Host` (so that tests give fake
//! machines): online CPUs with their core and NUMA node, each node's memory, distances and
//! hugepage pools, and the CPUs the kernel keeps for isolated work.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::PlanError;
use super::host::Host;
use super::tuning::{MAX_CPUS, parse_list};

const CPU: &str = "/sys/devices/system/cpu";
const NODE: &str = "/sys/devices/system/node";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    pub id: usize,
    /// (package, core id): the hardware threads of one core share it. Either may be -1, the
    /// kernel's "unknown" (sparc64's package).
    pub core: (i64, i64),
    pub node: usize,
    /// isolcpus= or nohz_full=.
    pub isolated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: usize,
    pub mem_bytes: u64,
    /// Distances to every node, by node id (the node's own is 10).
    pub distances: Vec<u32>,
    /// Free hugepages by page size in bytes.
    pub free_hugepages: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub cpus: Vec<Cpu>,
    pub nodes: Vec<Node>,
    /// The kernel has NUMA (and so memory policies); without it, one node holds everything.
    pub numa: bool,
}

fn read(host: &dyn Host, path: &Path) -> Result<String, PlanError> {
    host.read_file(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| PlanError::Options(format!("reading the topology: {}: {e}", path.display())))
}

/// A CPU or node list as a set; an empty list (or the kernel's "(null)") is the empty set.
pub fn ids(field: &str, text: &str) -> Result<BTreeSet<usize>, PlanError> {
    if text.is_empty() || text == "(null)" {
        return Ok(BTreeSet::new());
    }
    Ok(parse_list(field, text)?.ids().collect())
}

fn number<T: std::str::FromStr>(host: &dyn Host, path: &Path) -> Result<T, PlanError> {
    let text = read(host, path)?;
    text.parse()
        .map_err(|_| PlanError::Options(format!("{}: {text:?} is not a number", path.display())))
}

impl Topology {
    /// The machine as far as `cpus` reach.
    pub fn keep_cpus(&mut self, cpus: &BTreeSet<usize>) {
        self.cpus.retain(|c| cpus.contains(&c.id));
    }

    /// The machine as far as `nodes` reach: their CPUs and memory alone.
    pub fn keep_nodes(&mut self, nodes: &BTreeSet<usize>) {
        self.cpus.retain(|c| nodes.contains(&c.node));
        self.nodes.retain(|n| nodes.contains(&n.id));
    }

    pub fn read(host: &dyn Host) -> Result<Topology, PlanError> {
        let cpu_dir = Path::new(CPU);
        let online = ids("cpu/online", &read(host, &cpu_dir.join("online"))?)?;
        let mut isolated = BTreeSet::new();
        for f in ["isolated", "nohz_full"] {
            if let Ok(text) = host.read_file(&cpu_dir.join(f)) {
                isolated.extend(ids(f, text.trim())?);
            }
        }
        let node_dir = Path::new(NODE);
        // A kernel without NUMA has no node directory: one node holding everything.
        let node_ids = match host.read_file(&node_dir.join("online")) {
            Ok(text) => ids("node/online", text.trim())?,
            Err(_) => BTreeSet::from([0]),
        };
        let numa = node_ids.len() > 1 || host.exists(&node_dir.join("node0"));
        let mut node_of = vec![0; MAX_CPUS];
        let mut nodes = Vec::new();
        for &n in &node_ids {
            let dir = node_dir.join(format!("node{n}"));
            if numa {
                for c in ids("cpulist", &read(host, &dir.join("cpulist"))?)? {
                    node_of[c] = n;
                }
            }
            nodes.push(Node {
                id: n,
                mem_bytes: mem_total(host, numa.then_some(&dir))?,
                distances: match numa {
                    true => read(host, &dir.join("distance"))?
                        .split_whitespace()
                        .filter_map(|d| d.parse().ok())
                        .collect(),
                    false => vec![10],
                },
                free_hugepages: hugepages(
                    host,
                    &match numa {
                        true => dir.join("hugepages"),
                        false => PathBuf::from("/sys/kernel/mm/hugepages"),
                    },
                )?,
            });
        }
        let cpus = online
            .iter()
            .map(|&id| {
                let topo = cpu_dir.join(format!("cpu{id}/topology"));
                // A kernel built without SMP has no topology: each CPU is a core of its own.
                let core = match host.exists(&topo) {
                    true => (
                        number(host, &topo.join("physical_package_id"))?,
                        number(host, &topo.join("core_id"))?,
                    ),
                    false => (0, id as i64),
                };
                Ok(Cpu {
                    id,
                    core,
                    node: node_of[id],
                    isolated: isolated.contains(&id),
                })
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(Topology { cpus, nodes, numa })
    }
}

/// MemTotal of a node's meminfo ("Node 0 MemTotal: 24683772 kB"), or of /proc/meminfo.
fn mem_total(host: &dyn Host, node: Option<&PathBuf>) -> Result<u64, PlanError> {
    let path = node.map_or(PathBuf::from("/proc/meminfo"), |d| d.join("meminfo"));
    let text = read(host, &path)?;
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("MemTotal:")?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| PlanError::Options(format!("{}: no MemTotal", path.display())))
}

/// The free pages of each hugepage size under `dir` (hugepages-2048kB/free_hugepages, ...).
fn hugepages(host: &dyn Host, dir: &Path) -> Result<Vec<(u64, u64)>, PlanError> {
    let mut out = Vec::new();
    for name in host.list_dir(dir).unwrap_or_default() {
        let Some(kb) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let free = number(host, &dir.join(&name).join("free_hugepages"))?;
        out.push((kb * 1024, free));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
pub mod fake;
#[cfg(test)]
pub mod tests;
