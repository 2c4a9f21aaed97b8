//! Cgroup resources on this host's layout, checked in the cgroup files and by their effect; and
//! the commands that use them: update, pause/resume, ps, events.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestResult, skip};
use crate::support::{Bundle, Ctx};

/// The container's directory for `controller`: a v1 hierarchy with it, or the unified one.
fn dir(id: &str, controller: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup").join(controller);
    if v1.join("cgroup.procs").exists() {
        return v1.join("chitin-tests").join(id);
    }
    let unified = if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    Path::new(unified).join("chitin-tests").join(id)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_owned()
}

fn is_v1(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("cgroup.procs")
        .exists()
}

/// A hugetlb controller, in v1 or offered by a cgroup2 root.
fn has_hugetlb() -> bool {
    is_v1("hugetlb")
        || ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .any(|m| {
                std::fs::read_to_string(Path::new(m).join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
            })
}

fn bundle(ctx: &Ctx, script: &str, id: &str, resources: Value) -> Bundle {
    let mut b = ctx.bundle(script);
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    for (k, v) in resources.as_object().unwrap() {
        b.config["linux"]["resources"][k] = v.clone();
    }
    b.config["root"]["readonly"] = false.into();
    b
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn resources_reach_the_cgroup_files() -> TestResult {
    let ctx = Ctx::new("res")?;
    if !is_v1("memory") {
        return skip("these file names are cgroup v1's; the v2 run covers v2");
    }
    let id = ctx.id();
    let mut res = json!({
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 30000, "period": 100000, "burst": 1000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 40},
        "blockIO": {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1048576}]}
    });
    let hugetlb = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() && has_hugetlb();
    if hugetlb {
        res["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
    }
    let b = bundle(
        &ctx,
        "grep Cpus_allowed_list /proc/self/status > /tmp/cpus; sleep 100",
        &id,
        res,
    );
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let cpus = b.rootfs().join("tmp/cpus");
    wait_until("the cpuset check", 5, || {
        std::fs::read_to_string(&cpus).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        read(cpus),
        "Cpus_allowed_list:\t0",
        "the cpuset is in effect"
    );
    for (ctl, file, want) in [
        ("memory", "memory.limit_in_bytes", "67108864"),
        ("memory", "memory.memsw.limit_in_bytes", "100663296"),
        ("memory", "memory.soft_limit_in_bytes", "33554432"),
        ("memory", "memory.swappiness", "10"),
        ("cpu", "cpu.shares", "512"),
        ("cpu", "cpu.cfs_quota_us", "30000"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_burst_us", "1000"),
        ("cpuset", "cpuset.cpus", "0"),
        ("pids", "pids.max", "40"),
        ("blkio", "blkio.throttle.read_bps_device", "7:0 1048576"),
    ] {
        assert_eq!(read(dir(&id, ctl).join(file)), want, "{ctl}/{file}");
    }
    if hugetlb {
        let d = dir(&id, "hugetlb");
        let f = if is_v1("hugetlb") {
            "hugetlb.2MB.limit_in_bytes"
        } else {
            "hugetlb.2MB.max"
        };
        assert_eq!(read(d.join(f)), "4194304", "hugetlb in {}", d.display());
    }
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    assert!(!dir(&id, "memory").exists());
    Ok(())
}

/// The same resources on a pure cgroup v2 host, converted as runc converts them, plus a
/// `unified` key.
pub fn resources_reach_the_cgroup_files_v2() -> TestResult {
    let ctx = Ctx::new("resv2")?;
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return skip("not a pure cgroup v2 host (the VM run covers it)");
    }
    let id = ctx.id();
    let mut res = json!({
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 512, "quota": 30000, "period": 100000, "burst": 1000, "cpus": "0", "mems": "0", "idle": 0},
        "pids": {"limit": 40},
        "unified": {"memory.high": "60000000"}
    });
    let block = std::fs::read_dir("/sys/block")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| std::fs::read_to_string(e.path().join("dev")).ok());
    if let Some((major, minor)) = block.as_deref().and_then(|d| d.trim().split_once(':')) {
        res["blockIO"] = json!({"throttleReadBpsDevice": [{"major": major.parse::<i64>().unwrap(), "minor": minor.parse::<i64>().unwrap(), "rate": 1048576}]});
    }
    let hugetlb = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if hugetlb {
        res["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
    }
    let b = bundle(&ctx, "sleep 100", &id, res);
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let d = dir(&id, "memory");
    let page = crate::support::page_size();
    for (file, want) in [
        ("memory.max", "67108864".to_string()),
        ("memory.swap.max", (32u64 << 20).to_string()),
        ("memory.low", "33554432".into()),
        // The kernel rounds down to whole pages (64 KiB on ppc64el).
        ("memory.high", (59998208 / page * page).to_string()),
        ("cpu.weight", "20".into()),
        ("cpu.max", "30000 100000".into()),
        ("cpu.max.burst", "1000".into()),
        ("cpuset.cpus", "0".into()),
        ("pids.max", "40".into()),
    ] {
        assert_eq!(read(d.join(file)), want, "{file}");
    }
    if let Some(dev) = block {
        assert!(
            read(d.join("io.max")).starts_with(&format!("{} rbps=1048576", dev.trim())),
            "io.max"
        );
    }
    if hugetlb {
        assert_eq!(read(d.join("hugetlb.2MB.max")), "4194304");
    }
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    assert!(!d.exists());
    Ok(())
}

/// cpu.max / cfs_quota in effect: a busy loop over 1.5 s of wall time gets about a fifth of a CPU.
pub fn cpu_quota_throttles() -> TestResult {
    let ctx = Ctx::new("quota")?;
    let id = ctx.id();
    let b = bundle(
        &ctx,
        "timeout 1.5 sh -c 'while :; do :; done'; sleep 100",
        &id,
        json!({"cpu": {"quota": 20000, "period": 100000}}),
    );
    b.save();
    let start = Instant::now();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    std::thread::sleep(Duration::from_millis(2000).saturating_sub(start.elapsed()));
    let e: Value = serde_json::from_slice(&ctx.chitin(&["events", "--stats", &id]).stdout).unwrap();
    let used = e["data"]["cpu"]["usage"]["total"].as_u64().unwrap() as f64 / 1e9;
    assert!(
        used > 0.05 && used < 0.5,
        "about 0.3 s of CPU in 1.5 s at 20%: {used}"
    );
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    Ok(())
}

/// A relative cgroupsPath is below chitin's own cgroup, as runc places it.
pub fn relative_cgroups_path() -> TestResult {
    let ctx = Ctx::new("relcg")?;
    let id = ctx.id();
    let mut b = bundle(&ctx, "sleep 100", &id, json!({"pids": {"limit": 7}}));
    b.config["linux"]["cgroupsPath"] = format!("chitin-rel/{id}").into();
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    // The test runs chitin from its own cgroup: find it in the pids hierarchy.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (mount, rel) = if is_v1("pids") {
        (
            "/sys/fs/cgroup/pids",
            own.lines()
                .find_map(|l| {
                    l.split(':')
                        .nth(1)
                        .filter(|c| c.split(',').any(|c| c == "pids"))
                        .map(|_| l.splitn(3, ':').nth(2).unwrap().to_owned())
                })
                .unwrap(),
        )
    } else {
        let unified = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        (
            unified,
            own.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap()
                .to_owned(),
        )
    };
    let d = Path::new(mount)
        .join(rel.trim_start_matches('/'))
        .join("chitin-rel")
        .join(&id);
    assert_eq!(read(d.join("pids.max")), "7", "{}", d.display());
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    assert!(!d.exists());
    let _ = std::fs::remove_dir(d.parent().unwrap());
    Ok(())
}

pub fn memory_limit_oom_kills_and_events_reports_it() -> TestResult {
    let ctx = Ctx::new("oom")?;
    let id = ctx.id();
    // tail keeps a line without newlines whole: 200 MiB against a 32 MiB limit, no swap.
    let b = bundle(
        &ctx,
        "sleep 0.5; head -c 209715200 /dev/zero | tail >/dev/null; echo tail=$?; sleep 0.3",
        &id,
        json!({"memory": {"limit": 32 << 20, "swap": 32 << 20}}),
    );
    b.save();
    let out_path = ctx.base.join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let st = ctx
        .cmd()
        .args(["run", "-d", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let events = ctx
        .cmd()
        .args(["events", "--interval", "100ms", &id])
        .output()
        .unwrap();
    assert!(
        events.status.success(),
        "{}",
        String::from_utf8_lossy(&events.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|e| e["type"] == "oom" && e["id"] == id.as_str()),
        "an oom event: {lines:?}"
    );
    let stats = lines
        .iter()
        .find(|e| e["type"] == "stats")
        .expect("a stats event");
    assert_eq!(stats["data"]["memory"]["usage"]["limit"], 32 << 20);
    // The OOM killer's victim is usually tail (137), sometimes the container's shell (then
    // nothing is written); either way tail never got its 200 MiB.
    let status = read(out_path);
    assert!(
        status.is_empty() || (status.starts_with("tail=") && status != "tail=0"),
        "{status}"
    );
    assert!(ctx.chitin(&["delete", &id]).status.success());
    Ok(())
}

pub fn pids_limit_stops_forks() -> TestResult {
    let ctx = Ctx::new("pids")?;
    let id = ctx.id();
    // A child shell forks until the limit stops it; the outer one then uses builtins only.
    let b = bundle(
        &ctx,
        "sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 5 & done' 2>/tmp/err; rc=$?; \
         { read c < /sys/fs/cgroup/pids/pids.current || read c < /sys/fs/cgroup/pids.current; } 2>/dev/null; \
         read e < /tmp/err; echo $rc $c; echo $e",
        &id,
        json!({"pids": {"limit": 4}}),
    );
    let out = ctx.run_ok(&b);
    let mut lines = out.lines();
    // sh, the child sh and two sleeps made four; the third sleep's fork failed and the child
    // shell gave up. Left: sh and two sleeps.
    assert_eq!(lines.next(), Some("2 3"), "{out}");
    assert!(
        lines.next().is_some_and(|l| l.contains("can't fork")),
        "{out}"
    );
    Ok(())
}

pub fn pause_freezes_and_resume_thaws() -> TestResult {
    let ctx = Ctx::new("freeze")?;
    let id = ctx.id();
    let b = bundle(
        &ctx,
        "while true; do echo t >> /tmp/ticks; sleep 0.02; done",
        &id,
        json!({}),
    );
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let ticks = b.rootfs().join("tmp/ticks");
    let count = || {
        std::fs::read_to_string(&ticks)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    wait_until("ticks", 5, || count() > 3);
    assert!(ctx.chitin(&["pause", &id]).status.success());
    assert_eq!(ctx.state(&id)["status"], "paused");
    let frozen_at = count();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(), frozen_at, "a frozen container makes no progress");
    let again = ctx.chitin(&["pause", &id]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "pausing a paused container fails"
    );
    assert!(ctx.chitin(&["resume", &id]).status.success());
    assert_eq!(ctx.state(&id)["status"], "running");
    wait_until("progress after resume", 5, || count() > frozen_at + 3);
    // delete -f reaches a paused container too.
    assert!(ctx.chitin(&["pause", &id]).status.success());
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    assert!(!ctx.root.join(&id).exists());
    Ok(())
}

pub fn update_changes_limits() -> TestResult {
    let ctx = Ctx::new("update")?;
    let id = ctx.id();
    let b = bundle(
        &ctx,
        "sleep 100",
        &id,
        json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 10}}),
    );
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    assert!(
        ctx.chitin(&[
            "update",
            "--memory",
            "128m",
            "--pids-limit",
            "20",
            "--cpu-share",
            "256",
            &id
        ])
        .status
        .success()
    );
    let mem_file = if is_v1("memory") {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(
        read(dir(&id, "memory").join(mem_file)),
        (128u64 << 20).to_string()
    );
    assert_eq!(read(dir(&id, "pids").join("pids.max")), "20");
    let cpu = if is_v1("cpu") {
        read(dir(&id, "cpu").join("cpu.shares"))
    } else {
        read(dir(&id, "cpu").join("cpu.weight"))
    };
    assert_eq!(cpu, if is_v1("cpu") { "256" } else { "10" });
    // -r with a file, then from stdin.
    let f = ctx.base.join("res.json");
    std::fs::write(&f, r#"{"pids": {"limit": 30}}"#).unwrap();
    assert!(
        ctx.cmd()
            .args(["update", "-r"])
            .arg(&f)
            .arg(&id)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(read(dir(&id, "pids").join("pids.max")), "30");
    let mut child = ctx
        .cmd()
        .args(["update", "-r", "-", &id])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), br#"{"pids": {"limit": 31}}"#)
        .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(read(dir(&id, "pids").join("pids.max")), "31");
    // Bad values are refused with the field named, and change nothing.
    let out = ctx.chitin(&["update", "--cpuset-cpus", "0-x", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cpu.cpus"));
    // What update set is kept in the state: a later update merges with it.
    assert!(
        ctx.chitin(&["update", "--pids-limit", "32", &id])
            .status
            .success()
    );
    assert_eq!(
        read(dir(&id, "memory").join(mem_file)),
        (128u64 << 20).to_string()
    );
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    Ok(())
}

pub fn ps_lists_the_container() -> TestResult {
    let ctx = Ctx::new("ps")?;
    let id = ctx.id();
    let b = bundle(&ctx, "sleep 100 & sleep 100", &id, json!({}));
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let init = ctx.state(&id)["pid"].as_i64().unwrap();
    wait_until("two processes", 5, || {
        let v: Value = serde_json::from_slice(&ctx.chitin(&["ps", "-f", "json", &id]).stdout)
            .unwrap_or(json!([]));
        v.as_array().is_some_and(|a| a.len() == 2)
    });
    let pids: Vec<i64> =
        serde_json::from_slice(&ctx.chitin(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(pids.contains(&init));
    let table = String::from_utf8(ctx.chitin(&["ps", &id, "-o", "pid,comm"]).stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1..].iter().all(|l| l.ends_with("sleep")), "{table}");
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    Ok(())
}

pub fn stats_event() -> TestResult {
    let ctx = Ctx::new("stats")?;
    let id = ctx.id();
    let b = bundle(
        &ctx,
        "sleep 100",
        &id,
        json!({"pids": {"limit": 9}, "memory": {"limit": 100 << 20}}),
    );
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let out = ctx.chitin_ok(&["events", "--stats", &id]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["type"], "stats");
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["data"]["pids"]["current"], 1);
    assert_eq!(e["data"]["pids"]["limit"], 9);
    assert_eq!(e["data"]["memory"]["usage"]["limit"], 100 << 20);
    assert!(e["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert!(e["data"]["cpu"]["usage"]["total"].as_u64().is_some());
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    Ok(())
}

pub fn unsupported_resources_are_refused() -> TestResult {
    let ctx = Ctx::new("nores")?;
    let id = ctx.id();
    let b = bundle(&ctx, "true", &id, json!({"network": {"classID": 42}}));
    b.save();
    let (code, err) = ctx.create(&b, &id, &[]);
    if is_v1("net_cls") {
        return skip("this host has net_cls; the refusal needs a host without it");
    }
    assert_eq!(code, 1);
    assert!(err.contains("linux.resources.network.classID"), "{err}");
    assert!(!ctx.root.join(&id).exists());
    assert!(!dir(&id, "memory").exists());
    // cgroup v2 files for a controller on v1, in the words runc uses (tools look for them).
    if is_v1("memory") {
        let b = bundle(
            &ctx,
            "true",
            &id,
            json!({"unified": {"memory.max": "1000000"}}),
        );
        b.save();
        let (code, err) = ctx.create(&b, &id, &[]);
        assert_eq!(code, 1);
        assert!(
            err.contains("invalid configuration: cannot use unified on cgroup v1"),
            "{err}"
        );
    }
    Ok(())
}

/// Runs `chitin <args>` in a private mount namespace where `hide` (a cgroup mount) is unmounted:
/// how a host without that hierarchy looks to chitin.
fn chitin_without(ctx: &Ctx, hide: &str, args: &str) -> std::process::Output {
    let script = format!(
        "umount {hide} && exec {} --root {} {args}",
        crate::support::bin(),
        ctx.root.display()
    );
    std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap()
}

/// A container that opens /dev/fuse (10:229, openable without mounting anything), with or
/// without a deny-all device rule. (Not tun: runc, and chitin, allow tun in every container.)
/// The kernel must have fuse for the node to open at all.
fn fuse_bundle(ctx: &Ctx, id: &str, deny_all: bool) -> Result<Bundle, crate::harness::Outcome> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
    {
        return skip("/dev/fuse does not open on this host (no fuse driver)");
    }
    let mut b = bundle(
        ctx,
        "(exec 3<>/dev/fuse) 2>/dev/null && echo fuse-opened || echo fuse-denied; echo x > /dev/null && echo null-ok",
        id,
        json!({}),
    );
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
    b.config["linux"]["resources"]["devices"] = if deny_all {
        json!([{"allow": false, "access": "rwm"}])
    } else {
        json!([])
    };
    b.save();
    Ok(b)
}

/// Device rules through the v1 devices controller: fuse is denied by "deny all" and opens without
/// it, while the default devices stay usable.
pub fn device_rules_v1() -> TestResult {
    let ctx = Ctx::new("devv1")?;
    if !is_v1("devices") {
        return skip("no v1 devices controller on this host");
    }
    for (deny, want) in [
        (true, "fuse-denied\nnull-ok\n"),
        (false, "fuse-opened\nnull-ok\n"),
    ] {
        let b = fuse_bundle(&ctx, &ctx.id(), deny)?;
        assert_eq!(ctx.run_ok(&b), want);
    }
    // Access letters other than r, w and m are ignored, as runc ignores them.
    let mut b = fuse_bundle(&ctx, &ctx.id(), true)?;
    b.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwmx"}]);
    b.save();
    assert_eq!(ctx.run_ok(&b), "fuse-denied\nnull-ok\n");
    Ok(())
}

/// The eBPF device program, on this host's unified hierarchy with the v1 devices controller
/// hidden: fuse is denied with the rules and opens without them.
pub fn ebpf_device_filter() -> TestResult {
    let ctx = Ctx::new("ebpf")?;
    if !Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return skip("no cgroup v2 hierarchy to attach a program to");
    }
    let hide = if is_v1("devices") {
        "/sys/fs/cgroup/devices"
    } else {
        ""
    };
    for (deny, want) in [
        (true, "fuse-denied\nnull-ok\n"),
        (false, "fuse-opened\nnull-ok\n"),
    ] {
        let id = ctx.id();
        let b = fuse_bundle(&ctx, &id, deny)?;
        let args = format!("run -b {} {id}", b.dir.display());
        let out = if hide.is_empty() {
            ctx.cmd().args(args.split(' ')).output().unwrap()
        } else {
            chitin_without(&ctx, hide, &args)
        };
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A cgroup v1 host: the unified hierarchy hidden. Resources still apply, and the container's
/// cgroup mount shows v1 hierarchies only.
pub fn v1_only_host() -> TestResult {
    let ctx = Ctx::new("v1only")?;
    if !Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() || !is_v1("memory") {
        return skip("needs a hybrid host to hide the unified hierarchy of");
    }
    let id = ctx.id();
    let b = bundle(
        &ctx,
        "ls /sys/fs/cgroup | tr '\\n' ' '; cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        &id,
        json!({"memory": {"limit": 48 << 20}}),
    );
    b.save();
    let out = chitin_without(
        &ctx,
        "/sys/fs/cgroup/unified",
        &format!("run -b {} {id}", b.dir.display()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("memory") && !text.contains("unified"),
        "{text}"
    );
    assert!(text.ends_with(&format!("{}\n", 48 << 20)), "{text}");
    Ok(())
}

/// A create killed while it waits on a hook leaves a container that `delete` still removes whole:
/// state, cgroup and init.
pub fn delete_after_a_killed_create() -> TestResult {
    let ctx = Ctx::new("crash")?;
    let id = ctx.id();
    let mut b = bundle(&ctx, "true", &id, json!({"pids": {"limit": 10}}));
    // A second duration unique to this run marks the hook, to end it afterwards.
    let marker = format!("0.{}", std::process::id());
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30", marker]}]});
    b.save();
    let mut create = ctx
        .cmd()
        .args(["create", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids = dir(&id, "pids");
    wait_until("the init in its cgroup", 10, || {
        std::fs::read_to_string(pids.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
    });
    create.kill().unwrap();
    create.wait().unwrap();
    assert!(ctx.root.join(&id).exists());
    ctx.chitin_ok(&["delete", &id]);
    assert!(!ctx.root.join(&id).exists(), "state removed");
    assert!(!pids.exists(), "cgroup removed");
    // The hook, if it started, was the killed create's child: end it here.
    for pid in crate::support::processes_with(&format!("sleep\u{0}30\u{0}{marker}")) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    Ok(())
}

/// `delete` removes what a container made of its cgroup too: a sub-cgroup (in every hierarchy
/// that has one), and, when the container shares the caller's pid namespace, the processes its
/// init left behind.
pub fn delete_removes_sub_cgroups_and_strays() -> TestResult {
    let ctx = Ctx::new("cgsub")?;
    // A cgroup namespace and a writable cgroup mount let the container make a sub-cgroup and
    // move a process into it (in the memory hierarchy on v1, the only one on v2).
    let id = ctx.id();
    let script = "d=/sys/fs/cgroup; [ -d $d/memory ] && d=$d/memory; mkdir $d/sub && \
                  sh -c \"echo \\$\\$ > $d/sub/cgroup.procs; exec sleep 1000\" & sleep 1000";
    let mut b = ctx.bundle(script);
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    if !ns.iter().any(|n| n["type"] == "cgroup") {
        ns.push(json!({"type": "cgroup"}));
    }
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["type"] == "cgroup" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
        }
    }
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let dirs = crate::support::cgroup_dirs(&format!("/chitin-tests/{id}"));
    wait_until("the sub-cgroup", 10, || {
        dirs.iter().any(|d| {
            std::fs::read_to_string(d.join("sub/cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        })
    });
    ctx.chitin_ok(&["kill", &id, "KILL"]);
    wait_until("stopped", 10, || ctx.state(&id)["status"] == "stopped");
    ctx.chitin_ok(&["delete", &id]);
    for d in &dirs {
        assert!(!d.exists(), "{} left", d.display());
    }

    // No pid namespace: the init exits at once, its background sleep lives on in the cgroup
    // until delete.
    let marker = format!("99.{}", std::process::id());
    let id = ctx.id();
    let mut b = ctx.bundle(&format!("sleep {marker} & exit 0"));
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let needle = format!("sleep\u{0}{marker}");
    wait_until("stopped", 10, || ctx.state(&id)["status"] == "stopped");
    assert!(
        !crate::support::processes_with(&needle).is_empty(),
        "the stray runs"
    );
    ctx.chitin_ok(&["delete", &id]);
    wait_until("the stray gone", 10, || {
        crate::support::processes_with(&needle).iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| s.contains(") Z"))
        })
    });
    for d in crate::support::cgroup_dirs(&format!("/chitin-tests/{id}")) {
        assert!(!d.exists(), "{} left", d.display());
    }
    Ok(())
}

/// As runc: create into a frozen cgroup is refused at once (the init would stop there for good),
/// into one that holds processes it goes on with runc's warning.
pub fn frozen_or_busy_cgroup() -> TestResult {
    let ctx = Ctx::new("frozen")?;
    let mut b = ctx.bundle("echo ran");
    let id = ctx.id();
    let path = format!("/chitin-tests/{id}");
    b.config["linux"]["cgroupsPath"] = path.clone().into();
    b.save();
    let dirs = Made(crate::support::cgroup_dirs(&path));
    for d in &dirs.0 {
        std::fs::create_dir_all(d).unwrap();
    }
    // Bounded, with output to files that a frozen init cannot hold open: the bug was a create
    // that never returned.
    let run = || {
        let file = |n: &str| std::fs::File::create(ctx.base.join(n)).unwrap();
        let mut c = std::process::Command::new("timeout");
        c.args(["-k", "5", "20"])
            .arg(crate::support::bin())
            .arg("--root")
            .arg(&ctx.root);
        c.args(["run", "-b"]).arg(&b.dir).arg(&id);
        let st = c.stdout(file("out")).stderr(file("err")).status().unwrap();
        let text = |n: &str| std::fs::read_to_string(ctx.base.join(n)).unwrap();
        (st.code(), text("out"), text("err"))
    };
    dirs.freeze(true);
    let (code, _, err) = run();
    dirs.freeze(false);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("container's cgroup unexpectedly frozen"),
        "{err}"
    );

    let sleeper = crate::support::Guard(
        std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap(),
    );
    for d in &dirs.0 {
        // Not cpuset: a cpuset cgroup made with mkdir has no cpus to run on.
        if !d.join("cpuset.cpus").exists() {
            std::fs::write(d.join("cgroup.procs"), sleeper.0.id().to_string()).unwrap();
        }
    }
    let (code, out, err) = run();
    assert_eq!((code, out.as_str()), (Some(0), "ran\n"), "{err}");
    assert!(
        err.contains("container's cgroup is not empty: 1 process(es) found"),
        "{err}"
    );
    Ok(())
}

/// Cgroups a test made itself: thawed, emptied and removed however the test ends.
struct Made(Vec<PathBuf>);

impl Made {
    fn freeze(&self, on: bool) {
        for d in &self.0 {
            let (file, v) = match d.join("freezer.state").exists() {
                true => ("freezer.state", if on { "FROZEN" } else { "THAWED" }),
                false => ("cgroup.freeze", if on { "1" } else { "0" }),
            };
            if d.join(file).exists() {
                std::fs::write(d.join(file), v).unwrap();
            }
        }
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        self.freeze(false);
        for d in &self.0 {
            for pid in std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
        }
        for d in &self.0 {
            crate::clients::wait_until(10, "an emptied cgroup", || {
                std::fs::remove_dir(d).is_ok() || !d.exists()
            });
        }
    }
}

/// `update` writes what the merged resources say: a new period keeps the quota, a swap limit
/// alone is taken against the configured memory limit, and `--memory -1` lifts the swap limit
/// with it (on v1 the kernel refuses a memory limit above memory+swap).
pub fn update_from_the_merged_resources() -> TestResult {
    let ctx = Ctx::new("updmerge")?;
    let id = ctx.id();
    let b = bundle(
        &ctx,
        "sleep 100",
        &id,
        json!({"memory": {"limit": 64 << 20, "swap": 128 << 20},
               "cpu": {"quota": 50000, "period": 100000}}),
    );
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let update = |args: &[&str]| {
        let out = ctx.chitin(&[&["update"], args, &[id.as_str()]].concat());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (cpu, mem) = (dir(&id, "cpu"), dir(&id, "memory"));
    update(&["--cpu-period", "200000"]);
    if is_v1("cpu") {
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "200000");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
    } else {
        assert_eq!(read(cpu.join("cpu.max")), "50000 200000");
    }
    update(&["--memory-swap", "256m"]);
    let (swap_file, unlimited) = match is_v1("memory") {
        true => ("memory.memsw.limit_in_bytes", "9223372036854771712"),
        false => ("memory.swap.max", "max"),
    };
    let swap = if is_v1("memory") {
        256u64 << 20
    } else {
        192 << 20
    };
    assert_eq!(read(mem.join(swap_file)), swap.to_string());
    let limit_file = match is_v1("memory") {
        true => "memory.limit_in_bytes",
        false => "memory.max",
    };
    // Both raised, the limit past the old swap limit: the order of the writes must not trip the
    // kernel's check (memory <= memory+swap at every write on v1).
    update(&["--memory", "300m", "--memory-swap", "600m"]);
    assert_eq!(read(mem.join(limit_file)), (300u64 << 20).to_string());
    update(&["--memory", "-1"]);
    assert_eq!(read(mem.join(limit_file)), unlimited);
    assert_eq!(read(mem.join(swap_file)), unlimited);
    Ok(())
}

/// A created container can be paused and resumed, as with runc: the same statuses at each step
/// under both, and it starts afterwards.
pub fn pause_a_created_container() -> TestResult {
    let ctx = Ctx::new("pausecreated")?;
    let runc = crate::differential::runc()?;
    let statuses = |rt: &Path, root: &Path| {
        let id = ctx.id();
        let b = bundle(&ctx, "true", &id, json!({}));
        b.save();
        // stderr to a file: the created init holds it until it exits.
        let err = ctx.base.join("err");
        let run = |args: &[&str]| {
            let st = std::process::Command::new(rt)
                .arg("--root")
                .arg(root)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&err).unwrap())
                .status()
                .unwrap();
            let text = std::fs::read_to_string(&err).unwrap();
            assert!(st.success(), "{args:?}: {text}");
        };
        let status = || {
            let out = std::process::Command::new(rt)
                .arg("--root")
                .arg(root)
                .args(["state", &id])
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["status"].as_str().unwrap().to_owned()
        };
        run(&["create", "-b", b.dir.to_str().unwrap(), &id]);
        let mut seen = vec![status()];
        run(&["pause", &id]);
        seen.push(status());
        run(&["resume", &id]);
        seen.push(status());
        run(&["start", &id]);
        crate::clients::wait_until(10, "the container to stop", || status() == "stopped");
        run(&["delete", &id]);
        seen
    };
    let ours = statuses(Path::new(crate::support::bin()), &ctx.root);
    assert_eq!(ours, ["created", "paused", "created"]);
    assert_eq!(
        ours,
        statuses(&runc, &ctx.base.join("runc-state")),
        "as under runc"
    );
    Ok(())
}

/// The disks' (major, minor), by name (zram and loop devices take throttling rules too; a
/// partition takes none).
fn block_devices() -> Vec<(i64, i64)> {
    let mut disks: Vec<_> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    disks.sort_by_key(|d| d.file_name());
    disks
        .iter()
        .filter_map(|d| {
            let text = std::fs::read_to_string(d.path().join("dev")).ok()?;
            let (a, b) = text.trim().split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// `update -r` with per-device lists (runc 1.3.3): an entry replaces that device's rule and
/// leaves the others; a rate of 0 removes the rule. The record keeps the merged lists.
pub fn update_per_device_block_io() -> TestResult {
    let disks = block_devices();
    let Some(&(major, minor)) = disks.first() else {
        return crate::harness::skip("no block device to throttle");
    };
    let ctx = Ctx::new("updblk")?;
    let id = ctx.id();
    let dev = |rate: u64| json!([{"major": major, "minor": minor, "rate": rate}]);
    let b = bundle(
        &ctx,
        "sleep 100",
        &id,
        json!({"blockIO": {"throttleReadBpsDevice": dev(1 << 20),
                           "throttleWriteIOPSDevice": dev(100)}}),
    );
    b.save();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let update = |res: Value| {
        let f = ctx.base.join("res.json");
        std::fs::write(&f, res.to_string()).unwrap();
        let out = ctx
            .cmd()
            .args(["update", "-r"])
            .arg(&f)
            .arg(&id)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let blkio = dir(&id, "blkio");
    let io = dir(&id, "io");
    let rules = || {
        if is_v1("blkio") {
            ["read_bps_device", "read_iops_device", "write_iops_device"]
                .map(|f| read(blkio.join(format!("blkio.throttle.{f}"))))
                .join("|")
        } else {
            read(io.join("io.max"))
        }
    };
    let d = format!("{major}:{minor}");
    update(json!({"blockIO": {"throttleReadBpsDevice": dev(2 << 20),
                              "throttleReadIOPSDevice": dev(50)}}));
    let want = if is_v1("blkio") {
        format!("{d} 2097152|{d} 50|{d} 100")
    } else {
        format!("{d} rbps=2097152 wbps=max riops=50 wiops=100")
    };
    assert_eq!(rules(), want);
    update(json!({"blockIO": {"throttleWriteIOPSDevice": dev(0)}}));
    let want = if is_v1("blkio") {
        format!("{d} 2097152|{d} 50|")
    } else {
        format!("{d} rbps=2097152 wbps=max riops=50 wiops=max")
    };
    assert_eq!(rules(), want, "rate 0 lifts the rule");
    let saved = std::fs::read_to_string(ctx.root.join(&id).join("state.json")).unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    let res = &saved["resources"]["blockIO"];
    assert_eq!(res["throttleReadBpsDevice"], dev(2 << 20), "{saved}");
    assert_eq!(res["throttleReadIOPSDevice"], dev(50), "{saved}");
    assert!(
        res["throttleWriteIOPSDevice"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{saved}"
    );
    // Another disk's rule joins the list; the first disk's stays in the record.
    if let Some(&(major, minor)) = disks.get(1) {
        let other = json!([{"major": major, "minor": minor, "rate": 4096}]);
        update(json!({"blockIO": {"throttleReadBpsDevice": other}}));
        let saved = std::fs::read_to_string(ctx.root.join(&id).join("state.json")).unwrap();
        let saved: Value = serde_json::from_str(&saved).unwrap();
        let list = &saved["resources"]["blockIO"]["throttleReadBpsDevice"];
        assert_eq!(list, &json!([dev(2 << 20)[0], other[0]]));
    }
    ctx.chitin_ok(&["delete", "-f", &id]);
    Ok(())
}

/// linux.intelRdt where no resctrl is mounted: refused naming the field, before anything is
/// made (the groups themselves are tested on a fake resctrl tree: src/resctrl, plan::intel_rdt).
/// `update --l3-cache-schema` of a container made without it is refused too, as by runc 1.4.
pub fn intel_rdt_without_resctrl() -> TestResult {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - resctrl ");
    if mounted {
        return skip("resctrl is mounted here: the refusal needs a host without it");
    }
    let ctx = Ctx::new("rdt")?;
    let id = ctx.id();
    let mut b = bundle(&ctx, "sleep 100", &id, json!({}));
    b.config["linux"]["intelRdt"] = json!({"l3CacheSchema": "L3:0=f"});
    b.save();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("linux.intelRdt: no resctrl filesystem is mounted"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists());
    assert!(!dir(&id, "memory").exists());

    b.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("intelRdt");
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let out = ctx.chitin(&["update", "--l3-cache-schema", "L3:0=f", &id]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("made without linux.intelRdt"), "{err}");
    ctx.chitin_ok(&["delete", "-f", &id]);
    Ok(())
}
