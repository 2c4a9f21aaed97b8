use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::plan::host::FakeHost;

const ROOT: &str = "/sys/fs/resctrl";

fn host() -> FakeHost {
    FakeHost {
        resctrl: Some(ROOT.into()),
        ..FakeHost::bundle()
    }
}

fn rdt(h: &FakeHost, v: Value) -> Result<RdtPlan, PlanError> {
    plan(&serde_json::from_value(v).unwrap(), "c1", h)
}

fn err(r: Result<RdtPlan, PlanError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn the_container_s_own_group() {
    let p = rdt(
        &host(),
        json!({"l3CacheSchema": "L3:0=f0", "memBwSchema": "MB:0=50"}),
    )
    .unwrap();
    assert_eq!(p.group.dir, PathBuf::from("/sys/fs/resctrl/c1"));
    assert!(p.group.made);
    assert_eq!(p.group.monitor, None);
    assert_eq!(p.schemata, ["L3:0=f0\nMB:0=50"]);
}

#[test]
fn schemata_in_the_runtime_spec_s_order() {
    // l3CacheSchema's MB: line gives way to memBwSchema; schemata comes last.
    let p = rdt(
        &host(),
        json!({"l3CacheSchema": "L3:0=f0\nMB:0=10", "memBwSchema": "MB:0=70",
               "schemata": ["L2:0=3", "MB:0=20"], "enableMonitoring": true}),
    )
    .unwrap();
    assert_eq!(p.schemata, ["L3:0=f0\nMB:0=70", "L2:0=3\nMB:0=20"]);
    assert_eq!(
        p.group.monitor,
        Some(PathBuf::from("/sys/fs/resctrl/c1/mon_groups/c1"))
    );
    let p = rdt(&host(), json!({"l3CacheSchema": "L3:0=f0\nMB:0=10"})).unwrap();
    assert_eq!(p.schemata, ["L3:0=f0\nMB:0=10"]);
}

#[test]
fn a_named_group() {
    let mut h = host();
    // Missing and no schemata: nothing to join.
    assert!(err(rdt(&h, json!({"closID": "gold"}))).contains("linux.intelRdt.closID"));
    // Missing with schemata: made.
    let p = rdt(&h, json!({"closID": "gold", "schemata": ["L3:0=ff"]})).unwrap();
    assert!(p.group.made);
    // Existing: joined as it is, or with the same schemata (the kernel pads with zeros).
    h.dirs.insert("/sys/fs/resctrl/gold".into());
    h.files.insert(
        "/sys/fs/resctrl/gold/schemata".into(),
        "    L3:0=0ff;1=7ff\n    MB:0=100;1=100\n".into(),
    );
    let p = rdt(&h, json!({"closID": "gold"})).unwrap();
    assert!(!p.group.made);
    assert!(p.schemata.is_empty());
    let p = rdt(&h, json!({"closID": "gold", "l3CacheSchema": "L3:0=ff"})).unwrap();
    assert!(!p.group.made);
    let e = err(rdt(&h, json!({"closID": "gold", "memBwSchema": "MB:0=50"})));
    assert!(e.contains("other MB schemata"), "{e}");
}

#[test]
fn the_root_group_and_bad_values() {
    let h = host();
    let p = rdt(&h, json!({"closID": "/"})).unwrap();
    assert_eq!((p.group.dir, p.group.made), (PathBuf::from(ROOT), false));
    for (v, field) in [
        (json!({"closID": "/", "schemata": ["L3:0=f"]}), "closID"),
        (json!({"closID": "a/b"}), "closID"),
        (json!({"closID": ".."}), "closID"),
        (json!({"memBwSchema": "L3:0=f"}), "memBwSchema"),
        (json!({"memBwSchema": "MB:0=1\nMB:1=1"}), "memBwSchema"),
    ] {
        let e = err(rdt(&h, v.clone()));
        assert!(e.contains(&format!("linux.intelRdt.{field}")), "{v}: {e}");
    }
    let e = err(rdt(&FakeHost::bundle(), json!({})));
    assert!(e.contains("no resctrl filesystem is mounted"), "{e}");
}
