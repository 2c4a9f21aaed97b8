//! create / start / state / kill / delete / list / run, and the CLI's output formats.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::TestResult;
use crate::support::{Ctx, bin, cgroup_dirs};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn spec_and_run_print_from_inside() -> TestResult {
    let ctx = Ctx::new("hello")?;
    let b = ctx.bundle("echo hello from $(hostname); echo $$");
    let out = ctx.run_ok(&b);
    assert_eq!(
        out, "hello from chitin\n1\n",
        "the process is pid 1 of its own pid namespace"
    );
    Ok(())
}

/// `spec` names the namespaces runc's does: a cgroup namespace only on a pure cgroup v2 host, so
/// that a config which adds one itself (as scripts written for runc do) names it once.
pub fn spec_namespaces_as_runc() -> TestResult {
    let ctx = Ctx::new("specns")?;
    let runc = crate::differential::runc()?;
    let spec = |rt: &std::path::Path, name: &str| -> Value {
        let dir = ctx.base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new(rt)
            .args(["spec", "-b"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
    };
    let ours = spec(std::path::Path::new(bin()), "chitin");
    let theirs = spec(&runc, "runc");
    assert_eq!(ours["linux"]["namespaces"], theirs["linux"]["namespaces"]);
    let mut b = ctx.bundle("readlink /proc/self/ns/cgroup");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    if !ns.iter().any(|n| n["type"] == "cgroup") {
        ns.push(serde_json::json!({"type": "cgroup"}));
    }
    let inside = ctx.run_ok(&b);
    let host = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    assert_ne!(
        inside.trim(),
        host.to_str().unwrap(),
        "a cgroup namespace of its own"
    );
    Ok(())
}

pub fn create_waits_until_start() -> TestResult {
    let ctx = Ctx::new("life")?;
    let mut b = ctx.bundle("echo started > /shared/mark; sleep 100");
    let shared = ctx.base.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]}));
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    b.save();
    let pid_file = ctx.base.join("init.pid");
    let (code, err) = ctx.create(&b, &id, &["--pid-file".as_ref(), pid_file.as_os_str()]);
    assert_eq!(code, 0, "create: {err}");

    let st = ctx.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert_eq!(st["ociVersion"], "1.2.0");
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !shared.join("mark").exists(),
        "the process must not run before start"
    );
    // The init is already in its cgroup, in every hierarchy.
    for d in cgroup_dirs(&format!("/chitin-tests/{id}")) {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{} holds {pid}: {procs}",
            d.display()
        );
    }

    let out = ctx.chitin(&["start", &id]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the mark", || shared.join("mark").exists());
    assert_eq!(ctx.state(&id)["status"], "running");
    let again = ctx.chitin(&["start", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let out = ctx.chitin(&["delete", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a running container is not deleted without --force"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not stopped: running"));

    assert!(ctx.chitin(&["kill", &id, "KILL"]).status.success());
    wait_for("stopped", || ctx.state(&id)["status"] == "stopped");
    assert_eq!(ctx.state(&id)["pid"], 0);
    let out = ctx.chitin(&["kill", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "killing a stopped container fails"
    );

    assert!(ctx.chitin(&["delete", &id]).status.success());
    assert!(!ctx.root.join(&id).exists(), "state dir removed");
    for d in cgroup_dirs(&format!("/chitin-tests/{id}")) {
        assert!(!d.exists(), "{} removed", d.display());
    }
    let out = ctx.chitin(&["state", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    Ok(())
}

pub fn delete_force_and_kill_all() -> TestResult {
    let ctx = Ctx::new("force")?;
    let b = ctx.bundle("sleep 100 & sleep 100");
    b.save();
    let id = ctx.id();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    assert_eq!(ctx.state(&id)["status"], "running");
    let pid = ctx.state(&id)["pid"].as_i64().unwrap();
    assert!(ctx.chitin(&["kill", "--all", &id, "9"]).status.success());
    wait_for("stopped", || ctx.state(&id)["status"] == "stopped");
    assert!(ctx.chitin(&["delete", &id]).status.success());

    let id = ctx.id();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let pid2 = ctx.state(&id)["pid"].as_i64().unwrap();
    assert_ne!(pid, pid2);
    ctx.chitin_ok(&["delete", "--force", &id]);
    assert!(
        !Path::new(&format!("/proc/{pid2}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{pid2}/stat"))
                .unwrap()
                .contains(") Z")
    );
    assert!(!ctx.root.join(&id).exists());
    Ok(())
}

/// `kill` takes what runc takes: 0 (is it there?), real-time signals by number and as RTMIN+N
/// (docker stop of a systemd image sends RTMIN+3), and refuses what is not a signal.
pub fn kill_signal_zero_and_real_time() -> TestResult {
    let ctx = Ctx::new("killrt")?;
    // The trap writes to a file the test reads: the shell waits in `wait` so traps run at once.
    // It says when the traps are set: a signal that came before would kill it (seen under
    // emulation on ppc64le).
    let mut b = ctx.bundle("trap 'echo rt37 >> /tmp/got' 37; trap 'echo rt64 >> /tmp/got' 64; trap 'echo usr1 >> /tmp/got' USR1; touch /tmp/ready; sleep 100 & while :; do wait; done");
    b.config["root"]["readonly"] = false.into();
    b.save();
    let id = ctx.id();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let ready = b.rootfs().join("tmp/ready");
    wait_for("the traps", || ready.exists());
    let got = b.rootfs().join("tmp/got");
    let wait_lines = |n: usize| {
        wait_for("the trap", || {
            std::fs::read_to_string(&got).is_ok_and(|t| t.lines().count() >= n)
        })
    };
    ctx.chitin_ok(&["kill", &id, "0"]);
    ctx.chitin_ok(&["kill", &id, "RTMIN+3"]);
    wait_lines(1);
    ctx.chitin_ok(&["kill", &id, "SIGRTMAX"]);
    wait_lines(2);
    ctx.chitin_ok(&["kill", &id, "37"]);
    wait_lines(3);
    ctx.chitin_ok(&["kill", &id, "usr1"]);
    wait_lines(4);
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        "rt37\nrt64\nrt37\nusr1\n"
    );
    for bad in ["RTMAX+1", "65", "RTMIN+x"] {
        let out = ctx.chitin(&["kill", &id, bad]);
        assert_eq!(out.status.code(), Some(1), "kill {bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown signal"),
            "kill {bad}"
        );
    }
    ctx.chitin_ok(&["kill", &id, "KILL"]);
    wait_for("stopped", || ctx.state(&id)["status"] == "stopped");
    // Signal 0 to a stopped container: it is not there.
    assert_eq!(ctx.chitin(&["kill", &id, "0"]).status.code(), Some(1));
    Ok(())
}

pub fn run_exit_codes() -> TestResult {
    let ctx = Ctx::new("exit")?;
    let b = ctx.bundle("exit 7");
    assert_eq!(ctx.run(&b, &ctx.id()).0, 7);
    // Killed by a signal from outside: 128+9, and with --keep the state stays.
    let b = ctx.bundle("sleep 100");
    b.save();
    let id = ctx.id();
    let mut child = ctx
        .cmd()
        .args(["run", "--keep", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .spawn()
        .unwrap();
    wait_for("running", || {
        ctx.chitin(&["state", &id])
            .stdout
            .windows(7)
            .any(|w| w == b"running")
    });
    assert!(ctx.chitin(&["kill", &id, "KILL"]).status.success());
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(ctx.state(&id)["status"], "stopped");
    assert!(ctx.chitin(&["delete", &id]).status.success());
    assert!(
        std::fs::read_dir(&ctx.root).unwrap().next().is_none(),
        "nothing left in the state root"
    );
    Ok(())
}

pub fn signals_are_forwarded_by_run() -> TestResult {
    let ctx = Ctx::new("sig")?;
    let b = ctx
        .bundle("trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done");
    b.save();
    let id = ctx.id();
    let mut child = ctx
        .cmd()
        .args(["run", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(42));
    Ok(())
}

pub fn list_formats() -> TestResult {
    let ctx = Ctx::new("list")?;
    let b = ctx.bundle("sleep 100");
    b.save();
    let (a, z) = (format!("a{}", ctx.id()), format!("z{}", ctx.id()));
    for id in [&z, &a] {
        assert_eq!(ctx.create(&b, id, &[]).0, 0);
    }
    let out = String::from_utf8(ctx.chitin(&["list"]).stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID ")
            && lines[0].contains("PID")
            && lines[0].contains("STATUS")
            && lines[0].contains("BUNDLE")
            && lines[0].contains("CREATED")
            && lines[0].ends_with("OWNER"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(a.as_str())
            && lines[1].contains("created")
            && lines[1].ends_with("root"),
        "{out}"
    );
    let json: Value = serde_json::from_slice(&ctx.chitin(&["list", "-f", "json"]).stdout).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["id"], a.as_str());
    assert_eq!(arr[1]["status"], "created");
    for k in ["ociVersion", "pid", "bundle", "rootfs", "created", "owner"] {
        assert!(arr[0].get(k).is_some(), "{k} in {json}");
    }
    let q = String::from_utf8(ctx.chitin(&["list", "-q"]).stdout).unwrap();
    assert_eq!(q, format!("{a}\n{z}\n"));
    Ok(())
}

pub fn features_and_version() -> TestResult {
    let out = std::process::Command::new(bin())
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success());
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert_eq!(f["hooks"].as_array().unwrap().len(), 6);
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "time")
    );
    assert!(
        f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
    );
    // The annotation that turns seccomp off, and those that hand hardware in, are among those
    // a client must not pass on blindly; every annotation chitin acts on is described.
    assert_eq!(
        f["potentiallyUnsafeConfigAnnotations"],
        serde_json::json!([
            "org.chitin.seccomp.skip-unsupported",
            "org.chitin.devices.cdi",
            "cdi.k8s.io/",
            "org.chitin.devices.enclave",
            "org.chitin.devices.sriov",
            "org.chitin.devices.vfio",
            "org.chitin.devices.rdma",
            "org.chitin.tpm.device",
            "org.systemd.property."
        ])
    );
    assert_eq!(f["linux"]["cgroup"]["systemd"], true);
    assert!(
        f["annotations"]["org.systemd.property."]
            .as_str()
            .is_some_and(|d| d.contains("--systemd-cgroup"))
    );
    for a in [
        "org.chitin.devices.sriov",
        "org.chitin.devices.rdma",
        "org.chitin.profile.performance",
        "org.chitin.profile.security",
    ] {
        assert!(
            f["annotations"][a].as_str().is_some_and(|d| !d.is_empty()),
            "{a}"
        );
    }
    for a in ["org.chitin.tpm.measure", "org.chitin.tpm.device"] {
        assert!(
            f["annotations"][a]
                .as_str()
                .is_some_and(|d| d.contains("true")),
            "{a}"
        );
    }
    for a in ["org.chitin.devices.cdi", "cdi.k8s.io/"] {
        let what = f["annotations"][a].as_str().unwrap_or_default();
        assert!(what.contains("CDI device names"), "{a}: {what}");
    }
    // Every guarantee features states is one the escape tests try.
    let tests = concat!(
        include_str!("escapes.rs"),
        include_str!("exec.rs"),
        include_str!("apparmor.rs")
    );
    let guarantees: Vec<&String> = f["annotations"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("org.chitin.guarantee."))
        .collect();
    assert!(guarantees.len() >= 9, "{guarantees:?}");
    for k in guarantees {
        let cve = k.trim_start_matches("org.chitin.guarantee.").to_uppercase();
        assert!(tests.contains(&cve), "no test tries {cve}");
    }
    seccomp_features(&f["linux"]["seccomp"]);
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(
        v.starts_with("chitin version ") && v.contains("spec: 1.2.0"),
        "{v}"
    );
    Ok(())
}

/// `features`' seccomp section: what the compiler takes and the kernel's flags, or disabled
/// where the kernel has no filter.
fn seccomp_features(sc: &Value) {
    if !crate::seccomp_abi::kernel_filters() {
        // sparc64's kernel: seccomp sections are refused, and features says so.
        assert_eq!(sc, &serde_json::json!({"enabled": false}));
        return;
    }
    assert_eq!(sc["enabled"], true);
    assert!(
        sc["archs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "SCMP_ARCH_SPARC64"),
        "chitin's own sparc64 name"
    );
    assert_eq!(sc["actions"].as_array().unwrap().len(), 9);
    assert_eq!(sc["operators"].as_array().unwrap().len(), 7);
    assert!(
        sc["supportedFlags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "SECCOMP_FILTER_FLAG_TSYNC")
    );
}

pub fn json_log_on_failure() -> TestResult {
    let ctx = Ctx::new("log")?;
    let log = ctx.base.join("log.json");
    let out = ctx
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "no-such-container"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("no-such-container"));
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    // With a log file, the error still reaches stderr, once.
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    Ok(())
}

/// --debug traces the steps of create (the init's own included), start and exec to the log, as
/// JSON lines a shim can read; without it, nothing but errors and warnings is logged.
pub fn debug_traces_each_step() -> TestResult {
    let ctx = Ctx::new("debuglog")?;
    let log = ctx.base.join("debug.json");
    let mut b = ctx.bundle("sleep 100");
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    let logged = |args: &[&str]| {
        let mut c = ctx.cmd();
        c.arg("--debug")
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"]);
        c.args(args).stdout(std::process::Stdio::null());
        assert!(c.status().unwrap().success(), "{args:?}");
    };
    b.save();
    logged(&["create", "-b", b.dir.to_str().unwrap(), &id]);
    logged(&["start", &id]);
    logged(&["exec", &id, "true"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let msgs: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["level"] == "debug")
        .map(|l| l["msg"].as_str().unwrap().to_owned())
        .collect();
    for step in [
        "cloned the container init",
        "init: in its namespaces",
        "init: ",
        "mounts made",
        "waits for start",
        "start: barrier of",
        "start: init",
        "exec: into",
        "exec: joined the container's namespaces",
        "exec: cloned",
    ] {
        assert!(
            msgs.iter().any(|m| m.contains(step)),
            "no {step:?} in {msgs:#?}"
        );
    }
    // Without --debug: no debug line.
    std::fs::remove_file(&log).unwrap();
    let out = ctx
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["exec", &id, "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
    Ok(())
}
