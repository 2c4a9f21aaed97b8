//! The VFIO provider on a fake host shaped like a real one: a function bound to vfio-pci in
//! IOMMU group 42 with a bridge, sysfs classes for the nodes, huge pages of 2 MiB.

use std::path::Path;

use super::*;
use crate::testing::{Says, Tree, annotations, function, nodes, request};

const VF: &str = "0000:03:02.1";
const BRIDGE: &str = "0000:00:01.0";

fn tree(name: &str) -> Tree {
    let t = Tree::new(&format!("vfio-{name}"));
    let root = t.0.clone();
    function(&root, VF, "42", Some("vfio-pci"), "0x020000");
    function(&root, BRIDGE, "42", Some("pcieport"), "0x060400");
    for (class, name, dev) in [("misc", "vfio", "10:196"), ("vfio", "42", "243:0")] {
        let d = root.join("sys/class").join(class).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dev"), dev).unwrap();
    }
    std::fs::create_dir_all(root.join("sys/kernel/mm/hugepages/hugepages-2048kB")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/meminfo"),
        "MemTotal: 1 kB\nHugepagesize:       2048 kB\n",
    )
    .unwrap();
    t
}

fn host(t: &Tree, status: Status) -> Host {
    let mut h = Host::at(&t.0);
    h.vfio = Box::new(Says(status));
    h
}

fn ask(host: &Host, pairs: &[(&str, &str)]) -> Result<Vec<Grant>, DeviceError> {
    let a = annotations(pairs);
    resolve(host, &request(&a, 0, &[]), None)
}

#[test]
fn a_viable_group_gives_its_nodes_env_and_memory() {
    let t = tree("ok");
    let g = ask(&host(&t, Status::Viable), &[(ANNOTATION, VF)]).unwrap();
    assert_eq!(
        nodes(&g[0]),
        [
            ("/dev/vfio/42".into(), 243, 0),
            ("/dev/vfio/vfio".into(), 10, 196)
        ]
    );
    assert_eq!(g[0].device_rules.len(), 2);
    assert_eq!(g[0].env, [format!("PCIDEVICE_CHITIN_DEV_VFIO={VF}")]);
    assert!(!g[0].fallback && g[1].fallback);
    let m = &g[1].mounts[0];
    assert_eq!(m.destination(), Path::new("/dev/hugepages"));
    assert!(
        m.options()
            .as_ref()
            .unwrap()
            .contains(&"pagesize=2M".to_string())
    );
    assert!(g[1].hugepage_limits.is_empty());
    assert_eq!(g[1].rlimits[0].hard(), u64::MAX);
    let g = ask(
        &host(&t, Status::Viable),
        &[
            (ANNOTATION, VF),
            (RESOURCE, "intel.com/sriov_dpdk"),
            (HUGEPAGES, "2MB:1073741824"),
        ],
    )
    .unwrap();
    assert_eq!(g[0].env, [format!("PCIDEVICE_INTEL_COM_SRIOV_DPDK={VF}")]);
    let l = &g[1].hugepage_limits[0];
    assert_eq!((l.page_size().as_str(), l.limit()), ("2MB", 1073741824));
}

#[test]
fn a_group_not_wholly_ours_or_not_viable_is_refused() {
    let t = tree("refuse");
    let refused = |h: &Host, pairs: &[(&str, &str)]| {
        let e = ask(h, pairs).unwrap_err();
        assert!(pairs.iter().any(|(k, _)| *k == e.annotation), "{e}");
        e.reason
    };
    let h = host(&t, Status::Viable);
    assert!(refused(&h, &[(ANNOTATION, "03:02.1")]).contains("is not a PCI address"));
    assert!(
        refused(&h, &[(ANNOTATION, "0000:04:00.0")]).starts_with("0000:04:00.0: no IOMMU group")
    );
    assert!(refused(&h, &[(RESOURCE, "x")]).contains("needs org.chitin.devices.vfio"));
    assert!(refused(&h, &[(ANNOTATION, VF), (HUGEPAGES, "1GB:1")]).contains("no 1GB huge pages"));
    assert!(refused(&h, &[(ANNOTATION, VF), (HUGEPAGES, "2MB")]).contains("is not PAGESIZE:LIMIT"));
    for (status, want) in [
        (Status::NotViable, "is not viable"),
        (Status::InUse, "is in use (open elsewhere)"),
    ] {
        let e = refused(&host(&t, status), &[(ANNOTATION, VF)]);
        assert!(e.contains(want), "{e}");
    }
    // A member of the group on a host driver: the group cannot be handed over.
    function(&t.0, "0000:03:02.2", "42", Some("ixgbevf"), "0x020000");
    let e = refused(&h, &[(ANNOTATION, VF)]);
    assert_eq!(
        e,
        "0000:03:02.2, in IOMMU group 42 with 0000:03:02.1, is bound to ixgbevf: bind it to vfio-pci or unbind it"
    );
    let e = refused(&h, &[(ANNOTATION, "0000:03:02.2")]);
    assert_eq!(e, "0000:03:02.2 is bound to ixgbevf, not vfio-pci");
}

#[test]
fn numa_pins_to_the_devices_node() {
    let t = tree("numa");
    let h = host(&t, Status::Viable);
    let ask_numa = |h: &Host| ask(h, &[(ANNOTATION, VF), (NUMA, "true")]);
    let node = t.0.join("sys/bus/pci/devices").join(VF).join("numa_node");
    std::fs::write(&node, "-1\n").unwrap();
    let e = ask_numa(&h).unwrap_err();
    assert_eq!(e.annotation, NUMA);
    assert!(
        e.reason.contains("is on no NUMA node (numa_node is -1)"),
        "{}",
        e.reason
    );
    std::fs::write(&node, "1\n").unwrap();
    let cpus = t.0.join("sys/devices/system/node/node1");
    std::fs::create_dir_all(&cpus).unwrap();
    std::fs::write(cpus.join("cpulist"), "8-15\n").unwrap();
    let g = ask_numa(&h).unwrap();
    assert_eq!(g[0].cpuset, Some(("8-15".into(), "1".into())));
    assert_eq!(ask(&h, &[(ANNOTATION, VF)]).unwrap()[0].cpuset, None);
}
