//! The systemd cgroup driver: against a real systemd as pid 1 (tests/vm/run-systemd.sh boots
//! one, on cgroup v2 or in systemd's hybrid mode), and on a host without one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clients::which;
use crate::harness::{Outcome, TestResult, skip};
use crate::support::{Bundle, Ctx, Guard, cgroup_dirs, processes_with, systemd_booted};

/// The slice the tests' scopes go in: nested, to show systemd's slice naming at work.
const SLICE: &str = "machine-chitin.slice";
const SLICE_DIR: &str = "/machine.slice/machine-chitin.slice";

fn systemd() -> Result<(), Outcome> {
    if !systemd_booted() {
        return skip("systemd is not pid 1 here (tests/vm/run-systemd.sh boots a system with it)");
    }
    Ok(())
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A unit's property as `systemctl show` prints it.
fn show(unit: &str, prop: &str) -> String {
    let out = Command::new("systemctl")
        .args(["show", "--value", "-p", prop, unit])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bundle whose cgroupsPath names the scope `ct-NAME.scope` in SLICE; the scope's name.
fn bundle(ctx: &Ctx, script: &str, name: &str) -> (Bundle, String) {
    let mut b = ctx.bundle(script);
    b.config["linux"]["cgroupsPath"] = json!(format!("{SLICE}:ct:{name}"));
    (b, format!("ct-{name}.scope"))
}

fn create(ctx: &Ctx, b: &Bundle, id: &str) {
    let (code, err) = ctx.create_with(&["--systemd-cgroup"], b, id, &[]);
    assert_eq!(code, 0, "create: {err}");
}

/// The file of `controller` in the scope's cgroup (v2, or the controller's v1 hierarchy).
fn cgroup_file(unit: &str, controller: &str, file: &str) -> PathBuf {
    let base = if v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    base.join(SLICE_DIR.trim_start_matches('/'))
        .join(unit)
        .join(file)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_owned()
}

/// Nothing of the unit is left: not in systemd, not in any hierarchy.
fn gone(unit: &str) {
    assert_eq!(
        show(unit, "LoadState"),
        "not-found",
        "{unit} is still loaded"
    );
    for d in cgroup_dirs(&format!("{SLICE_DIR}/{unit}")) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

fn memory_property() -> &'static str {
    if v2() { "MemoryMax" } else { "MemoryLimit" }
}

pub fn scope_follows_the_container() -> TestResult {
    systemd()?;
    let ctx = Ctx::new("sdscope")?;
    let id = ctx.id();
    let (mut b, unit) = bundle(&ctx, "sleep 1000", &id);
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 50},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    });
    if v2() {
        b.config["linux"]["resources"]["unified"] = json!({"memory.high": "50331648"});
    }
    create(&ctx, &b, &id);
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "Delegate"), "yes");
    assert_eq!(show(&unit, "Slice"), SLICE);
    assert_eq!(show(&unit, "TasksMax"), "50");
    assert_eq!(show(&unit, memory_property()), (64u64 << 20).to_string());
    assert_eq!(show(&unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(read(&cgroup_file(&unit, "pids", "pids.max")), "50");
    let state = ctx.state(&id);
    assert_eq!(state["cgroupDriver"], "systemd");
    // The init is in the scope, placed before it ran anything of the container's.
    let pid = state["pid"].as_i64().unwrap();
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(own.contains(&format!("{SLICE_DIR}/{unit}")), "{own}");
    ctx.chitin_ok(&["--systemd-cgroup", "start", &id]);
    // In its cgroup namespace the scope is "/"; a process outside it would read "/../..".
    let inside = ctx.exec_process(&id, &["cat", "/proc/self/cgroup"]);
    assert!(
        inside.contains(&format!("{SLICE_DIR}/{unit}")) || inside.contains("0::/\n"),
        "{inside}"
    );
    ctx.chitin_ok(&["--systemd-cgroup", "pause", &id]);
    assert_eq!(ctx.state(&id)["status"], "paused");
    ctx.chitin_ok(&["--systemd-cgroup", "resume", &id]);
    assert_eq!(ctx.state(&id)["status"], "running");
    // update changes systemd's properties and the files.
    ctx.chitin_ok(&[
        "--systemd-cgroup",
        "update",
        "--memory",
        "128m",
        "--pids-limit",
        "60",
        &id,
    ]);
    assert_eq!(show(&unit, "TasksMax"), "60");
    assert_eq!(show(&unit, memory_property()), (128u64 << 20).to_string());
    assert_eq!(read(&cgroup_file(&unit, "pids", "pids.max")), "60");
    limits_survive_systemd_applying_them(&unit);
    let stats: Value =
        serde_json::from_slice(&ctx.chitin_ok(&["events", "--stats", &id]).stdout).unwrap();
    assert!(
        stats["data"]["pids"]["current"].as_u64() >= Some(1),
        "{stats}"
    );
    ctx.chitin_ok(&["kill", &id, "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctx.state(&id)["status"] != "stopped" {
        assert!(Instant::now() < deadline, "the container did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without the flag: the driver is the record's.
    ctx.chitin_ok(&["delete", &id]);
    gone(&unit);
    assert!(!ctx.root.join(&id).exists());
    Ok(())
}

/// systemd writes a unit's limits again from its properties (a reload; a change of any of them,
/// as an administrator's set-property): they must be the container's.
fn limits_survive_systemd_applying_them(unit: &str) {
    let limits = || {
        let (memory, cpu) = if v2() {
            ("memory.max", "cpu.max")
        } else {
            ("memory.limit_in_bytes", "cpu.cfs_quota_us")
        };
        let mut l = vec![
            read(&cgroup_file(unit, "pids", "pids.max")),
            read(&cgroup_file(unit, "memory", memory)),
            read(&cgroup_file(unit, "cpu", cpu)),
        ];
        if v2() {
            l.push(read(&cgroup_file(unit, "memory", "memory.high")));
        }
        l
    };
    let before = limits();
    assert!(before[2].starts_with("50000"), "{before:?}");
    let accounting = [
        "MemoryAccounting=yes",
        "CPUAccounting=yes",
        "TasksAccounting=yes",
    ];
    let set_property = [&["set-property", "--runtime", unit][..], &accounting[..]].concat();
    for args in [&["daemon-reload"][..], &set_property] {
        let st = Command::new("systemctl").args(args).status().unwrap();
        assert!(st.success());
        assert_eq!(limits(), before, "after systemctl {}", args[0]);
    }
}

pub fn delete_force_stops_the_scope() -> TestResult {
    systemd()?;
    let ctx = Ctx::new("sdforce")?;
    let id = ctx.id();
    let (b, unit) = bundle(&ctx, "sleep 1000", &id);
    b.save();
    let st = ctx
        .cmd()
        .args(["--systemd-cgroup", "run", "-d", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(show(&unit, "ActiveState"), "active");
    ctx.chitin_ok(&["--systemd-cgroup", "delete", "-f", &id]);
    gone(&unit);
    assert!(processes_with(&id).is_empty());
    Ok(())
}

/// What the container may do with /dev/null (allowed) and /dev/kmsg (not in its rules).
fn device_access(ctx: &Ctx, id: &str) -> String {
    let probe = "echo x > /dev/null && echo null-ok; mknod /tmp/kmsg c 1 11; \
                 head -c1 /tmp/kmsg >/dev/null 2>&1 && echo kmsg-opened || echo kmsg-denied; \
                 rm -f /tmp/kmsg";
    ctx.exec_process(id, &["sh", "-c", probe])
}

/// systemd re-applies a unit's properties on daemon-reload: the device rules it holds must be
/// the container's (runc and the NVIDIA toolkit lost device access to this, or opened all).
pub fn device_rules_survive_daemon_reload() -> TestResult {
    systemd()?;
    let ctx = Ctx::new("sdreload")?;
    let id = ctx.id();
    let (b, unit) = bundle(&ctx, "sleep 1000", &id);
    create(&ctx, &b, &id);
    ctx.chitin_ok(&["start", &id]);
    let before = device_access(&ctx, &id);
    assert_eq!(before, "null-ok\nkmsg-denied\n");
    let st = Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(device_access(&ctx, &id), before, "after daemon-reload");
    assert_eq!(show(&unit, "DevicePolicy"), "strict");
    let allow = show(&unit, "DeviceAllow");
    assert!(allow.contains("/dev/char/1:3 rwm"), "{allow}");
    ctx.chitin_ok(&["delete", "-f", &id]);
    gone(&unit);
    Ok(())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A unit left failed (here by RuntimeMaxSec, as by the OOM killer) or left by a create killed
/// half-way does not keep the next container from the same name; nor does deleting the old
/// container touch the new one's unit.
pub fn a_failed_or_crashed_create_does_not_block_the_next() -> TestResult {
    systemd()?;
    let ctx = Ctx::new("sdreuse")?;
    let name = format!("reuse-{}", std::process::id());
    let (mut first, unit) = bundle(&ctx, "sleep 1000", &name);
    // The init, pid 1 of its namespace, ignores SIGTERM: systemd's SIGKILL follows after a second.
    first.config["annotations"] = json!({
        "org.systemd.property.RuntimeMaxSec": "1",
        "org.systemd.property.TimeoutStopSec": "uint64 1",
    });
    let a = ctx.id();
    create(&ctx, &first, &a);
    ctx.chitin_ok(&["start", &a]);
    wait_for("the unit to fail", || {
        show(&unit, "ActiveState") == "failed"
    });
    let (second, _) = bundle(&ctx, "sleep 1000", &name);
    let b = ctx.id();
    create(&ctx, &second, &b);
    assert_eq!(show(&unit, "ActiveState"), "active");
    let pid = ctx.state(&b)["pid"].as_i64().unwrap();
    ctx.chitin_ok(&["delete", "-f", &a]);
    assert_eq!(
        show(&unit, "ActiveState"),
        "active",
        "deleting {a} stopped {b}'s unit"
    );
    assert_eq!(ctx.state(&b)["pid"].as_i64(), Some(pid));
    ctx.chitin_ok(&["delete", "-f", &b]);
    gone(&unit);

    // A create killed once the scope exists (its createRuntime hook kills it).
    let (mut crashed, unit) = bundle(&ctx, "sleep 1000", &format!("crash-{}", std::process::id()));
    crashed.config["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID; sleep 5"]}]});
    let c = ctx.id();
    let (code, err) = ctx.create_with(&["--systemd-cgroup"], &crashed, &c, &[]);
    assert_ne!(code, 0, "{err}");
    // What an engine does after a failed create.
    ctx.chitin_ok(&["delete", "-f", &c]);
    gone(&unit);
    crashed.config["hooks"] = json!({});
    let d = ctx.id();
    create(&ctx, &crashed, &d);
    assert_eq!(show(&unit, "ActiveState"), "active");
    ctx.chitin_ok(&["delete", "-f", &d]);
    gone(&unit);
    Ok(())
}

/// Without systemd (none on the bus, or no bus), a --systemd-cgroup create fails naming it and
/// leaves no state, cgroup or process. On a host with systemd there is nothing to show.
pub fn without_systemd_nothing_is_left() -> TestResult {
    if systemd_booted() {
        return skip("systemd runs here");
    }
    let ctx = Ctx::new("nosd")?;
    // A bus of the test's own that starts no services, if dbus-daemon is here; else no bus.
    let bus = ctx.base.join("bus");
    let daemon = which("dbus-daemon").map(|d| private_bus(&ctx, &d, &bus));
    let id = ctx.id();
    let (b, unit) = bundle(&ctx, "true", &id);
    b.save();
    let out = ctx
        .cmd()
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", bus.display()),
        )
        .args(["--systemd-cgroup", "create", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let named = if daemon.is_some() {
        "org.freedesktop.systemd1"
    } else {
        "system bus"
    };
    assert!(err.contains("systemd") && err.contains(named), "{err}");
    assert!(!ctx.root.join(&id).exists(), "state left");
    for d in cgroup_dirs(&format!("{SLICE_DIR}/{unit}")) {
        assert!(!d.exists(), "{} left", d.display());
    }
    assert!(processes_with(&id).is_empty());
    Ok(())
}

/// dbus-daemon on `socket` with a policy that lets root call anything and no service directory.
fn private_bus(ctx: &Ctx, daemon: &Path, socket: &Path) -> Guard {
    let conf = ctx.base.join("bus.conf");
    let xml = format!(
        "<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
         <policy context=\"default\"><allow send_destination=\"*\"/><allow receive_sender=\"*\"/>\
         <allow own=\"*\"/></policy>\
         </busconfig>",
        socket.display()
    );
    std::fs::write(&conf, xml).unwrap();
    let child = Command::new(daemon)
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(child);
    wait_for("dbus-daemon's socket", || socket.exists());
    guard
}
