//! RDMA devices on a fake sysfs: mlx5_0 (a VF's, serving ens1f0v0) with verbs, MAD and SM
//! nodes; rxe0, a soft RoCE device over veth0, with a verbs node only; mlx5_1 with none; the
//! connection manager's rdma_cm; ib_core in shared mode.

use crate::testing::{Tree, annotations, nodes, request};
use crate::{DeviceError, Grant, Host};

fn file(t: &Tree, rel: &str, text: &str) {
    let p = t.0.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn tree(name: &str) -> Tree {
    let t = Tree::new(&format!("rdma-{name}"));
    file(&t, "sys/module/ib_core/parameters/netns_mode", "Y\n");
    std::fs::create_dir_all(t.0.join("sys/class/infiniband/mlx5_0/device/net/ens1f0v0")).unwrap();
    std::fs::create_dir_all(t.0.join("sys/class/infiniband/mlx5_1")).unwrap();
    file(
        &t,
        "sys/class/infiniband/rxe0/ports/1/gid_attrs/ndevs/0",
        "veth0\n",
    );
    file(
        &t,
        "sys/class/infiniband/rxe0/ports/1/gid_attrs/ndevs/1",
        "veth0\n",
    );
    for (class, node, dev, numbers) in [
        ("infiniband_verbs", "uverbs0", "mlx5_0", "231:192"),
        ("infiniband_verbs", "uverbs1", "rxe0", "231:193"),
        ("infiniband_mad", "umad0", "mlx5_0", "231:0"),
        ("infiniband_mad", "issm0", "mlx5_0", "231:64"),
    ] {
        file(
            &t,
            &format!("sys/class/{class}/{node}/ibdev"),
            &format!("{dev}\n"),
        );
        file(
            &t,
            &format!("sys/class/{class}/{node}/dev"),
            &format!("{numbers}\n"),
        );
    }
    file(&t, "sys/class/misc/rdma_cm/dev", "10:58\n");
    t
}

fn ask(host: &Host, pairs: &[(&str, &str)], userns: bool) -> Result<Vec<Grant>, DeviceError> {
    let a = annotations(pairs);
    let mut req = request(&a, 0, &[]);
    req.userns = userns;
    crate::resolve(host, &req)
}

fn memlock(g: &[Grant]) -> u64 {
    let m = g.iter().find(|g| g.fallback).unwrap();
    assert_eq!(m.rlimits.len(), 1);
    m.rlimits[0].hard()
}

#[test]
fn a_device_by_name_or_by_its_interface_gives_its_nodes() {
    let t = tree("nodes");
    let h = Host::at(&t.0);
    for asked in ["mlx5_0", "ens1f0v0"] {
        let g = ask(&h, &[(super::ANNOTATION, asked)], false).unwrap();
        assert_eq!(
            nodes(&g[0]),
            [
                ("/dev/infiniband/uverbs0".into(), 231, 192),
                ("/dev/infiniband/umad0".into(), 231, 0),
                ("/dev/infiniband/issm0".into(), 231, 64),
                ("/dev/infiniband/rdma_cm".into(), 10, 58),
            ],
            "{asked}"
        );
        assert_eq!(g[0].device_rules.len(), 4);
        assert!(g[0].rdma.is_empty());
        assert_eq!(memlock(&g), u64::MAX);
    }
    // Soft RoCE: found by the interface its GIDs are on.
    let g = ask(&h, &[(super::ANNOTATION, "veth0")], false).unwrap();
    let paths: Vec<String> = nodes(&g[0]).into_iter().map(|n| n.0).collect();
    assert_eq!(
        paths,
        ["/dev/infiniband/uverbs1", "/dev/infiniband/rdma_cm"]
    );
}

#[test]
fn limits_and_memlock_as_far_as_they_go() {
    let t = tree("limits");
    let mut h = Host::at(&t.0);
    let asked = [
        (super::ANNOTATION, "mlx5_0,rxe0"),
        (super::LIMIT, "16:1000"),
    ];
    let g = ask(&h, &asked, false).unwrap();
    let limits: Vec<(&str, Option<u32>, Option<u32>)> = g[0]
        .rdma
        .iter()
        .map(|(d, l)| (d.as_str(), l.hca_handles(), l.hca_objects()))
        .collect();
    assert_eq!(
        limits,
        [
            ("mlx5_0", Some(16), Some(1000)),
            ("rxe0", Some(16), Some(1000))
        ]
    );
    // Without CAP_SYS_RESOURCE, or for an init in a user namespace: the runtime's own limit.
    assert_eq!(memlock(&ask(&h, &asked, true).unwrap()), u64::MAX);
    h.memlock = (true, 8 << 20);
    assert_eq!(memlock(&ask(&h, &asked, false).unwrap()), u64::MAX);
    assert_eq!(memlock(&ask(&h, &asked, true).unwrap()), 8 << 20);
    h.memlock = (false, 65536);
    assert_eq!(memlock(&ask(&h, &asked, false).unwrap()), 65536);
}

#[test]
fn what_cannot_be_had_is_named() {
    let t = tree("bad");
    let h = Host::at(&t.0);
    let cases = [
        (
            vec![(super::ANNOTATION, "mlx9")],
            super::ANNOTATION,
            "no RDMA device mlx9, nor one that serves an interface mlx9",
        ),
        (
            vec![(super::ANNOTATION, "mlx5_1")],
            super::ANNOTATION,
            "mlx5_1 has no verbs node (infiniband_verbs): is ib_uverbs loaded?",
        ),
        // The second of two without one, too.
        (
            vec![(super::ANNOTATION, "mlx5_0,mlx5_1")],
            super::ANNOTATION,
            "mlx5_1 has no verbs node (infiniband_verbs): is ib_uverbs loaded?",
        ),
        (
            vec![(super::ANNOTATION, ",")],
            super::ANNOTATION,
            "names no RDMA device",
        ),
        (
            vec![(super::LIMIT, "1:2")],
            super::LIMIT,
            "needs org.chitin.devices.rdma",
        ),
        (
            vec![(super::ANNOTATION, "mlx5_0"), (super::LIMIT, "1")],
            super::LIMIT,
            "\"1\" is not HANDLES:OBJECTS",
        ),
        (
            vec![(super::ANNOTATION, "mlx5_0"), (super::LIMIT, "1:-2")],
            super::LIMIT,
            "\"-2\" is not a count",
        ),
    ];
    for (asked, key, want) in cases {
        let e = ask(&h, &asked, false).err().unwrap();
        assert_eq!((e.annotation.as_str(), e.reason.as_str()), (key, want));
    }
    file(&t, "sys/module/ib_core/parameters/netns_mode", "N\n");
    let g = ask(&h, &[(super::ANNOTATION, "mlx5_0")], false).unwrap();
    // Exclusive mode: the device moves into the container's namespace too.
    let moves = [crate::Action::RdmaNamespace {
        device: "mlx5_0".into(),
        annotation: super::ANNOTATION.into(),
    }];
    assert_eq!(g[0].actions, moves);
    std::fs::remove_dir_all(t.0.join("sys/module/ib_core")).unwrap();
    let e = ask(&h, &[(super::ANNOTATION, "mlx5_0")], false)
        .err()
        .unwrap();
    assert!(e.reason.contains("ib_core is not loaded"), "{}", e.reason);
}
