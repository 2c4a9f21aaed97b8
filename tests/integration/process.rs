//! The container process: user, capabilities, rlimits, no_new_privs, oom_score_adj, env, cwd,
//! terminal through --console-socket, and --preserve-fds.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use serde_json::json;

use crate::harness::TestResult;
use crate::support::{Ctx, cap_field};

pub fn user_groups_umask_cwd_env() -> TestResult {
    let ctx = Ctx::new("user")?;
    let mut b = ctx.bundle("id -u; id -g; id -G; umask; pwd; echo $GREETING");
    b.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 63});
    b.config["process"]["cwd"] = "/work/dir".into();
    b.config["root"]["readonly"] = false.into();
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("GREETING=hi there".into());
    let out = ctx.run_ok(&b);
    assert_eq!(out, "1000\n1000\n1000 5 65534\n0077\n/work/dir\nhi there\n");

    let mut b = ctx.bundle("id -u; id -g");
    b.config["process"]["user"] = json!({"uid": 0, "gid": 0, "username": "svc"});
    assert_eq!(
        ctx.run_ok(&b),
        "1000\n1000\n",
        "username resolved in the rootfs's /etc/passwd"
    );
    Ok(())
}

/// What runc runs, chitin runs: an ambient capability outside the inheritable set (as `runc spec`
/// writes) is not raised, and a capability name this build does not know is left out; each with
/// a warning naming the field.
pub fn capabilities_runc_accepts() -> TestResult {
    let ctx = Ctx::new("capsok")?;
    let mut b = ctx.bundle("grep -E '^Cap(Amb|Bnd|Eff)' /proc/self/status");
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_NOPE_FROM_A_NEWER_KERNEL"],
        "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]
    });
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    let want = "CapEff:\t0000000000000020\nCapBnd:\t0000000000000020\nCapAmb:\t0000000000000000\n";
    assert_eq!(out, want);
    let err = err.replace("\\\"", "\"");
    assert!(
        err.contains("process.capabilities.bounding: unknown capability \"CAP_NOPE_FROM_A_NEWER_KERNEL\" ignored"),
        "{err}"
    );
    assert!(
        err.contains(
            "process.capabilities.ambient: CAP_KILL is not both permitted and inheritable"
        ),
        "{err}"
    );
    Ok(())
}

pub fn capabilities_all_five_sets() -> TestResult {
    let ctx = Ctx::new("caps")?;
    let mut b = ctx.bundle("cat /proc/self/status");
    // CAP_CHOWN=0, CAP_KILL=5, CAP_NET_BIND_SERVICE=10, CAP_SYS_ADMIN=21
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["noNewPrivileges"] = false.into();
    let s = ctx.run_ok(&b);
    assert_eq!(cap_field(&s, "CapBnd:"), 1 | 1 << 5 | 1 << 10 | 1 << 21);
    // execve as a non-root user: permitted and effective come from the ambient set alone.
    assert_eq!(cap_field(&s, "CapAmb:"), 1 << 10);
    assert_eq!(cap_field(&s, "CapInh:"), 1 << 10);
    assert_eq!(cap_field(&s, "CapPrm:"), 1 << 10);
    assert_eq!(cap_field(&s, "CapEff:"), 1 << 10);
    assert!(s.contains("NoNewPrivs:\t0"));

    // As root the sets apply as given; the inheritable set stays empty unless asked for.
    let mut b = ctx.bundle("cat /proc/self/status");
    b.config["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"]});
    let s = ctx.run_ok(&b);
    assert_eq!(cap_field(&s, "CapBnd:"), 1 | 1 << 5);
    assert_eq!(cap_field(&s, "CapPrm:"), 1 | 1 << 5);
    assert_eq!(cap_field(&s, "CapInh:"), 0);
    assert!(
        s.contains("NoNewPrivs:\t1"),
        "the default spec sets noNewPrivileges"
    );
    Ok(())
}

pub fn rlimits_and_oom_score_adj() -> TestResult {
    let ctx = Ctx::new("rlimit")?;
    let mut b = ctx.bundle("ulimit -n; ulimit -Hn; ulimit -c; cat /proc/self/oom_score_adj");
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    b.config["process"]["oomScoreAdj"] = 500.into();
    assert_eq!(ctx.run_ok(&b), "321\n654\n0\n500\n");
    Ok(())
}

pub fn hostname_and_domainname() -> TestResult {
    let ctx = Ctx::new("uts")?;
    let mut b = ctx.bundle("hostname; cat /proc/sys/kernel/domainname");
    b.config["hostname"] = "box1".into();
    b.config["domainname"] = "example.test".into();
    assert_eq!(ctx.run_ok(&b), "box1\nexample.test\n");
    Ok(())
}

fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received");
}

pub fn console_socket_gets_the_pty_master() -> TestResult {
    let ctx = Ctx::new("tty")?;
    let mut b = ctx.bundle("tty; stty size; ls -l /dev/console | cut -c1; echo done");
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    b.save();
    let sock_path = ctx.base.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let id = ctx.id();
    let (code, err) = ctx.create(
        &b,
        &id,
        &["--console-socket".as_ref(), sock_path.as_os_str()],
    );
    assert_eq!(code, 0, "create: {err}");
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(&conn);
    assert!(ctx.chitin(&["start", &id]).status.success());
    let mut f = std::fs::File::from(master);
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    // Read until the slave side closes (EIO) or "done" arrives.
    while !text.contains("done") {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let text = text.replace('\r', "");
    assert!(text.contains("/dev/pts/0\n"), "{text}");
    assert!(text.contains("33 111\n"), "{text}");
    assert!(text.contains("c\ndone"), "/dev/console is the pty: {text}");
    Ok(())
}

pub fn terminal_without_socket_is_refused_when_detached() -> TestResult {
    let ctx = Ctx::new("notty")?;
    let mut b = ctx.bundle("true");
    b.config["process"]["terminal"] = true.into();
    b.save();
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--console-socket"));
    assert!(!ctx.root.join(&id).exists());
    Ok(())
}

pub fn preserve_fds_and_listen_fds() -> TestResult {
    let ctx = Ctx::new("fds")?;
    let b = ctx.bundle("echo via-fd4 >&4; echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID; ls /proc/self/fd | sort -n | tr '\\n' ' '");
    b.save();
    // Socket activation names chitin's own pid (sh sets it, then becomes chitin).
    let (stdout, via_fd4) = run_with_fds(&ctx, &b, "$$");
    assert_eq!(via_fd4, "via-fd4\n");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("LISTEN_FDS=1 LISTEN_PID=1"));
    // 0-2, the two passed on, and the fd ls itself opens for /proc/self/fd; never fd 9.
    assert_eq!(lines.next().map(str::trim), Some("0 1 2 3 4 5"));
    // LISTEN_FDS inherited from a socket-activated parent (LISTEN_PID is not ours): fd 3 is not
    // the container's, so only --preserve-fds 1 passes on, as fd 3.
    let (stdout, via_fd4) = run_with_fds(&ctx, &b, "1");
    assert_eq!(via_fd4, "");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("LISTEN_FDS= LISTEN_PID="));
    assert_eq!(lines.next().map(str::trim), Some("0 1 2 3 4"));
    Ok(())
}

/// `run --preserve-fds 1` with LISTEN_FDS=1 and LISTEN_PID as `listen_pid` (in sh's words), fds 3
/// and 4 the write ends of pipes and a stray fd 9; returns stdout and what reached fd 4's pipe.
fn run_with_fds(ctx: &Ctx, b: &crate::support::Bundle, listen_pid: &str) -> (String, String) {
    let (r3, w3) = nix::unistd::pipe().unwrap();
    let (r4, w4) = nix::unistd::pipe().unwrap();
    let id = ctx.id();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("LISTEN_PID={listen_pid} exec \"$@\""))
        .arg("sh")
        .arg(crate::support::bin())
        .arg("--root")
        .arg(&ctx.root)
        .args(["run", "--preserve-fds", "1", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .env("LISTEN_FDS", "1");
    let (w3raw, w4raw) = (w3.as_raw_fd(), w4.as_raw_fd());
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(w3raw, 3) < 0 || libc::dup2(w4raw, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A stray fd the caller did not ask to pass on.
            if libc::dup2(w4raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop((w3, w4));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = String::new();
    std::fs::File::from(r4).read_to_string(&mut got).unwrap();
    drop(r3);
    (stdout, got)
}

/// `run` in the foreground with process.terminal: chitin relays a pty of the container's own,
/// under a real terminal made by script(1).
pub fn foreground_terminal() -> TestResult {
    let ctx = Ctx::new("fgtty")?;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return crate::harness::skip("script(1) from util-linux is not installed");
    }
    let mut b = ctx.bundle("tty; stty size; read -r line; echo got:$line; exit 5");
    b.config["process"]["terminal"] = true.into();
    b.save();
    let id = ctx.id();
    let cmd = format!(
        "stty rows 20 cols 70; {} --root {} run -b {} {id}; echo rc=$?",
        crate::support::bin(),
        ctx.root.display(),
        b.dir.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/0\n"), "{text}");
    assert!(
        text.contains("20 70\n"),
        "the window size comes from chitin's terminal: {text}"
    );
    assert!(text.contains("got:hello\n"), "{text}");
    assert!(text.contains("rc=5"), "{text}");
    Ok(())
}

/// Each container joins a session keyring named after it, unless --no-new-keyring.
pub fn session_keyring() -> TestResult {
    let ctx = Ctx::new("keys")?;
    let mut b = ctx.bundle("grep -c keyring /proc/self/keys 2>/dev/null; awk '$9 ~ /^_ses|^keys-/ {print $9}' /proc/keys | tr -d :");
    b.config["linux"]["maskedPaths"] = json!([]);
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == id), "a keyring named {id}: {out}");
    let id2 = ctx.id();
    let out2 = ctx
        .cmd()
        .args(["run", "--no-new-keyring", "-b"])
        .arg(&b.dir)
        .arg(&id2)
        .output()
        .unwrap();
    assert!(
        out2.status.success(),
        "{}",
        String::from_utf8_lossy(&out2.stderr)
    );
    let out2 = String::from_utf8_lossy(&out2.stdout);
    assert!(!out2.lines().any(|l| l == id2), "{out2}");
    Ok(())
}

/// The kernel decides what runs, as with runc: a user with CAP_DAC_OVERRIDE runs a script only
/// root may execute (access(2) as that user would say no), and a missing program fails in
/// runc's words.
pub fn execute_bit_is_the_kernels_to_check() -> TestResult {
    let ctx = Ctx::new("xbit")?;
    let mut b = ctx.bundle("unused");
    let script = b.rootfs().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran as $(id -u)\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let caps = json!(["CAP_DAC_OVERRIDE"]);
    b.config["process"]["args"] = json!(["/run.sh"]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps,
        "permitted": caps, "inheritable": caps, "ambient": caps});
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!((code, out.as_str()), (0, "ran as 1000\n"), "{err}");
    b.config["process"]["args"] = json!(["/no/run.sh"]);
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 1);
    assert!(
        err.contains("exec /no/run.sh: no such file or directory"),
        "{err}"
    );
    Ok(())
}

/// A created container's init, waiting for start, holds none of the caller's fds but stdio and
/// the preserved ones: a pipe the caller handed on (as a shell or a shim leaves them) reaches
/// EOF once create has returned, not only once the container starts.
pub fn created_init_holds_no_caller_fd() -> TestResult {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let ctx = Ctx::new("initfds")?;
    let b = ctx.bundle("true");
    // pipe(2) without O_CLOEXEC: create inherits the write end.
    let (r, w) = nix::unistd::pipe().unwrap();
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    drop(w);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ctx.state(&id)["status"], "created");
    let mut ready = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut ready, 3000u16).unwrap();
    assert_eq!(n, 1, "the waiting init holds the caller's pipe open");
    let mut buf = [0u8; 1];
    assert_eq!(nix::unistd::read(r.as_fd(), &mut buf).unwrap(), 0);
    Ok(())
}

/// An rlimit whose hard limit is above the runtime's own: refused while planning, naming the
/// field, where the runtime lacks CAP_SYS_RESOURCE to raise it (this host's bounding set drops
/// it), and for a container with a user namespace, inside which the init cannot raise it; set in
/// the container where the runtime can (the VM).
pub fn rlimit_above_the_runtime_s_own() -> TestResult {
    let ctx = Ctx::new("rlimitceil")?;
    let mut b = ctx.bundle("ulimit -l");
    b.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_MEMLOCK", "hard": u64::MAX, "soft": u64::MAX}]);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let can_raise = cap_field(&status, "CapEff") & (1 << 24) != 0;
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    if can_raise {
        assert_eq!((code, out.as_str()), (0, "unlimited\n"), "{err}");
    } else {
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains("process.rlimits[0]: RLIMIT_MEMLOCK's hard limit unlimited is above this runtime's own"),
            "{err}"
        );
        assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    }
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "process.rlimits[0]: RLIMIT_MEMLOCK's hard limit unlimited is above this runtime's own"
        ) && err.contains("which the init cannot raise inside a user namespace"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    Ok(())
}

/// The pid a pidfd refers to, from its fdinfo.
fn pidfd_pid(fd: &OwnedFd) -> i64 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:\t"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a pidfd: {info}"))
}

/// --pidfd-socket on create and exec: the socket gets a pidfd of the init, then of the exec'd
/// process, which signals it; a socket nobody listens on fails create before anything is made.
pub fn pidfd_socket_gets_the_process() -> TestResult {
    let ctx = Ctx::new("pidfd")?;
    let b = ctx.bundle("sleep 100");
    b.save();
    let sock_path = ctx.base.join("pidfd.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let id = ctx.id();
    let flag = ["--pidfd-socket".as_ref(), sock_path.as_os_str()];
    let (code, err) = ctx.create(&b, &id, &flag);
    assert_eq!(code, 0, "create: {err}");
    let (conn, _) = listener.accept().unwrap();
    let init = recv_fd(&conn);
    assert_eq!(pidfd_pid(&init), ctx.state(&id)["pid"].as_i64().unwrap());
    ctx.chitin_ok(&["start", &id]);

    let pid_file = ctx.base.join("exec.pid");
    let sock = sock_path.to_str().unwrap();
    // Detached, the process keeps the stdio it is given: none that output() would wait on.
    let st = ctx
        .cmd()
        .args(["exec", "-d", "--pidfd-socket", sock, "--pid-file"])
        .arg(&pid_file)
        .args([&id, "sleep", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let (conn, _) = listener.accept().unwrap();
    let exec = recv_fd(&conn);
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(pidfd_pid(&exec), pid);
    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, exec.as_raw_fd(), 9, 0usize, 0) };
    assert_eq!(rc, 0);
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&exec),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut pfd, 5000u16).unwrap(),
        1,
        "the exec'd process ended"
    );
    ctx.chitin_ok(&["delete", "-f", &id]);

    drop(listener);
    std::fs::remove_file(&sock_path).unwrap();
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &flag);
    assert_ne!(code, 0);
    assert!(err.contains("--pidfd-socket"), "{err}");
    assert!(!ctx.root.join(&id).exists(), "nothing left");
    Ok(())
}
