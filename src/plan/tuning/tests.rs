use serde_json::{Value, json};

use super::*;
use crate::plan::config::{Spelling, respell_sched_flags};

fn sched(v: Value) -> Result<SchedAttr, PlanError> {
    let mut p = json!({"scheduler": v});
    respell_sched_flags(&mut p, Spelling::OciSpec);
    sched_attr(&serde_json::from_value(p["scheduler"].clone()).unwrap())
}

fn mempolicy(v: Value) -> Result<MemPolicy, PlanError> {
    memory_policy(&serde_json::from_value(v).unwrap())
}

fn err(r: Result<impl std::fmt::Debug, PlanError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn lists_as_masks() {
    assert_eq!(parse_list("f", "0-3,7").unwrap(), Mask(vec![0x8f]));
    assert_eq!(parse_list("f", "64").unwrap(), Mask(vec![0, 1]));
    assert_eq!(parse_list("f", "8191").unwrap().0.len(), 128);
    for bad in [
        "",
        "a",
        "3-1",
        "1,,2",
        "8192",
        "0-99999999999999999999",
        "-1",
    ] {
        assert!(parse_list("f", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn scheduler_as_sched_attr() {
    let s = sched(json!({"policy": "SCHED_FIFO", "priority": 10,
                         "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"]}))
    .unwrap();
    assert_eq!((s.policy, s.priority, s.flags), (1, 10, 0x05));
    let s = sched(json!({"policy": "SCHED_BATCH", "nice": 7})).unwrap();
    assert_eq!((s.policy, s.nice), (3, 7));
    let s = sched(
        json!({"policy": "SCHED_DEADLINE", "runtime": 10000, "deadline": 20000,
                         "period": 30000}),
    )
    .unwrap();
    assert_eq!(
        (s.policy, s.runtime, s.deadline, s.period),
        (6, 10000, 20000, 30000)
    );
}

#[test]
fn scheduler_refusals_name_the_field() {
    let cases = [
        (
            json!({"policy": "SCHED_OTHER", "nice": 20}),
            "process.scheduler.nice",
        ),
        (
            json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            json!({"policy": "SCHED_RR", "priority": 100}),
            "process.scheduler.priority",
        ),
        (
            json!({"policy": "SCHED_OTHER", "priority": 1}),
            "process.scheduler.priority",
        ),
        (json!({"policy": "SCHED_ISO"}), "process.scheduler.policy"),
        (
            json!({"policy": "SCHED_OTHER", "runtime": 5}),
            "process.scheduler",
        ),
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20}),
            "process.scheduler",
        ),
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 5000, "deadline": 4000}),
            "process.scheduler",
        ),
    ];
    for (v, field) in cases {
        let e = err(sched(v.clone()));
        assert!(e.starts_with(&format!("config.json: {field}:")), "{v}: {e}");
    }
}

#[test]
fn io_priorities() {
    let io = |v: Value| io_priority(&serde_json::from_value(v).unwrap());
    assert_eq!(
        io(json!({"class": "IOPRIO_CLASS_RT", "priority": 3})).unwrap(),
        1 << 13 | 3
    );
    assert_eq!(
        io(json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0})).unwrap(),
        3 << 13
    );
    assert!(
        err(io(json!({"class": "IOPRIO_CLASS_BE", "priority": 8}))).contains("ioPriority.priority")
    );
}

#[test]
fn memory_policies() {
    let p =
        mempolicy(json!({"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]}))
            .unwrap();
    assert_eq!((p.mode, p.nodes.clone()), (2 | 1 << 15, Mask(vec![3])));
    assert_eq!(mempolicy(json!({"mode": "MPOL_LOCAL"})).unwrap().mode, 4);
    assert!(
        mempolicy(json!({"mode": "MPOL_PREFERRED"}))
            .unwrap()
            .nodes
            .is_empty()
    );
    let refused = [
        json!({"mode": "MPOL_BIND"}),
        json!({"mode": "MPOL_INTERLEAVE", "nodes": ""}),
        json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
        json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
        json!({"mode": "MPOL_BIND", "nodes": "0",
               "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
        json!({"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_STATIC_NODES"]}),
        json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
    ];
    for v in refused {
        assert!(
            err(mempolicy(v.clone())).contains("linux.memoryPolicy."),
            "{v}"
        );
    }
}

#[test]
fn personality_and_its_flags() {
    let host = crate::plan::host::FakeHost::bundle();
    let persona = |v: Value| container(Some(&serde_json::from_value(v).unwrap()), None, &host);
    assert_eq!(persona(json!({"domain": "LINUX32"})).unwrap().0, Some(8));
    assert_eq!(persona(json!({"domain": "LINUX"})).unwrap().0, Some(0));
    assert!(err(persona(json!({"domain": "LINUX", "flags": ["X"]}))).contains("personality.flags"));
}

#[test]
fn exec_affinity_lists() {
    let a = |v: Value| {
        let mut p = json!({"execCPUAffinity": v});
        crate::plan::config::for_oci_spec(&mut p);
        process(
            None,
            None,
            Some(&serde_json::from_value(p["execCPUAffinity"].clone()).unwrap()),
        )
    };
    let t = a(json!({"initial": "1", "final": "0-1"})).unwrap();
    assert_eq!(t.affinity.initial, Some(Mask(vec![2])));
    assert_eq!(t.affinity.last, Some(Mask(vec![3])));
    assert_eq!(
        a(json!({"final": ""})).unwrap().affinity,
        ExecAffinity::default()
    );
}

/// The runtime-spec's spellings of the scheduler flags survive a read and a save.
#[test]
fn scheduler_flags_spelled_as_the_runtime_spec() {
    let spec = json!({"policy": "SCHED_OTHER",
                      "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_RECLAIM"]});
    let mut p = json!({"scheduler": spec.clone()});
    respell_sched_flags(&mut p, Spelling::OciSpec);
    let parsed: Scheduler = serde_json::from_value(p["scheduler"].clone()).unwrap();
    let mut back = json!({"scheduler": serde_json::to_value(&parsed).unwrap()});
    respell_sched_flags(&mut back, Spelling::RuntimeSpec);
    assert_eq!(back["scheduler"]["flags"], spec["flags"]);
}

#[test]
fn memory_policy_nodes_are_online() {
    let mut host = crate::plan::host::FakeHost::bundle();
    let policy = |h: &crate::plan::host::FakeHost, v: Value| {
        container(None, Some(&serde_json::from_value(v).unwrap()), h)
    };
    let bind = json!({"mode": "MPOL_BIND", "nodes": "0,2"});
    assert!(err(policy(&host, bind.clone())).contains("no NUMA memory policies"));
    host.files.insert(ONLINE_NODES.into(), "0-1,3\n".into());
    let e = err(policy(&host, bind));
    assert!(
        e.contains("linux.memoryPolicy.nodes: node 2 is not online (online: 0-1,3)"),
        "{e}"
    );
    let ok = policy(&host, json!({"mode": "MPOL_INTERLEAVE", "nodes": "0-1,3"})).unwrap();
    assert_eq!(ok.1.unwrap().nodes, Mask(vec![0b1011]));
    assert!(policy(&host, json!({"mode": "MPOL_LOCAL"})).is_ok());
}
