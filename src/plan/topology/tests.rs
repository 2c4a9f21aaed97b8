use super::fake::{FakeNode, machine};
use super::*;

pub fn one_node() -> crate::plan::host::FakeHost {
    machine(
        &[FakeNode {
            cores: 4,
            mem_gib: 8,
            hugepages: vec![(2048, 64)],
        }],
        1,
        "",
    )
}

pub fn two_nodes_smt() -> crate::plan::host::FakeHost {
    let node = || FakeNode {
        cores: 4,
        mem_gib: 16,
        hugepages: vec![(2048, 512)],
    };
    machine(&[node(), node()], 2, "")
}

/// Four nodes of 4 cores, CPUs 12-15 (node 3) isolated, 1 GiB pages on every node.
pub fn four_nodes_isolated() -> crate::plan::host::FakeHost {
    let node = || FakeNode {
        cores: 4,
        mem_gib: 32,
        hugepages: vec![(2048, 1024), (1 << 20, 4)],
    };
    machine(&[node(), node(), node(), node()], 1, "12-15")
}

#[test]
fn fake_machines_read_as_built() {
    let t = Topology::read(&one_node()).unwrap();
    assert_eq!(t.cpus.len(), 4);
    assert_eq!(t.nodes[0].mem_bytes, 8 << 30);
    assert_eq!(t.nodes[0].free_hugepages, [(2 << 20, 64)]);

    let t = Topology::read(&two_nodes_smt()).unwrap();
    assert_eq!(t.cpus.len(), 16);
    // CPUs 0 and 1 are one core's threads, on node 0; 8 is node 1's first.
    assert_eq!(
        (t.cpus[0].core, t.cpus[1].core, t.cpus[2].core),
        ((0, 0), (0, 0), (0, 1))
    );
    assert_eq!((t.cpus[7].node, t.cpus[8].node), (0, 1));
    assert_eq!(t.nodes[1].distances, [30, 10]);

    let t = Topology::read(&four_nodes_isolated()).unwrap();
    let isolated: Vec<usize> = t.cpus.iter().filter(|c| c.isolated).map(|c| c.id).collect();
    assert_eq!(isolated, [12, 13, 14, 15]);
    assert_eq!(t.nodes[3].free_hugepages, [(2 << 20, 1024), (1 << 30, 4)]);
    assert_eq!(t.nodes[0].distances, [10, 30, 40, 50]);
}

#[test]
fn a_kernel_without_numa_is_one_node() {
    let mut h = crate::plan::host::FakeHost::bundle();
    for (p, t) in [
        ("/sys/devices/system/cpu/online", "0-1"),
        ("/proc/meminfo", "MemTotal:        2048 kB\n"),
    ] {
        h.files.insert(p.into(), t.into());
    }
    // No topology directories either (a kernel without SMP): each CPU a core of its own.
    let t = Topology::read(&h).unwrap();
    assert_eq!((t.cpus[0].core, t.cpus[1].core), ((0, 0), (0, 1)));
    assert_eq!((t.nodes.len(), t.numa), (1, false));
    assert_eq!(t.nodes[0].mem_bytes, 2 << 20);
    assert!(t.cpus.iter().all(|c| c.node == 0));
}

#[test]
fn this_machine_reads() {
    let t = Topology::read(&crate::plan::host::RealHost).unwrap();
    assert!(!t.cpus.is_empty() && !t.nodes.is_empty());
    assert!(
        t.cpus
            .iter()
            .all(|c| t.nodes.iter().any(|n| n.id == c.node))
    );
}

#[test]
fn an_unknown_package_is_minus_one() {
    // sparc64's kernel says -1 for the package of each CPU.
    let mut h = one_node();
    for c in 0..4 {
        let f = format!("/sys/devices/system/cpu/cpu{c}/topology/physical_package_id");
        h.files.insert(f.into(), "-1\n".into());
    }
    let t = Topology::read(&h).unwrap();
    assert_eq!((t.cpus[0].core, t.cpus[3].core), ((-1, 0), (-1, 3)));
}
