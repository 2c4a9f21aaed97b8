use super::*;

fn oci(v: serde_json::Value) -> oci_spec::runtime::LinuxResources {
    serde_json::from_value(v).unwrap()
}

fn res(v: serde_json::Value) -> Resources {
    Resources::from_oci(&oci(v)).unwrap()
}

fn files(ws: &[Write]) -> Vec<String> {
    ws.iter()
        .map(|w| format!("{}={}", w.file, w.value))
        .collect()
}

#[test]
fn zeros_mean_unset() {
    // What Docker sends for `docker run` with no limits, and for `docker update --cpus`.
    let docker = oci(serde_json::json!({
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                   "disableOOMKiller": false},
        "cpu": {"shares": 0, "quota": 25000, "period": 0, "realtimePeriod": 0,
                "realtimeRuntime": 0, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0},
        "pids": {"limit": 0}
    }));
    // No controller but cpu is needed.
    let kind = |c: &str| (c == "cpu").then_some(Kind::V1);
    assert_eq!(
        files(&writes(&Resources::from_oci(&docker).unwrap(), &kind).unwrap()),
        ["cpu.cfs_quota_us=25000"]
    );
    let v = serde_json::to_value(crate::plan::resources::without_unset(&docker)).unwrap();
    assert_eq!(v, serde_json::json!({"cpu": {"quota": 25000}}));
}

#[test]
fn v1_and_v2_writes() {
    let r = res(serde_json::json!({
        "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 32},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]
    }));
    let v1 = writes(&r, &|_| Some(Kind::V1)).unwrap();
    assert_eq!(
        files(&v1),
        [
            "memory.limit_in_bytes=104857600",
            "memory.memsw.limit_in_bytes=209715200",
            "memory.soft_limit_in_bytes=52428800",
            "cpu.shares=1024",
            "cpu.cfs_period_us=100000",
            "cpu.cfs_quota_us=50000",
            "cpuset.cpus=0-1",
            "pids.max=32",
            "blkio.weight=500",
            "blkio.throttle.read_bps_device=8:0 1048576",
            "hugetlb.2MB.limit_in_bytes=0",
        ]
    );
    let v2 = writes(&r, &|_| Some(Kind::V2)).unwrap();
    assert_eq!(
        files(&v2),
        [
            "memory.max=104857600",
            "memory.swap.max=104857600",
            "memory.low=52428800",
            "cpu.weight=39",
            "cpu.max=50000 100000",
            "cpuset.cpus=0-1",
            "pids.max=32",
            "io.weight=default 4950",
            "io.max=8:0 rbps=1048576",
            "hugetlb.2MB.max=0",
        ]
    );
}

#[test]
fn refusals_name_the_field() {
    let e = writes(
        &res(serde_json::json!({"memory": {"swappiness": 10}})),
        &|_| Some(Kind::V2),
    )
    .unwrap_err();
    assert!(e.to_string().contains("memory.swappiness"), "{e}");
    let e = writes(
        &res(serde_json::json!({"network": {"classID": 1}})),
        &|_| None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("net_cls controller is not available"),
        "{e}"
    );
    let e = writes(
        &res(serde_json::json!({"unified": {"memory.max": "1"}})),
        &|_| Some(Kind::V1),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unified[\"memory.max\"]"), "{e}");
    assert!(e.to_string().contains("invalid configuration"), "{e}");
    let r = res(serde_json::json!({"rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 100}}}));
    assert_eq!(
        files(&writes(&r, &|_| Some(Kind::V2)).unwrap()),
        ["rdma.max=mlx5_0 hca_handle=3 hca_object=100"]
    );
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
}

#[test]
fn a_hybrid_host_maps_each_controller_where_it_is() {
    // This project's machines: memory on v1, hugetlb on cgroup2.
    let r = res(serde_json::json!({
        "memory": {"limit": 1048576},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
        "unified": {"hugetlb.2MB.rsvd.max": "0"}
    }));
    let kind = |c: &str| match c {
        "hugetlb" | "" => Some(Kind::V2),
        _ => Some(Kind::V1),
    };
    let w = writes(&r, &kind).unwrap();
    assert_eq!(
        files(&w),
        [
            "memory.limit_in_bytes=1048576",
            "hugetlb.2MB.max=2097152",
            "hugetlb.2MB.rsvd.max=0",
        ]
    );
    let controllers: Vec<&str> = w.iter().map(|w| w.controller).collect();
    assert_eq!(controllers, ["memory", "hugetlb", ""]);
    let e = writes(
        &res(serde_json::json!({"unified": {"memory.high": "1"}})),
        &kind,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot use unified on cgroup v1 (memory is a v1 controller here)"),
        "{e}"
    );
}
