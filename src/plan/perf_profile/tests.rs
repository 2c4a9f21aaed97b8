use serde_json::json;

use super::*;
use crate::plan::topology::tests::{four_nodes_isolated, one_node, two_nodes_smt};

fn on(host: &crate::plan::host::FakeHost, name: &str) -> Result<Resolved, PlanError> {
    resolve(name, &shipped(name)?, &Topology::read(host).unwrap())
}

fn unmet_text(r: Result<Resolved, PlanError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn every_shipped_profile_parses() {
    for (name, _) in SHIPPED {
        let p = shipped(name).unwrap();
        assert!(!p.description.is_empty(), "{name}");
    }
    assert!(unmet_text(Err(shipped("nope").unwrap_err())).contains("chitin ships latency-pinned"));
}

#[test]
fn latency_pinned() {
    // Two whole cores: with SMT, both threads of each, on node 0.
    let r = on(&two_nodes_smt(), "latency-pinned").unwrap();
    assert_eq!((r.cpus.as_str(), r.mems.as_str()), ("0-3", "0"));
    assert_eq!(r.memory_limit, Some(8 << 30));
    assert_eq!(
        serde_json::to_value(&r.memory_policy).unwrap(),
        json!({"mode": "MPOL_BIND", "nodes": "0"})
    );
    assert_eq!(r.as_json()["process"]["scheduler"]["policy"], "SCHED_FIFO");
    let r = on(&one_node(), "latency-pinned").unwrap();
    assert_eq!((r.cpus.as_str(), r.mems.as_str()), ("0-1", "0"));
}

#[test]
fn throughput_and_mpi_leave_a_core_per_node() {
    let r = on(&two_nodes_smt(), "throughput").unwrap();
    // Node 0's core 0 (CPUs 0-1) and node 1's (CPUs 8-9) are left to the host.
    assert_eq!(r.cpus, "2-7,10-15");
    assert_eq!(
        serde_json::to_value(&r.memory_policy).unwrap(),
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0-1"})
    );
    // Isolated CPUs are not for them: node 3's cores are all isolated.
    let r = on(&four_nodes_isolated(), "mpi-rank-per-node").unwrap();
    assert_eq!((r.cpus.as_str(), r.mems.as_str()), ("1-3,5-7,9-11", "0-2"));
    assert_eq!(r.as_json()["process"]["ioPriority"]["priority"], 2);
}

#[test]
fn numa_local_dpdk_takes_isolated_cores_and_the_largest_pages() {
    let r = on(&four_nodes_isolated(), "numa-local-dpdk").unwrap();
    assert_eq!((r.cpus.as_str(), r.mems.as_str()), ("12-15", "3"));
    assert_eq!(r.hugepages, Some(("1GB".to_owned(), 4 << 30)));
    // Without isolated CPUs the profile cannot be met, and says what is missing.
    let e = unmet_text(on(&two_nodes_smt(), "numa-local-dpdk"));
    assert!(
        e.contains(
            "numa-local-dpdk: needs 4 whole isolated cores on one NUMA node; the most here is 0"
        ),
        "{e}"
    );
}

#[test]
fn what_a_host_lacks_is_named() {
    use crate::plan::topology::fake::{FakeNode, machine};
    // One core and no hugepages.
    let tiny = machine(
        &[FakeNode {
            cores: 1,
            mem_gib: 1,
            hugepages: vec![],
        }],
        1,
        "",
    );
    let e = unmet_text(on(&tiny, "latency-pinned"));
    assert!(
        e.contains("needs 2 whole cores on one NUMA node; the most here is 1 (node 0)"),
        "{e}"
    );
    let e = unmet_text(on(&tiny, "throughput"));
    assert!(
        e.contains("needs more than 1 whole cores on some NUMA node"),
        "{e}"
    );
    let r = on(&tiny, "edge-small").unwrap();
    assert_eq!((r.cpus.as_str(), r.memory_limit), ("0", Some(102 << 20)));
    let e = unmet_text(resolve(
        "x",
        &serde_json::from_value(json!({"description": "d", "hugepages": {"largest": 1}})).unwrap(),
        &Topology::read(&tiny).unwrap(),
    ));
    assert!(e.contains("no hugepage pool"), "{e}");
}

#[test]
fn no_memory_policy_without_numa() {
    let mut t = Topology::read(&one_node()).unwrap();
    t.numa = false;
    let r = resolve("edge-small", &shipped("edge-small").unwrap(), &t).unwrap();
    assert_eq!((r.mems.as_str(), r.memory_policy), ("0", None));
}
