//! The container escapes runc and crun have had, each tried against chitin for real.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TestResult;
use crate::support::{Ctx, bin};

fn wait_for_file(p: &Path, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{} never came", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies the shared libraries `exe` needs (its loader among them) into `rootfs`, at their paths.
/// The loader lists them itself (what ldd does), so this works where ldd is missing (the VM).
fn copy_libraries(exe: &Path, rootfs: &Path) {
    let out = Command::new(exe)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|w| w.starts_with('/')),
        };
        if let Some(lib) = lib.filter(|l| l.starts_with('/')).map(Path::new) {
            let dest = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, dest).unwrap();
        }
    }
}

/// A pipe whose buffer is full, so that a process writing to it blocks until we read.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let fl = nix::fcntl::OFlag::from_bits_truncate(
        nix::fcntl::fcntl(w.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap(),
    );
    let set = |f| nix::fcntl::fcntl(w.as_fd(), nix::fcntl::FcntlArg::F_SETFL(f)).unwrap();
    set(fl | nix::fcntl::OFlag::O_NONBLOCK);
    while nix::unistd::write(&w, &[0u8; 4096]).is_ok() {}
    set(fl);
    (r, w)
}

/// CVE-2019-5736. The container's /bin/evil is `#!/proc/self/exe`, so `exec` of it runs the
/// runtime's own binary inside the container. A process of the container opens that binary
/// through /proc/<pid>/exe, waits for it to exit, and reopens it to write over its first bytes
/// (in place: neither growing nor truncating it). The binary used is a copy of chitin's, so that
/// a broken build damages only the copy.
pub fn proc_self_exe_cannot_be_overwritten() -> TestResult {
    let (opened, result) = exe_attack(&Ctx::new("cve-2019-5736")?, None, None);
    // The runtime ran from its detached read-only bind, whose root is the binary: its path is "/".
    assert_eq!(opened.trim_end(), "opened /");
    assert!(result.contains("Read-only file system"), "{result}");
    Ok(())
}

/// The same attack where the mount API is missing: open_tree fails with ENOSYS (a seccomp filter
/// on the runtime, as a kernel before 5.2 would answer), so chitin runs from a sealed memfd copy.
pub fn proc_self_exe_cannot_be_overwritten_without_the_mount_api() -> TestResult {
    crate::seccomp_abi::needs_filters()?;
    let profile = chitin::seccomp::from_json(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["open_tree"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    }))
    .unwrap();
    let prog = chitin::seccomp::compile::compile(&profile).unwrap();
    let (opened, result) = exe_attack(&Ctx::new("cve-2019-5736-memfd")?, Some(&prog), None);
    assert!(opened.contains("/memfd:chitin"), "{opened}");
    // F_SEAL_WRITE.
    assert!(result.contains("Operation not permitted"), "{result}");
    Ok(())
}

/// An ordinary user running the attack's runtime (rootless mode): its uid, and the state
/// directory it may write.
pub struct AsUser<'a> {
    pub uid: u32,
    pub root: &'a Path,
}

/// Runs the attack, each runtime command under `filter` if given, and as `user` if given (then
/// the binary, the bundle and its rootfs are that user's, and the container maps it to root):
/// returns what the attacker opened and what its write got. Fails if the write went through or
/// the binary changed.
pub fn exe_attack(
    ctx: &Ctx,
    filter: Option<&[chitin::seccomp::bpf::SockFilter]>,
    user: Option<AsUser<'_>>,
) -> (String, String) {
    let victim = ctx.base.join("victim-chitin");
    std::fs::copy(bin(), &victim).unwrap();
    let before = std::fs::read(&victim).unwrap();
    // The attacker: find the process whose exe is not busybox, hold its exe open, wait for it to
    // go, then write through the held fd's magic link.
    let attacker = r#"
        while :; do
          for p in /proc/[0-9]*; do
            l=$(readlink $p/exe 2>/dev/null) || continue
            [ "$l" = /bin/busybox ] && continue
            exec 3<$p/exe && break 2
          done
        done
        echo "opened $l" > /tmp/opened
        while [ -e $p/exe ]; do sleep 0.05; done
        # "Text file busy" while the exited process's memory is not torn down yet (seen once
        # under TCG): the binary still runs, so ask again; what refuses it then is the answer.
        n=0
        while ! echo pwned 2>/tmp/err 1<>/proc/self/fd/3; do
          grep -q busy /tmp/err && [ $n -lt 50 ] || break
          n=$((n + 1)); sleep 0.1
        done
        if [ -s /tmp/err ]; then echo "refused: $(cat /tmp/err)" > /tmp/result
        else echo "written" > /tmp/result; fi
        sleep 100"#;
    let mut b = ctx.bundle(attacker);
    b.config["root"]["readonly"] = false.into();
    std::fs::write(b.rootfs().join("bin/evil"), "#!/proc/self/exe\n").unwrap();
    // A dynamically linked build needs its loader and libraries in the container to run there.
    copy_libraries(&victim, &b.rootfs());
    std::fs::set_permissions(
        b.rootfs().join("bin/evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    if let Some(u) = &user {
        let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": u.uid, "size": 1}]);
        b.config["linux"]["uidMappings"] = map.clone();
        b.config["linux"]["gidMappings"] = map;
        // As the rootless spec has them: no cgroup mount (no cgroup of its own), devpts without
        // gid=5 (not mapped), and /sys bound.
        let mounts = b.config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["type"] != "cgroup");
        for m in mounts.iter_mut().filter(|m| m["type"] == "devpts") {
            m["options"]
                .as_array_mut()
                .unwrap()
                .retain(|o| o != "gid=5");
        }
        for m in mounts {
            if m["destination"] == "/sys" {
                *m = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
        }
        let all = [victim.as_path(), &ctx.base, &b.dir];
        Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", u.uid))
            .args(all)
            .status()
            .unwrap();
    }
    b.save();
    let id = ctx.id();
    let victim_cmd = || {
        let mut c = match &user {
            None => Command::new(&victim),
            Some(u) => crate::rootless::as_user(u.uid, &victim),
        };
        let root = user.as_ref().map_or(ctx.root.as_path(), |u| u.root);
        c.arg("--root").arg(root).stdin(Stdio::null());
        if let Some(prog) = filter.map(<[_]>::to_vec) {
            // SAFETY: between fork and exec only the seccomp system call runs, on a program
            // built before the fork.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                    chitin::seccomp::load::load(&prog, 0).map(drop)
                });
            }
        }
        c
    };
    let err_path = ctx.base.join("run.err");
    let st = victim_cmd()
        .args(["run", "-d", "-b", b.dir.to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(&err_path).unwrap()
    );

    // The runtime's binary runs in the container, blocked on its error message until we read.
    let (r, w) = full_pipe();
    let st = victim_cmd()
        .args(["exec", "-d", &id, "/bin/evil"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(w))
        .status()
        .unwrap();
    assert!(st.success());
    let opened = wait_for_file(&b.rootfs().join("tmp/opened"), 10);
    // Let it finish and exit.
    let drain = std::thread::spawn(move || {
        let mut f = std::fs::File::from(r);
        let _ = std::io::copy(&mut f, &mut std::io::sink());
    });
    let result = wait_for_file(&b.rootfs().join("tmp/result"), 10);
    drain.join().unwrap();
    assert!(result.starts_with("refused"), "{opened}{result}");
    assert!(
        std::fs::read(&victim).unwrap() == before,
        "the runtime's binary was changed"
    );
    (opened, result)
}

/// The fds a container process lists ("N target" lines): their numbers, and their targets.
fn fds_of(listing: &str) -> (Vec<u32>, String) {
    let mut fds: Vec<u32> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    fds.sort();
    (fds, listing.to_owned())
}

/// CVE-2024-21626. A host directory fd that chitin's caller leaves open (fd 9, not handed over
/// with --preserve-fds) must not reach the container, for `run` and for `exec`; and a cwd that
/// names an fd through /proc/self/fd is refused rather than followed out of the rootfs.
pub fn no_host_fd_reaches_the_container() -> TestResult {
    let ctx = Ctx::new("cve-2024-21626")?;
    let host_dir = std::fs::File::open(&ctx.base).unwrap();
    let with_fd_9 = |c: &mut Command| {
        let fd = host_dir.as_fd().try_clone_to_owned().unwrap();
        // SAFETY: dup2 in the child between fork and exec; it clears close-on-exec on fd 9.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(c, move || {
                nix::unistd::dup2_raw(&fd, 9).map(drop).map_err(Into::into)
            });
        }
    };
    // The shell lists its own fds and where they lead (fd 3 is the listing's own directory).
    let list = "for f in /proc/$$/fd/*; do echo ${f##*/} $(readlink $f); done";
    let host = ctx.base.to_str().unwrap().to_owned();
    let check = |what: &str, out: &[u8]| {
        let (fds, text) = fds_of(&String::from_utf8_lossy(out));
        assert!(fds.len() >= 3 && !fds.contains(&9), "{what}: {text}");
        assert!(fds.iter().all(|f| *f <= 3), "{what}: {text}");
        assert!(!text.contains(&host), "{what}: a host path: {text}");
    };
    let mut b = ctx.bundle(&format!("{list}; sleep 100"));
    b.save();
    let id = ctx.id();
    let mut c = ctx.cmd();
    c.args(["run", "-d", "-b"]).arg(&b.dir).arg(&id);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    with_fd_9(&mut c);
    assert!(c.status().unwrap().success());
    let mut c = ctx.cmd();
    c.args(["exec", &id, "sh", "-c", list]);
    with_fd_9(&mut c);
    check("exec", &c.output().unwrap().stdout);
    let mut c = ctx.cmd();
    c.args(["run", "-b"]).arg(&b.dir).arg(ctx.id());
    b.config["process"]["args"] = serde_json::json!(["sh", "-c", list]);
    b.save();
    with_fd_9(&mut c);
    check("run", &c.output().unwrap().stdout);

    // cwd through a magic link, in the config and from exec --cwd.
    b.config["process"]["cwd"] = "/proc/self/fd/9".into();
    b.save();
    let mut c = ctx.cmd();
    c.args(["run", "-b"]).arg(&b.dir).arg(ctx.id());
    with_fd_9(&mut c);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("process.cwd /proc/self/fd/9"), "{err}");
    let mut c = ctx.cmd();
    c.args(["exec", "--cwd", "/proc/self/fd/9", &id, "pwd"]);
    with_fd_9(&mut c);
    let out = c.output().unwrap();
    // A failed exec exits 255, as runc's.
    assert_eq!(out.status.code(), Some(255));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(ctx.base.to_str().unwrap()),
        "never the host directory"
    );
    Ok(())
}

/// CVE-2019-16884 and its kin: a config (or image) that puts something else over /proc cannot
/// capture the runtime's writes meant for procfs. Sysctls go through the runtime's own procfs,
/// never the container's tree, so an impostor at /proc/sys neither receives the value nor stops
/// it from applying. (The AppArmor label, written through the container's /proc, is checked to
/// be procfs: apparmor::confines shows a tmpfs there refused.)
pub fn proc_writes_need_a_real_procfs() -> TestResult {
    let ctx = Ctx::new("cve-2019-16884")?;
    let mut b = ctx.bundle("ls /proc/sys | wc -l; cat /realproc/sys/kernel/shmmni");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts
        .push(serde_json::json!({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(serde_json::json!({"destination": "/realproc", "type": "proc", "source": "proc"}));
    b.config["root"]["readonly"] = false.into();
    b.config["linux"]["sysctl"] = serde_json::json!({"kernel.shmmni": "1234"});
    b.config["linux"]["maskedPaths"] = serde_json::json!([]);
    b.config["linux"]["readonlyPaths"] = serde_json::json!([]);
    assert_eq!(
        ctx.run_ok(&b),
        "0\n1234\n",
        "the impostor got nothing; the sysctl applied"
    );
    Ok(())
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CVE-2025-31133 and CVE-2025-52565: an image whose /dev/null and /dev/console are symlinks into
/// /proc, with a config that keeps the image's /dev. The masking bind of /dev/null and the bind of
/// the pty over /dev/console must land on real nodes at those paths, never on the procfs files.
/// CVE-2019-16884: an LSM label (set on the config by `label`) goes through the container's /proc
/// only once it is checked to be procfs. A directory laid out like it (the init is pid 1 in its pid
/// namespace, `files` under 1/attr), bound over /proc, must make create fail, not take the write
/// and leave the process unlabelled. Used by apparmor::confines and selinux::labels, in the VM.
pub fn lsm_label_refuses_an_impostor_proc(
    ctx: &Ctx,
    label: impl FnOnce(&mut serde_json::Value),
    files: &[&str],
) {
    let mut b = ctx.bundle("true");
    label(&mut b.config);
    let fake = b.rootfs().join("fakeproc");
    for f in files {
        let path = fake.join("1/attr").join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"destination": "/proc", "type": "bind", "source": fake, "options": ["rbind"]}
        ));
    b.config["linux"]["maskedPaths"] = serde_json::json!([]);
    b.config["linux"]["readonlyPaths"] = serde_json::json!([]);
    let (code, err) = ctx.create(&b, &ctx.id(), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("/proc is not a procfs"), "{err}");
}

pub fn dev_null_and_console_symlinks_redirect_nothing() -> TestResult {
    let ctx = Ctx::new("cve-2025-31133")?;
    let recvtty = crate::terminal::recvtty()?;
    let mut b = ctx.bundle(
        "cat /etc/secret; echo end-of-secret; stat -c '%n %F %t' /dev/null /dev/console; \
         grep -c -e core_pattern -e modprobe /proc/self/mountinfo",
    );
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    b.config["process"]["terminal"] = true.into();
    b.config["linux"]["maskedPaths"] = serde_json::json!(["/etc/secret"]);
    b.config["root"]["readonly"] = false.into();
    std::fs::write(b.rootfs().join("etc/secret"), "top secret\n").unwrap();
    for (node, target) in [
        ("null", "/proc/sys/kernel/core_pattern"),
        ("console", "/proc/sys/kernel/modprobe"),
    ] {
        std::os::unix::fs::symlink(target, b.rootfs().join("dev").join(node)).unwrap();
    }
    b.save();
    let sock = ctx.base.join("console.sock");
    let mut helper = Command::new(recvtty)
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = helper.stdout.take().unwrap();
    // Killed if the test fails before the container ends it.
    let helper = KillOnDrop(helper);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "recvtty never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = ctx.id();
    let st = ctx
        .cmd()
        .args(["run", "-d", "--console-socket"])
        .arg(&sock)
        .arg("-b")
        .arg(&b.dir)
        .arg(&id)
        .status()
        .unwrap();
    assert!(st.success());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    drop(helper);
    let text = text.replace('\r', "");
    assert!(text.starts_with("end-of-secret\n"), "masked: {text}");
    assert!(
        text.contains("/dev/null character special file 1\n"),
        "{text}"
    );
    // The pty's major is 136 (0x88).
    assert!(
        text.contains("/dev/console character special file 88\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\n0\n"),
        "nothing bound onto the procfs files: {text}"
    );
    Ok(())
}

/// CVE-2016-9962: the init is not dumpable while chitin sets it up and while it waits at the start
/// barrier (with the container's capabilities by then), so a process of the container's user and
/// capabilities cannot ptrace it or open its fds; once it runs its program, it is. The prober is
/// root without the capabilities that override dumpability (a superset of the container's
/// capabilities otherwise).
pub fn init_is_not_dumpable_until_it_execs() -> TestResult {
    let ctx = Ctx::new("cve-2016-9962")?;
    let b = ctx.bundle("sleep 100");
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let pid = ctx.state(&id)["pid"].as_i64().unwrap();
    let probe = || {
        // Reading another process's environ (or its fd links) takes ptrace access.
        let mut c = Command::new("cat");
        c.arg(format!("/proc/{pid}/environ"));
        // SAFETY: capability calls in the child between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                // Any of these lets root read a non-dumpable process's memory on this kernel.
                use caps::Capability::*;
                for c in [
                    CAP_SYS_PTRACE,
                    CAP_SYS_ADMIN,
                    CAP_PERFMON,
                    CAP_CHECKPOINT_RESTORE,
                ] {
                    caps::drop(None, caps::CapSet::Bounding, c).map_err(std::io::Error::other)?;
                }
                Ok(())
            });
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = probe();
    assert!(
        !ok && err.contains("Permission denied"),
        "at the barrier: {err}"
    );
    assert_eq!(ctx.chitin(&["start", &id]).status.code(), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe().0 {
        assert!(
            Instant::now() < deadline,
            "dumpable once it runs its program"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// CVE-2024-45310 (and CVE-2021-30465's races): the mount targets chitin creates are resolved in
/// the rootfs, also when the path runs through a volume shared with the host and a symlink in it
/// that climbs out: nothing is made outside the rootfs.
pub fn mount_targets_stay_in_the_rootfs_through_a_shared_volume() -> TestResult {
    let ctx = Ctx::new("cve-2024-45310")?;
    let shared = ctx.base.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    // Seen from the host, shared/up leads to "/".
    std::os::unix::fs::symlink("../../../../../../../..", shared.join("up")).unwrap();
    let marker = format!("chitin-45310-{}", std::process::id());
    let mut b = ctx.bundle(&format!(
        "ls -d /{marker}/made && grep -c ' /{marker}/made ' /proc/self/mountinfo"
    ));
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({"destination": "/vol", "type": "bind", "source": shared, "options": ["rbind"]}));
    mounts.push(serde_json::json!({"destination": format!("/vol/up/{marker}/made"), "type": "tmpfs", "source": "tmpfs"}));
    b.config["root"]["readonly"] = false.into();
    assert_eq!(ctx.run_ok(&b), format!("/{marker}/made\n1\n"));
    assert!(
        !Path::new("/").join(&marker).exists(),
        "nothing made at the host's root"
    );
    assert!(
        b.rootfs().join(&marker).join("made").is_dir(),
        "made in the rootfs"
    );
    Ok(())
}
