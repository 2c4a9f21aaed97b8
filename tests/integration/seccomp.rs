//! Seccomp in real containers: Docker's default profile, actions and errnos, and the NOTIFY
//! listener handed to an agent.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use serde_json::{Value, json};

use crate::harness::TestResult;
use crate::seccomp_abi::needs_filters;
use crate::support::{Ctx, bin};

pub fn docker_default() -> Value {
    let dir = tempdir_for_spec();
    let out = std::process::Command::new(bin())
        .args(["spec", "--seccomp", "docker-default", "-b"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    v["linux"]["seccomp"].clone()
}

fn tempdir_for_spec() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("chitin-it-spec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Docker's profile allows what a shell needs and refuses unshare(CLONE_NEWUSER) with EPERM;
/// the same container without it may unshare.
pub fn docker_default_profile() -> TestResult {
    needs_filters()?;
    let ctx = Ctx::new("dockerprof")?;
    let script = "unshare -U true; echo unshare=$?; mkdir /tmp/d && echo mkdir-ok; ls /bin | wc -l; grep -E '^Seccomp:' /proc/self/status";
    let mut b = ctx.bundle(script);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    let (code, out, _) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0);
    assert!(
        out.starts_with("unshare=0\n"),
        "without the profile unshare works: {out}"
    );
    b.config["linux"]["seccomp"] = docker_default();
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "unshare=1", "{out}");
    assert!(
        err.contains("Operation not permitted"),
        "the profile's errno, EPERM: {err}"
    );
    assert_eq!(lines[1], "mkdir-ok");
    assert!(lines[2].parse::<u32>().unwrap() > 100);
    assert_eq!(lines[3], "Seccomp:\t2", "filter mode");
    Ok(())
}

/// ERRNO with errnoRet, KILL_PROCESS, and defaultErrnoRet, seen from inside.
pub fn actions_and_errnos() -> TestResult {
    needs_filters()?;
    let ctx = Ctx::new("actions")?;
    let mut b = ctx.bundle("mkdir /tmp/x; chmod 600 /bin/busybox; sync; echo sync=$?; echo done");
    let arches: Vec<&str> = vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": if cfg!(target_arch = "x86_64") { arches } else { vec![] },
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30},
            {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]
    });
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("can't create directory '/tmp/x': Permission denied"),
        "EACCES: {err}"
    );
    assert!(err.contains("Read-only file system"), "EROFS: {err}");
    assert_eq!(
        out,
        format!("sync={}\ndone\n", 128 + 31),
        "sync died of SIGSYS"
    );
    Ok(())
}

/// SCMP_ACT_NOTIFY: the agent at listenerPath gets the notification fd with the container's
/// state; once it closes the fd, the notified call fails with ENOSYS.
pub fn notify_listener_reaches_the_agent() -> TestResult {
    needs_filters()?;
    let ctx = Ctx::new("notify")?;
    let sock = ctx.base.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8192];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            }
        }
        let n = msg.bytes;
        let state: Value = serde_json::from_slice(&buf[..n]).unwrap();
        let fd = fd.expect("an fd");
        let kind = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        (state, kind.to_string_lossy().into_owned())
    });
    let mut b = ctx.bundle("mkdir /tmp/n; echo after");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "meta-42",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    if code != 0 {
        // A create that failed before it reached the agent: free the agent's accept.
        let _ = std::os::unix::net::UnixStream::connect(&sock);
        panic!("run failed: {err}");
    }
    let (state, kind) = agent.join().unwrap();
    assert_eq!(out, "after\n");
    assert!(
        err.contains("Function not implemented"),
        "ENOSYS once the agent is gone: {err}"
    );
    assert_eq!(kind, "anon_inode:seccomp notify");
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "meta-42");
    assert_eq!(state["state"]["id"], id.as_str());
    assert!(state["pid"].as_i64().unwrap() > 0);
    // No agent at the path: the error has runc's words, which agents' tests look for.
    std::fs::remove_file(&sock).unwrap();
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_ne!(code, 0);
    assert!(
        err.contains("failed to connect with seccomp agent"),
        "{err}"
    );
    Ok(())
}

/// A profile loaded before the fds are marked (no noNewPrivileges: runc loads it while still
/// privileged) that refuses close_range, with EPERM or as a kernel without it would (ENOSYS):
/// the container runs, and a stray fd of the caller's still does not reach it.
pub fn profile_without_close_range() -> TestResult {
    needs_filters()?;
    let ctx = Ctx::new("noclose")?;
    for errno in [1, 38] {
        let mut b = ctx.bundle("ls /proc/self/fd | sort -n | tr '\\n' ' '");
        b.config["process"]["noNewPrivileges"] = false.into();
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]
        });
        b.save();
        let mut cmd = ctx.cmd();
        cmd.args(["run", "-b"]).arg(&b.dir).arg(ctx.id());
        // SAFETY: dup2 in the child before exec; fd 9 is a stray the caller did not mean to pass.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::dup2(2, 9) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "errno {errno}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // 0-2 and the fd ls opens for the directory it lists.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0 1 2 3",
            "errno {errno}"
        );
    }
    Ok(())
}

/// Profiles read as runc (libseccomp) reads them: the native ABI is filtered even when only its
/// compat ABIs are listed (i386 and x32 on x86_64, arm on aarch64, s390 on s390x), rather than
/// killed as a foreign one, and several conditions on one argument are alternatives.
pub fn profiles_read_as_runc_reads_them() -> TestResult {
    needs_filters()?;
    let ctx = Ctx::new("scmprunc")?;
    let compat: Vec<&str> = chitin_arch::Arch::native()
        .compat()
        .iter()
        .map(|a| a.oci_name())
        .collect();
    if compat.is_empty() {
        return crate::harness::skip("this ISA has no compat ABI to list alone");
    }
    let mut b = ctx.bundle(
        "trap '' USR1 USR2; for s in USR1 USR2 HUP 0; do kill -$s $$ 2>/dev/null && echo sent-$s || echo refused-$s; done",
    );
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": compat,
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [
            {"index": 1, "value": 10, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 12, "op": "SCMP_CMP_EQ"}
        ]}]
    });
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    // Pid 1 ignores the signals it has no handler for, so HUP is the allowed call's witness.
    assert_eq!(
        out, "refused-USR1\nrefused-USR2\nsent-HUP\nsent-0\n",
        "{err}"
    );
    // A rule of notify on write is refused before anything is made.
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 1);
    assert!(err.contains("linux.seccomp.syscalls[0].names[0]"), "{err}");
    Ok(())
}
