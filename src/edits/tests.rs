use std::path::Path;

use oci_spec::runtime::{LinuxDevice, Mount};
use serde_json::json;

use super::*;
use crate::plan::host::FakeHost;
use crate::plan::{Config, Plan, PlanError, config};

fn config(v: serde_json::Value) -> Config {
    config::parse(
        &serde_json::to_vec(&v).unwrap(),
        Path::new("/b/config.json"),
    )
    .unwrap()
}

fn base() -> serde_json::Value {
    let mut v = crate::commands::spec::default_spec(false);
    v["process"]["terminal"] = false.into();
    v
}

/// A provider that answers with a fixed edit.
struct Fixed(Edit);

impl Provider for Fixed {
    fn edits(&self, _: &Config) -> Result<Vec<Edit>, PlanError> {
        Ok(vec![self.0.clone()])
    }
}

fn cdi(name: &str, precedence: Precedence, edits: Edits) -> Box<dyn Provider> {
    Box::new(Fixed(Edit {
        origin: Origin(format!("CDI {name}, /etc/cdi/vendor.json")),
        precedence,
        edits,
    }))
}

fn device(path: &str, major: i64) -> LinuxDevice {
    serde_json::from_value(json!({"path": path, "type": "c", "major": major, "minor": 0})).unwrap()
}

fn devices(c: &Config) -> Vec<(String, i64)> {
    let list = c
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap_or_default();
    list.iter()
        .map(|d| (d.path().display().to_string(), d.major()))
        .collect()
}

#[test]
fn defaults_add_runc_s_nodes_where_the_config_has_none() {
    let mut v = base();
    v["linux"]["devices"] =
        json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}]);
    let mut c = config(v);
    let prov = apply(&mut c, &builtin(None, crate::plan::Driver::Cgroupfs))
        .unwrap()
        .provenance;
    let paths: Vec<String> = devices(&c).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty"
        ]
    );
    let null = &c.spec.linux().as_ref().unwrap().devices().as_ref().unwrap()[0];
    assert_eq!(null.file_mode(), Some(0o600), "the config's node stays");
    assert_eq!(prov.origin_of("linux.devices[0]"), None);
    assert_eq!(
        prov.origin_of("linux.devices[5].path")
            .map(|o| o.0.as_str()),
        Some("chitin's default devices")
    );
}

#[test]
fn default_rules_follow_the_config_s_own_only() {
    let rules = |c: &Config| {
        let r = c.spec.linux().as_ref().unwrap().resources().clone();
        r.and_then(|r| r.devices().clone()).unwrap_or_default()
    };
    let mut c = config(base());
    apply(&mut c, &builtin(None, crate::plan::Driver::Cgroupfs)).unwrap();
    let own = rules(&c);
    assert_eq!(
        own.len(),
        13,
        "the default spec's deny-all, then the 12 allowed"
    );
    assert!(!own[0].allow() && own[1..].iter().all(|r| r.allow()));

    let mut v = base();
    v["linux"]["resources"] = json!({});
    let mut c = config(v);
    apply(&mut c, &builtin(None, crate::plan::Driver::Cgroupfs)).unwrap();
    assert!(
        rules(&c).is_empty(),
        "no rules: the device cgroup is left alone"
    );
}

#[test]
fn replace_takes_the_config_s_place_and_two_that_differ_conflict() {
    let gpu = |major| Edits {
        devices: vec![device("/dev/gpu0", major)],
        ..Edits::default()
    };
    let mut v = base();
    v["linux"]["devices"] = json!([{"path": "/dev/gpu0", "type": "c", "major": 1, "minor": 0}]);
    let mut c = config(v);
    let providers = [cdi("a", Precedence::Replace, gpu(195))];
    let prov = apply(&mut c, &providers).unwrap().provenance;
    assert_eq!(devices(&c), [("/dev/gpu0".to_owned(), 195)]);
    assert_eq!(
        prov.origin_of("linux.devices[0]").unwrap().0,
        "CDI a, /etc/cdi/vendor.json"
    );

    // The same node twice is one node; a different one at the same path names both origins.
    let mut c = config(base());
    let same = [
        cdi("a", Precedence::Replace, gpu(195)),
        cdi("b", Precedence::Replace, gpu(195)),
    ];
    apply(&mut c, &same).unwrap();
    assert_eq!(devices(&c), [("/dev/gpu0".to_owned(), 195)]);
    let mut c = config(base());
    let differ = [
        cdi("a", Precedence::Replace, gpu(195)),
        cdi("b", Precedence::Replace, gpu(196)),
    ];
    let e = apply(&mut c, &differ).unwrap_err().to_string();
    assert_eq!(
        e,
        "config.json: linux.devices[0]: set by CDI a, /etc/cdi/vendor.json and by CDI b, /etc/cdi/vendor.json, differently"
    );

    // A replacing edit takes a default's place; a fallback yields to what is there.
    let mut c = config(base());
    let null = Edits {
        devices: vec![device("/dev/null", 7)],
        ..Edits::default()
    };
    let providers = [
        builtin(None, crate::plan::Driver::Cgroupfs).remove(0),
        cdi("n", Precedence::Replace, null.clone()),
    ];
    apply(&mut c, &providers).unwrap();
    assert!(devices(&c).contains(&("/dev/null".to_owned(), 7)));
    let mut c = config(base());
    let providers = [
        cdi("n", Precedence::Replace, null),
        builtin(None, crate::plan::Driver::Cgroupfs).remove(0),
    ];
    apply(&mut c, &providers).unwrap();
    assert_eq!(
        devices(&c).iter().filter(|(p, _)| p == "/dev/null").count(),
        1
    );
    assert!(devices(&c).contains(&("/dev/null".to_owned(), 7)));
}

#[test]
fn every_kind_of_item_merges_by_its_key() {
    let mount: Mount = serde_json::from_value(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=1m"]})).unwrap();
    let hook = serde_json::from_value(json!({"path": "/usr/bin/hook"})).unwrap();
    let rlimit =
        serde_json::from_value(json!({"type": "RLIMIT_MEMLOCK", "soft": 1, "hard": 2})).unwrap();
    let huge = serde_json::from_value(json!({"pageSize": "2MB", "limit": 1048576})).unwrap();
    let edits = Edits {
        env: vec!["PATH=/opt/bin".into(), "GPU=0".into()],
        mounts: vec![mount],
        hooks: vec![(HookPhase::CreateRuntime, hook)],
        rlimits: vec![rlimit],
        additional_gids: vec![44, 44],
        hugepage_limits: vec![huge],
        annotations: vec![("org.example/gpu".into(), "0".into())],
        ..Edits::default()
    };
    let mut v = base();
    v["annotations"] = json!({"org.example/gpu": "config"});
    let mut c = config(v);
    let prov = apply(&mut c, &[cdi("g", Precedence::Replace, edits)])
        .unwrap()
        .provenance;
    let s = serde_json::to_value(&c.spec).unwrap();
    let env = s["process"]["env"].as_array().unwrap();
    assert_eq!(env.last().unwrap(), "GPU=0");
    assert_eq!(
        env.iter()
            .filter(|e| e.as_str().unwrap().starts_with("PATH="))
            .count(),
        1
    );
    assert!(
        env.contains(&json!("PATH=/opt/bin")),
        "replaced by name: {env:?}"
    );
    let shm: Vec<_> = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/dev/shm")
        .collect();
    assert_eq!(shm.len(), 1);
    assert_eq!(shm[0]["options"], json!(["size=1m"]));
    assert_eq!(s["hooks"]["createRuntime"][0]["path"], "/usr/bin/hook");
    assert_eq!(s["process"]["rlimits"].as_array().unwrap().len(), 2);
    assert_eq!(s["process"]["user"]["additionalGids"], json!([44]));
    assert_eq!(
        s["linux"]["resources"]["hugepageLimits"][0]["pageSize"],
        "2MB"
    );
    assert_eq!(s["annotations"]["org.example/gpu"], "0");
    let shm = (s["mounts"].as_array().unwrap().iter())
        .position(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert!(shm < 6, "replaced in its place");
    for field in [
        format!("mounts[{shm}]"),
        "hooks.createRuntime[0]".into(),
        "process.rlimits[1]".into(),
        "process.user.additionalGids[0]".into(),
        "linux.resources.hugepageLimits[0]".into(),
        "annotations[\"org.example/gpu\"]".into(),
    ] {
        assert!(prov.origin_of(&field).is_some(), "{field}");
    }
    assert!(
        prov.origin_of("process.rlimits[0]").is_none(),
        "the config's own"
    );
}

#[test]
fn a_planning_error_about_an_injected_item_names_its_origin() {
    let bad = Edits {
        devices: vec![device("dev/gpu0", 195)],
        ..Edits::default()
    };
    let mut c = config(base());
    let prov = apply(
        &mut c,
        &[
            builtin(None, crate::plan::Driver::Cgroupfs).remove(0),
            cdi("vendor.com/gpu=0", Precedence::Replace, bad),
        ],
    )
    .unwrap()
    .provenance;
    let e = plan_err(&c);
    assert_eq!(
        prov.name_origin(e).to_string(),
        "config.json: linux.devices[6].path (from CDI vendor.com/gpu=0, /etc/cdi/vendor.json): \"dev/gpu0\" is not an absolute path"
    );
    // The config's own items are named as before.
    let mut v = base();
    v["linux"]["devices"] = json!([{"path": "dev/x", "type": "c", "major": 1, "minor": 0}]);
    let mut c = config(v);
    let prov = apply(&mut c, &builtin(None, crate::plan::Driver::Cgroupfs))
        .unwrap()
        .provenance;
    let e = plan_err(&c);
    assert_eq!(
        prov.name_origin(e).to_string(),
        "config.json: linux.devices[0].path: \"dev/x\" is not an absolute path"
    );
}

#[test]
fn a_replacement_keeps_its_place_and_stays_its_edit_s() {
    let mount = |dest: &str, opt: &str| -> Mount {
        serde_json::from_value(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [opt]}),
        )
        .unwrap()
    };
    let mut v = base();
    let mounts = v["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
    );
    mounts.push(json!({"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs"}));
    let mut c = config(v);
    let edits = |opt: &str| Edits {
        mounts: vec![mount("/data", opt)],
        ..Edits::default()
    };
    let prov = apply(&mut c, &[cdi("a", Precedence::Replace, edits("size=2m"))])
        .unwrap()
        .provenance;
    let dests: Vec<String> = c
        .spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    let n = dests.len();
    assert_eq!(
        dests[n - 2..],
        ["/data", "/data/sub"],
        "in its place: /data/sub stays above it"
    );
    assert!(prov.origin_of(&format!("mounts[{}]", n - 2)).is_some());

    // An edit equal to the config's item takes it over: a later one that differs conflicts.
    let mut v = base();
    v["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
    );
    let mut c = config(v);
    let providers = [
        cdi("a", Precedence::Replace, edits("size=1m")),
        cdi("b", Precedence::Replace, edits("size=2m")),
    ];
    let e = apply(&mut c, &providers).unwrap_err().to_string();
    assert!(
        e.contains("set by CDI a, /etc/cdi/vendor.json and by CDI b"),
        "{e}"
    );
}

#[test]
fn rules_that_grant_nothing_bring_no_default_rules() {
    let mut v = base();
    v["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "x"}]});
    let mut c = config(v);
    apply(&mut c, &builtin(None, crate::plan::Driver::Cgroupfs)).unwrap();
    let r = c
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap();
    assert_eq!(
        r.devices().as_ref().unwrap().len(),
        1,
        "the device cgroup is left alone"
    );
}

fn cpu_of(c: &Config) -> oci_spec::runtime::LinuxCpu {
    let linux = c.spec.linux().as_ref().unwrap();
    linux.resources().as_ref().unwrap().cpu().clone().unwrap()
}

#[test]
fn a_cpuset_replaces_the_config_s_and_two_that_differ_conflict() {
    let pin = |name: &str, cpus: &str, p| {
        let e = Edits {
            cpuset: Some((cpus.to_owned(), "0".to_owned())),
            ..Edits::default()
        };
        cdi(name, p, e)
    };
    let mut v = base();
    v["linux"]["resources"]["cpu"] = json!({"cpus": "0-7", "shares": 512});
    let mut c = config(v.clone());
    let prov = apply(&mut c, &[pin("a", "0-3", Precedence::Replace)])
        .unwrap()
        .provenance;
    let cpu = cpu_of(&c);
    assert_eq!(
        (cpu.cpus().as_deref(), cpu.mems().as_deref(), cpu.shares()),
        (Some("0-3"), Some("0"), Some(512))
    );
    assert_eq!(
        prov.origin_of("linux.resources.cpu.cpus")
            .map(|o| o.0.as_str()),
        Some("CDI a, /etc/cdi/vendor.json")
    );
    // A fallback yields to the config's own; two replacements that differ are an error.
    let mut c = config(v.clone());
    apply(&mut c, &[pin("b", "4-7", Precedence::Fallback)]).unwrap();
    let cpu = cpu_of(&c);
    assert_eq!(cpu.cpus().as_deref(), Some("0-7"));
    let mut c = config(v);
    let e = apply(
        &mut c,
        &[
            pin("a", "0-3", Precedence::Replace),
            pin("b", "4-7", Precedence::Replace),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("linux.resources.cpu.cpus: set by CDI a"), "{e}");
}

fn plan_err(c: &Config) -> PlanError {
    Plan::new(
        c,
        Path::new("/b"),
        "c1",
        &FakeHost::bundle(),
        crate::plan::Driver::Cgroupfs,
    )
    .unwrap_err()
}

/// A performance profile's fields replace the config's, each with the profile as its origin; a
/// device's NUMA pinning that differs is refused, naming both.
#[test]
fn a_performance_profile_replaces_the_config_s_fields() {
    let host = crate::plan::topology::tests::two_nodes_smt();
    let mut v = base();
    v["annotations"] = json!({"org.chitin.profile.performance": "latency-pinned"});
    v["linux"]["resources"] =
        json!({"cpu": {"cpus": "0-15", "mems": "0-1"}, "memory": {"limit": 1 << 20}});
    let mut c = config(v.clone());
    let prov = apply(
        &mut c,
        &[Box::new(Performance::on(host)) as Box<dyn Provider>],
    )
    .unwrap()
    .provenance;
    let spec = serde_json::to_value(&c.spec).unwrap();
    assert_eq!(
        spec["linux"]["resources"]["cpu"],
        json!({"cpus": "0-3", "mems": "0"})
    );
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 8i64 << 30);
    assert_eq!(
        spec["linux"]["memoryPolicy"],
        json!({"mode": "MPOL_BIND", "nodes": "0"})
    );
    assert_eq!(
        spec["process"]["scheduler"],
        json!({"policy": "SCHED_FIFO", "priority": 10})
    );
    for field in [
        "linux.resources.cpu.cpus",
        "linux.memoryPolicy",
        "process.scheduler",
    ] {
        assert_eq!(
            prov.origin_of(field).map(|o| o.0.as_str()),
            Some("performance profile latency-pinned"),
            "{field}"
        );
    }
    let numa = cdi(
        "vfio",
        Precedence::Replace,
        Edits {
            cpuset: Some(("8-15".into(), "1".into())),
            ..Edits::default()
        },
    );
    let mut c = config(v);
    let host = crate::plan::topology::tests::two_nodes_smt();
    let e = apply(&mut c, &[numa, Box::new(Performance::on(host))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux.resources.cpu.cpus")
            && e.contains("CDI vfio")
            && e.contains("performance profile latency-pinned"),
        "{e}"
    );
}
