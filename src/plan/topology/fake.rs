//! Fake machines for the tests: their sysfs as a FakeHost.

use crate::plan::host::FakeHost;

/// One NUMA node of a fake machine.
pub struct FakeNode {
    pub cores: usize,
    pub mem_gib: u64,
    /// Free hugepages: (size in kB, count).
    pub hugepages: Vec<(u64, u64)>,
}

/// A machine of `nodes` (CPUs numbered node by node, `smt` threads a core, the threads of a
/// core adjacent), with `isolated` CPUs and node distances 10 (own) and 20 + 10 * hops.
pub fn machine(nodes: &[FakeNode], smt: usize, isolated: &str) -> FakeHost {
    let mut h = FakeHost::bundle();
    let mut put = |path: String, text: String| {
        h.files.insert(path.into(), text);
    };
    let total: usize = nodes.iter().map(|n| n.cores * smt).sum();
    put(
        "/sys/devices/system/cpu/online".into(),
        format!("0-{}\n", total - 1),
    );
    put(
        "/sys/devices/system/cpu/isolated".into(),
        format!("{isolated}\n"),
    );
    put(
        "/sys/devices/system/node/online".into(),
        format!("0-{}\n", nodes.len() - 1),
    );
    let mut cpu = 0;
    for (i, n) in nodes.iter().enumerate() {
        let dir = format!("/sys/devices/system/node/node{i}");
        put(
            format!("{dir}/cpulist"),
            format!("{}-{}\n", cpu, cpu + n.cores * smt - 1),
        );
        put(
            format!("{dir}/meminfo"),
            format!(
                "Node {i} MemTotal: {} kB\nNode {i} MemFree: 1 kB\n",
                n.mem_gib << 20
            ),
        );
        let distances: Vec<String> = (0..nodes.len())
            .map(|j| {
                if i == j {
                    10
                } else {
                    20 + 10 * i.abs_diff(j) as u32
                }
                .to_string()
            })
            .collect();
        put(format!("{dir}/distance"), distances.join(" ") + "\n");
        for (kb, free) in &n.hugepages {
            put(
                format!("{dir}/hugepages/hugepages-{kb}kB/free_hugepages"),
                format!("{free}\n"),
            );
        }
        for c in 0..n.cores * smt {
            let topo = format!("/sys/devices/system/cpu/cpu{}/topology", cpu + c);
            put(format!("{topo}/physical_package_id"), format!("{i}\n"));
            put(format!("{topo}/core_id"), format!("{}\n", c / smt));
        }
        cpu += n.cores * smt;
    }
    let dirs: Vec<_> = h
        .files
        .keys()
        .flat_map(|p| {
            p.ancestors()
                .skip(1)
                .map(|a| a.to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    h.dirs.extend(dirs);
    h
}
