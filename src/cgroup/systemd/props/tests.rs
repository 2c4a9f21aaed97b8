use super::*;
use crate::plan::resources::{BlockIo, Cpu, Memory};

use DeviceRule as R;

fn allow_list(props: &[Property]) -> (String, Vec<(String, String)>) {
    let policy = props[0].1.as_str().unwrap().to_owned();
    let Value::Array(_, items) = &props[1].1 else {
        panic!("DeviceAllow is an array")
    };
    let items = items
        .iter()
        .map(|i| match i {
            Value::Struct(f) => (
                f[0].as_str().unwrap().to_owned(),
                f[1].as_str().unwrap().to_owned(),
            ),
            _ => panic!("(ss)"),
        })
        .collect();
    (policy, items)
}

#[test]
fn device_rules_in_systemd_s_syntax() {
    let rules = [
        R::of(false, 'a', None, None, "rwm"),
        R::of(true, 'c', Some(1), Some(3), "rwm"),
        R::of(true, 'c', Some(136), None, "rwm"),
        R::of(true, 'b', None, None, "m"),
        R::of(true, 'c', None, Some(5), "rwm"),
        R::of(true, 'a', Some(10), Some(200), "rw"),
        // Taken back: w of /dev/null.
        R::of(false, 'c', Some(1), Some(3), "w"),
    ];
    let (policy, list) = allow_list(&devices(&rules, false));
    assert_eq!(policy, "strict");
    let want = [
        ("/dev/char/1:3", "rm"),
        ("char-136", "rwm"),
        ("block-*", "m"),
        ("/dev/char/10:200", "rw"),
        ("/dev/block/10:200", "rw"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(
        list, want,
        "the *:5 rule has no systemd form and is left out"
    );
}

#[test]
fn a_deny_inside_a_wider_allow_narrows_the_allow() {
    // systemd cannot say "c 5:* but not 5:1": the whole of c 5:* loses w, never more is allowed.
    let rules = [
        R::of(false, 'a', None, None, "rwm"),
        R::of(true, 'c', Some(5), None, "rwm"),
        R::of(false, 'c', Some(5), Some(1), "w"),
    ];
    let (_, list) = allow_list(&devices(&rules, false));
    assert_eq!(list, vec![("char-5".to_string(), "rm".to_string())]);
}

#[test]
fn allow_all_and_blacklists() {
    let all = [R::of(true, 'a', None, None, "rwm")];
    assert_eq!(allow_list(&devices(&all, false)), ("auto".into(), vec![]));
    let but = [all[0].clone(), R::of(false, 'c', Some(1), Some(3), "rwm")];
    // v1: systemd would rewrite the files from its properties: deny all rather than allow all.
    assert_eq!(allow_list(&devices(&but, false)), ("strict".into(), vec![]));
    // v2: chitin's own eBPF program keeps the deny whatever systemd attaches.
    assert_eq!(allow_list(&devices(&but, true)), ("auto".into(), vec![]));
}

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
