//! `exec`: a process joins every namespace and the cgroup of a running container, gets its
//! attributes and seccomp filter, and its exit status comes back.

use serde_json::json;

use crate::harness::TestResult;
use crate::support::{Bundle, Ctx, cap_field};

fn running(ctx: &Ctx, b: &mut Bundle) -> String {
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    assert_eq!(ctx.run_detached(b, &id), 0);
    id
}

fn exec(ctx: &Ctx, args: &[&str]) -> (i32, String, String) {
    let out = ctx.cmd().arg("exec").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn joins_every_namespace_and_the_cgroup() -> TestResult {
    let ctx = Ctx::new("exec")?;
    let mut b = ctx.bundle("sleep 100");
    b.config["hostname"] = "exec-box".into();
    let id = running(&ctx, &mut b);
    let init = ctx.state(&id)["pid"].as_i64().unwrap();
    let (code, out, err) = exec(
        &ctx,
        &[
            &id,
            "sh",
            "-c",
            "hostname; echo $$; cat /proc/1/comm; for n in pid mnt net ipc uts cgroup; do readlink /proc/self/ns/$n; done; grep -c chitin-tests /proc/self/cgroup || true",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-box");
    assert_ne!(lines[1], "1", "not the init");
    assert!(
        lines[1].parse::<u32>().unwrap() < 100,
        "a pid of the container's namespace: {}",
        lines[1]
    );
    assert_eq!(lines[2], "sleep");
    for (i, n) in ["pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .iter()
        .enumerate()
    {
        let theirs = std::fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
        assert_eq!(lines[3 + i], theirs.to_str().unwrap(), "{n} namespace");
    }
    // The exec'd process shows up in the container's cgroup (from the host: cgroup.procs).
    // Detached: the process keeps the stdio it is given, so none that this test waits on.
    let st = ctx
        .cmd()
        .args([
            "exec",
            "-d",
            "--pid-file",
            ctx.base.join("exec.pid").to_str().unwrap(),
            &id,
            "sleep",
            "50",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let pid = std::fs::read_to_string(ctx.base.join("exec.pid")).unwrap();
    let procs: Vec<String> = crate::support::cgroup_dirs(&format!("/chitin-tests/{id}"))
        .iter()
        .map(|d| std::fs::read_to_string(d.join("cgroup.procs")).unwrap())
        .collect();
    assert!(
        procs.iter().all(|p| p.lines().any(|l| l == pid)),
        "pid {pid} in every hierarchy: {procs:?}"
    );
    assert!(ctx.chitin(&["delete", "-f", &id]).status.success());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z"),
        "delete -f killed the exec'd process too"
    );
    Ok(())
}

pub fn flags_and_exit_status() -> TestResult {
    let ctx = Ctx::new("execflags")?;
    let mut b = ctx.bundle("sleep 100");
    b.config["root"]["readonly"] = false.into();
    let id = running(&ctx, &mut b);
    let (code, _, _) = exec(&ctx, &[&id, "sh", "-c", "exit 7"]);
    assert_eq!(code, 7);
    let (code, out, err) = exec(
        &ctx,
        &[
            "--cwd",
            "/tmp",
            "-e",
            "FOO=bar",
            "-e",
            "PATH=/bin",
            "-u",
            "1000:1000",
            "-g",
            "5",
            "--cap",
            "CAP_SYS_ADMIN",
            "--no-new-privs",
            &id,
            "sh",
            "-c",
            "pwd; echo $FOO $PATH; id -u; id -g; id -G; cat /proc/self/status",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], ["/tmp", "bar /bin", "1000", "1000", "1000 5"]);
    let status = lines[5..].join("\n");
    assert_ne!(
        cap_field(&status, "CapBnd:") & 1 << 21,
        0,
        "--cap adds to the bounding set"
    );
    assert_eq!(
        cap_field(&status, "CapInh:"),
        0,
        "and never to the inheritable set (CVE-2022-29162)"
    );
    assert!(status.contains("NoNewPrivs:\t1"));
    // A working directory that is not there fails the exec, as in runc, and is not made; the
    // exec'd process gets HOME from the container's /etc/passwd when its env has none.
    let (code, _, err) = exec(&ctx, &["--cwd", "/no/such/dir", &id, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/dir"), "{err}");
    assert!(!b.rootfs().join("no").exists(), "exec made its cwd");
    let (_, out, _) = exec(&ctx, &["-u", "1000", &id, "sh", "-c", "echo $HOME"]);
    assert_eq!(out, "/tmp\n", "svc's home in the rootfs's /etc/passwd");
    // A pid file that cannot be written fails the exec, and its process does not stay running.
    let args = [
        "-d",
        "--pid-file",
        "/nonexistent/dir/pid",
        &id,
        "sleep",
        "7777",
    ];
    let (code, _, err) = exec(&ctx, &args);
    assert_eq!(code, 255);
    assert!(err.contains("pid file"), "{err}");
    crate::clients::wait_until(10, "the exec'd process to go", || {
        crate::support::processes_with("7777").is_empty()
    });
    // A --cgroup outside the container's, in runc's words.
    let (code, _, err) = exec(&ctx, &["--cgroup", "../x", &id, "true"]);
    assert_eq!(code, 255);
    assert!(err.contains("../x is not a sub cgroup path"), "{err}");
    // --process takes a whole process.
    let pf = ctx.base.join("process.json");
    std::fs::write(&pf, json!({"args": ["sh", "-c", "echo from-file $X; id -u"], "cwd": "/", "env": ["X=1", "PATH=/bin"], "user": {"uid": 65534, "gid": 65534}}).to_string()).unwrap();
    let (code, out, err) = exec(&ctx, &["--process", pf.to_str().unwrap(), &id]);
    assert_eq!((code, out.as_str()), (0, "from-file 1\n65534\n"), "{err}");
    Ok(())
}

/// A --process file as runc reads it (no `user` is uid 0), the flags on top of it (-t too), and
/// --cap raising the ambient set where the config made the capability inheritable (runc 1.2).
pub fn process_file_and_flags_as_runc() -> TestResult {
    let ctx = Ctx::new("execproc")?;
    let recvtty = crate::terminal::recvtty()?;
    let mut b = ctx.bundle("sleep 100");
    b.config["root"]["readonly"] = false.into();
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"]["inheritable"] = json!(["CAP_NET_RAW"]);
    b.config["process"]["capabilities"]["bounding"] = json!(["CAP_NET_RAW", "CAP_KILL"]);
    let id = running(&ctx, &mut b);
    let pf = ctx.base.join("process.json");
    std::fs::write(&pf, json!({"args": ["id", "-u"], "cwd": "/"}).to_string()).unwrap();
    let (code, out, err) = exec(&ctx, &["--process", pf.to_str().unwrap(), &id]);
    assert_eq!((code, out.as_str()), (0, "0\n"), "{err}");

    let sock = ctx.base.join("exec.sock");
    let mut helper = crate::support::Guard(
        std::process::Command::new(&recvtty)
            .arg("--no-relay")
            .arg(&sock)
            .spawn()
            .unwrap(),
    );
    crate::clients::wait_until(10, "the console socket", || sock.exists());
    let script = "tty > /tmp/exec-tty";
    std::fs::write(
        &pf,
        json!({"args": ["sh", "-c", script], "cwd": "/"}).to_string(),
    )
    .unwrap();
    let sock_arg = sock.to_str().unwrap();
    let args = [
        "-d",
        "-t",
        "--console-socket",
        sock_arg,
        "--process",
        pf.to_str().unwrap(),
        &id,
    ];
    let (code, _, err) = exec(&ctx, &args);
    assert_eq!(code, 0, "{err}");
    let tty = b.rootfs().join("tmp/exec-tty");
    crate::clients::wait_until(10, "the exec'd process", || tty.exists());
    let _ = helper.0.wait();
    let tty = std::fs::read_to_string(&tty).unwrap();
    assert!(tty.starts_with("/dev/pts/"), "{tty}");

    let (code, out, err) = exec(
        &ctx,
        &["--cap", "CAP_NET_RAW", &id, "cat", "/proc/self/status"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(cap_field(&out, "CapAmb:"), 1 << 13, "{out}");
    assert_eq!(cap_field(&out, "CapEff:"), 1 << 13, "{out}");
    Ok(())
}

/// exec as runc allows it: into a created container, not into a stopped, missing or (without
/// --ignore-paused) paused one, and a failure exits 255.
pub fn refused_when_not_running() -> TestResult {
    let ctx = Ctx::new("execstop")?;
    let mut b = ctx.bundle("true");
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    b.save();
    assert!(
        ctx.cmd()
            .args(["run", "--keep", "-b"])
            .arg(&b.dir)
            .arg(&id)
            .status()
            .unwrap()
            .success()
    );
    // A failed exec exits 255, as runc's (shims tell it from the process's status so).
    let (code, _, err) = exec(&ctx, &[&id, "true"]);
    assert_eq!(code, 255);
    assert!(err.contains("stopped"), "{err}");
    let (code, _, err) = exec(&ctx, &["ghost", "true"]);
    assert_eq!(code, 255);
    assert!(err.contains("does not exist"), "{err}");

    // Created, not started: the process runs in the container's namespaces and cgroup, as in
    // runc; paused, it needs --ignore-paused.
    let id = ctx.id();
    let mut b = ctx.bundle("sleep 100");
    b.config["hostname"] = "made".into();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = exec(
        &ctx,
        &[
            &id,
            "sh",
            "-c",
            "hostname; md5sum < /proc/self/cgroup; md5sum < /proc/1/cgroup",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "made", "the container's uts namespace: {out}");
    assert_eq!(lines[1], lines[2], "the waiting init's cgroup: {out}");
    ctx.chitin_ok(&["start", &id]);
    ctx.chitin_ok(&["pause", &id]);
    let (code, _, err) = exec(&ctx, &[&id, "true"]);
    assert_eq!(code, 255);
    assert!(err.contains("--ignore-paused"), "{err}");
    ctx.chitin_ok(&["resume", &id]);
    ctx.chitin_ok(&["delete", "-f", &id]);
    Ok(())
}

/// The container's seccomp filter applies to exec'd processes too.
pub fn seccomp_applies() -> TestResult {
    crate::seccomp_abi::needs_filters()?;
    let ctx = Ctx::new("execsc")?;
    let mut b = ctx.bundle("sleep 100");
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]});
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    let id = running(&ctx, &mut b);
    let (code, out, err) = exec(
        &ctx,
        &[
            &id,
            "sh",
            "-c",
            "mkdir /tmp/x; echo rc=$?; grep Seccomp: /proc/self/status",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "rc=1\nSeccomp:\t2\n");
    assert!(err.contains("Permission denied"), "{err}");
    Ok(())
}

/// An exec'd process gets what the container was created with, from the config saved in the
/// state directory: an edit of the bundle's config.json since (seccomp off, capabilities added, a
/// bind source gone) changes nothing.
pub fn follows_the_saved_config() -> TestResult {
    crate::seccomp_abi::needs_filters()?;
    let ctx = Ctx::new("execsaved")?;
    let mut b = ctx.bundle("sleep 100");
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]});
    let data = ctx.base.join("data");
    std::fs::create_dir(&data).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind"]}),
    );
    let id = running(&ctx, &mut b);
    let init = ctx.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    // The saved config holds the process's environment: its owner's only, as the record.
    for f in ["config.json", "state.json"] {
        let mode = std::fs::metadata(ctx.root.join(&id).join(f))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{f}"
        );
    }

    b.config["linux"].as_object_mut().unwrap().remove("seccomp");
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    }
    b.save();
    std::fs::remove_dir(&data).unwrap();

    let script = "mkdir /tmp/x; echo rc=$?; grep -E '^(CapEff|Seccomp):' /proc/self/status";
    let (code, out, err) = exec(&ctx, &[&id, "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "rc=1\nCapEff:\t{:016x}\nSeccomp:\t2\n",
        cap_field(&status, "CapEff")
    );
    assert_eq!(out, want, "as created, not as edited");
    // A process file brings its own capabilities (none here); the filter is the container's.
    let out = ctx.exec_process(&id, &["sh", "-c", script]);
    assert_eq!(
        out, "rc=1\nCapEff:\t0000000000000000\nSeccomp:\t2\n",
        "--process"
    );
    Ok(())
}

/// exec -t in the foreground: a pty of the container's devpts, relayed; the status comes back.
pub fn terminal() -> TestResult {
    let ctx = Ctx::new("exectty")?;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return crate::harness::skip("script(1) from util-linux is not installed");
    }
    let mut b = ctx.bundle("sleep 100");
    let id = running(&ctx, &mut b);
    let cmd = format!(
        "{} --root {} exec -t {id} sh -c 'tty; ls -l /proc/self/fd/0 | cut -c1; exit 4'; echo rc=$?",
        crate::support::bin(),
        ctx.root.display()
    );
    // script(1) sends EOF down its pty when its stdin ends. If that happens before chitin puts
    // the terminal in raw mode, n_tty has queued the EOF as a NUL, which raw mode then reads as
    // data and the container's pty echoes as "^@": so script's stdin stays open until the end.
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("\nl\n") || text.contains("\nc\n"), "{text}");
    assert!(text.contains("rc=4"), "{text}");
    Ok(())
}
