use super::*;
use crate::plan::resources::{BlockIo, Cpu, Memory};

fn names(p: &[Property]) -> Vec<(&str, &Value)> {
    p.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

#[test]
fn resources_by_cgroup_version() {
    let r = Resources {
        memory: Some(Memory {
            limit: Some(64 << 20),
            swap: Some(96 << 20),
            reservation: Some(-1),
            ..Memory::default()
        }),
        cpu: Some(Cpu {
            shares: Some(1024),
            quota: Some(12_345),
            period: Some(100_000),
            cpus: Some("0,2-3".into()),
            ..Cpu::default()
        }),
        pids: Some(Some(42)),
        block_io: Some(BlockIo {
            weight: Some(500),
            ..BlockIo::default()
        }),
        ..Resources::default()
    };
    let v2 = resources(&r, &|_| Some(Kind::V2));
    assert_eq!(
        names(&v2),
        vec![
            ("MemoryMax", &Value::U64(64 << 20)),
            ("MemoryLow", &Value::U64(u64::MAX)),
            ("MemorySwapMax", &Value::U64(32 << 20)),
            ("CPUWeight", &Value::U64(39)),
            // 123450 us a second, up to whole percents.
            ("CPUQuotaPerSecUSec", &Value::U64(130_000)),
            ("CPUQuotaPeriodUSec", &Value::U64(100_000)),
            (
                "AllowedCPUs",
                &Value::Array("y".into(), vec![Value::Byte(0b1101)])
            ),
            ("TasksMax", &Value::U64(42)),
            ("IOWeight", &Value::U64(4950)),
        ]
    );
    let u = Resources {
        unified: [
            ("memory.high", "50331648"),
            ("memory.oom.group", "1"),
            ("pids.max", "max"),
            ("cpu.max", "25000 50000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Resources::default()
    };
    assert_eq!(
        names(&resources(&u, &|_| Some(Kind::V2))),
        vec![
            ("MemoryHigh", &Value::U64(50331648)),
            ("TasksMax", &Value::U64(u64::MAX)),
            ("CPUQuotaPerSecUSec", &Value::U64(500_000)),
            ("CPUQuotaPeriodUSec", &Value::U64(50_000)),
        ],
        "memory.oom.group is not systemd's"
    );
    let v1 = resources(&r, &|_| Some(Kind::V1));
    let v1: Vec<&str> = v1.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        v1,
        [
            "MemoryLimit",
            "CPUShares",
            "CPUQuotaPerSecUSec",
            "CPUQuotaPeriodUSec",
            "TasksMax",
            "BlockIOWeight"
        ]
    );
}

#[test]
fn raw_properties_from_annotations() {
    let a: BTreeMap<String, String> = [
        ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
        ("org.systemd.property.TimeoutStopSec", "uint64 15"),
        ("org.systemd.property.RuntimeMaxSec", "2.5"),
        ("org.systemd.property.IOAccounting", "false"),
        ("org.systemd.property.Wants", "['a.service', 'b.service']"),
        ("org.systemd.property.TasksMax", "uint64 7"),
        ("org.other", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let p = annotations(&a).unwrap();
    assert_eq!(
        names(&p),
        vec![
            ("CollectMode", &Value::str("inactive-or-failed")),
            ("IOAccounting", &Value::Bool(false)),
            ("RuntimeMaxUSec", &Value::U64(2_500_000)),
            ("TasksMax", &Value::U64(7)),
            ("TimeoutStopUSec", &Value::U64(15_000_000)),
            (
                "Wants",
                &Value::Array(
                    "s".into(),
                    vec![Value::str("a.service"), Value::str("b.service")]
                )
            ),
        ]
    );
    for (k, v) in [
        ("org.systemd.property.PIDs", "[1]"),
        ("org.systemd.property.Foo", "unquoted words"),
        ("org.systemd.property.Bad-Name", "true"),
        ("org.systemd.property.TimeoutStopSec", "'soon'"),
    ] {
        let one = BTreeMap::from([(k.to_string(), v.to_string())]);
        let e = annotations(&one).unwrap_err();
        assert_eq!(e.key, k, "{v}");
    }
}

#[test]
fn cpu_sets_stop_at_the_kernel_s_limit() {
    let Value::Array(_, bytes) = bitmask("0, 2") else {
        panic!("an array")
    };
    assert_eq!(bytes, [Value::Byte(0b101)]);
    // Not 4 G entries: 8192 CPUs at most, and what does not parse is left out.
    let Value::Array(_, bytes) = bitmask("0-4294967295,x,3-") else {
        panic!("an array")
    };
    assert_eq!(bytes.len(), 1024);
    assert!(bytes.iter().all(|b| *b == Value::Byte(0xff)));
}
