use serde_json::json;

use super::*;
use crate::plan::Config;
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

#[test]
fn exec_cpus_are_the_first_core() {
    let r = on(&two_nodes_smt(), "latency-pinned").unwrap();
    assert_eq!(
        (r.cpus.as_str(), r.exec_cpus.as_deref()),
        ("0-3", Some("0-1"))
    );
    assert_eq!(
        r.as_json()["process"]["execCPUAffinity"],
        json!({"final": "0-1"})
    );
    assert_eq!(on(&two_nodes_smt(), "throughput").unwrap().exec_cpus, None);
}

/// A four-node machine whose nodes 1 and 3 are isolated, with a VFIO group (7) on node 3 and an
/// SR-IOV interface on node 1.
fn with_devices() -> crate::plan::host::FakeHost {
    use crate::plan::topology::fake::{FakeNode, machine};
    let node = || FakeNode {
        cores: 4,
        mem_gib: 16,
        hugepages: vec![(1 << 20, 8)],
    };
    let mut h = machine(&[node(), node(), node(), node()], 1, "4-7,12-15");
    let group = "/sys/kernel/iommu_groups/7/devices";
    h.dirs.insert(group.into());
    h.dirs.insert(format!("{group}/0000:81:00.1").into());
    h.files.insert(
        "/sys/bus/pci/devices/0000:81:00.1/numa_node".into(),
        "3\n".into(),
    );
    h.files
        .insert("/sys/class/net/vf0/device/numa_node".into(), "1\n".into());
    h
}

fn given(devices: serde_json::Value, net: serde_json::Value) -> Config {
    let v = json!({"ociVersion": "1.2.0", "root": {"path": "rootfs"},
                   "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
                   "linux": {"devices": devices, "netDevices": net}});
    super::super::config::parse(
        v.to_string().as_bytes(),
        std::path::Path::new("config.json"),
    )
    .unwrap()
}

#[test]
fn near_the_devices_node() {
    let p = crate::edits::Performance::on(with_devices());
    let vfio = json!([{"path": "/dev/vfio/7", "type": "c", "major": 240, "minor": 0}]);
    // The VFIO group's function is on node 3: its isolated cores.
    let r = p
        .resolve("numa-local-dpdk", Some(&given(vfio.clone(), json!({}))))
        .unwrap();
    assert_eq!((r.cpus.as_str(), r.mems.as_str()), ("12-15", "3"));
    assert_eq!(r.exec_cpus.as_deref(), Some("12"));
    // The interface is on node 1.
    let r = p
        .resolve(
            "numa-local-dpdk",
            Some(&given(json!([]), json!({"vf0": {}}))),
        )
        .unwrap();
    assert_eq!(r.cpus, "4-7");
    // Given no device, the first node that fits.
    let r = p.resolve("numa-local-dpdk", None).unwrap();
    assert_eq!(r.cpus, "4-7");
    let e = unmet_text(p.resolve("numa-local-dpdk", Some(&given(vfio, json!({"vf0": {}})))));
    assert!(
        e.ends_with("numa-local-dpdk: the devices are on NUMA node 1 (vf0) and 3 (0000:81:00.1): no node is near them all"),
        "{e}"
    );
}

#[test]
fn a_profile_from_a_file() {
    let mut h = one_node();
    h.files.insert(
        "/etc/chitin/two.json".into(),
        r#"{"description": "two cores", "cpus": {"cores": 2}, "execCpus": "first-core"}"#.into(),
    );
    h.files.insert(
        "/etc/chitin/bad.json".into(),
        r#"{"description": "x", "cpu": {}}"#.into(),
    );
    let p = crate::edits::Performance::on(h);
    let r = p.resolve("/etc/chitin/two.json", None).unwrap();
    assert_eq!(
        (r.cpus.as_str(), r.exec_cpus.as_deref()),
        ("0-1", Some("0"))
    );
    let e = unmet_text(p.resolve("/etc/chitin/bad.json", None));
    assert!(
        e.contains("/etc/chitin/bad.json: not a profile: unknown field `cpu`"),
        "{e}"
    );
    let e = unmet_text(p.resolve("/etc/chitin/none.json", None));
    assert!(
        e.contains("/etc/chitin/none.json: No such file or directory"),
        "{e}"
    );
}

#[test]
fn within_the_parent_cgroup_s_cpuset() {
    let mut h = two_nodes_smt();
    h.cpuset = Some(("8-15".into(), "1".into()));
    let r = crate::edits::Performance::on(h)
        .resolve("latency-pinned", None)
        .unwrap();
    assert_eq!((r.cpus.as_str(), r.mems.as_str()), ("8-11", "1"));
    let mut h = two_nodes_smt();
    h.cpuset = Some(("0-1".into(), "0".into()));
    let e = unmet_text(crate::edits::Performance::on(h).resolve("latency-pinned", None));
    assert!(
        e.ends_with("latency-pinned: needs 2 whole cores on one NUMA node; the most here is 1 (node 0) (the parent cgroup allows CPUs 0-1, nodes 0)"),
        "{e}"
    );
}

#[test]
fn a_real_time_budget_from_the_parent() {
    use crate::plan::host::RtBudget;
    let budget = |exists, free_us| {
        let mut h = two_nodes_smt();
        h.rt_budget = Some(RtBudget {
            parent: "/sys/fs/cgroup/cpu/rt".into(),
            exists,
            free_us,
        });
        crate::edits::Performance::on(h).resolve("latency-pinned", None)
    };
    let r = budget(true, Some(950_000)).unwrap();
    assert_eq!(r.realtime_runtime, Some(50_000));
    let cpu = &r.as_json()["linux"]["resources"]["cpu"];
    assert_eq!(
        (
            cpu["realtimeRuntime"].as_i64(),
            cpu["realtimePeriod"].as_u64()
        ),
        (Some(50_000), Some(1_000_000))
    );
    assert_eq!(
        budget(true, None).unwrap().realtime_runtime,
        Some(50_000),
        "unlimited"
    );
    let e = unmet_text(budget(true, Some(10_000)));
    assert!(e.ends_with("latency-pinned: needs an rt budget of 50000 µs a second; the parent cgroup /sys/fs/cgroup/cpu/rt has 10000 µs left to give (cpu.rt_runtime_us)"), "{e}");
    let e = unmet_text(budget(false, Some(0)));
    assert!(
        e.contains(
            "from the parent cgroup /sys/fs/cgroup/cpu/rt, which chitin would make without one"
        ),
        "{e}"
    );
    // Where the kernel keeps no budgets per cgroup, none is asked.
    assert_eq!(
        on(&two_nodes_smt(), "latency-pinned")
            .unwrap()
            .realtime_runtime,
        None
    );
}

#[test]
fn what_narrowed_the_machine_is_named() {
    // Node 1's cores are not isolated: near the interface there, the profile cannot be met.
    let mut h = with_devices();
    h.files
        .insert("/sys/devices/system/cpu/isolated".into(), "12-15\n".into());
    let p = crate::edits::Performance::on(h);
    let e = unmet_text(p.resolve(
        "numa-local-dpdk",
        Some(&given(json!([]), json!({"vf0": {}}))),
    ));
    assert!(e.ends_with("(its devices are on node 1)"), "{e}");
}
