//! Namespaces, mounts, devices, masked and read-only paths, sysctls, pivot and --no-pivot.

use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::support::Ctx;

fn ns_id(path: &str) -> String {
    std::fs::read_link(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

pub fn namespaces_new_and_joined() -> TestResult {
    let ctx = Ctx::new("ns")?;
    // sparc64 has no time namespace (it lacks the generic vDSO).
    let kinds: &[&str] = if std::path::Path::new("/proc/self/ns/time").exists() {
        &["pid", "net", "ipc", "uts", "mnt", "cgroup", "user", "time"]
    } else {
        &["pid", "net", "ipc", "uts", "mnt", "cgroup", "user"]
    };
    let mut b = ctx.bundle(&format!(
        "for n in {}; do readlink /proc/self/ns/$n; done",
        kinds.join(" ")
    ));
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
        {"type": "network", "path": format!("/proc/{}/ns/net", std::process::id())}
    ]);
    let out = ctx.run_ok(&b);
    let inside: Vec<&str> = out.lines().collect();
    let host = |n: &str| ns_id(&format!("/proc/self/ns/{n}"));
    for (i, n) in kinds.iter().enumerate() {
        let same = inside[i] == host(n);
        let expect_same = matches!(n, &"net" | &"user" | &"time");
        assert_eq!(
            same,
            expect_same,
            "{n}: inside {} host {}",
            inside[i],
            host(n)
        );
    }
    Ok(())
}

/// A user namespace mapping the container's 0..65536 to the host's 100000 and up.
fn in_user_namespace(b: &mut crate::support::Bundle) {
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
}

pub fn user_namespace_mappings() -> TestResult {
    let ctx = Ctx::new("userns")?;
    let mut b =
        ctx.bundle("cat /proc/self/uid_map /proc/self/gid_map; id -u; ls -l /dev/null | cut -c1; echo x > /dev/null && echo null-ok");
    in_user_namespace(&mut b);
    // The bundle must be reachable by the mapped root.
    std::fs::set_permissions(
        &ctx.base,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = ctx.run_ok(&b);
    let norm: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(norm[0], ["0", "100000", "65536"]);
    assert_eq!(norm[1], ["0", "100000", "65536"]);
    assert_eq!(norm[2], ["0"]);
    // mknod is refused in a user namespace: the host's node is bound instead.
    assert_eq!(norm[3], ["c"]);
    assert_eq!(norm[4], ["null-ok"]);
    Ok(())
}

pub fn time_namespace_offsets() -> TestResult {
    let ctx = Ctx::new("timens")?;
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        return skip("kernel without time namespaces");
    }
    let mut b = ctx.bundle("cut -d. -f1 /proc/uptime");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}});
    let inside: u64 = ctx.run_ok(&b).trim().parse().unwrap();
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside as f64 >= host + 864000.0 - 5.0 && (inside as f64) < host + 864000.0 + 60.0,
        "inside {inside} host {host}"
    );
    Ok(())
}

pub fn mounts_with_options() -> TestResult {
    let ctx = Ctx::new("mounts")?;
    let src = ctx.base.join("vol");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("file"), "from host\n").unwrap();
    let mut b = ctx.bundle(
        "cat /data/file; touch /data/x 2>/dev/null && echo writable || echo readonly; \
         grep -E ' /(scratch|data|proc|sys/fs/cgroup|dev/pts) ' /proc/self/mountinfo | cut -d' ' -f5,6,9 | sort; \
         ls /sys/fs/cgroup | head -3",
    );
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=700"]}));
    mounts.push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid"]}));
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from host");
    assert_eq!(lines[1], "readonly");
    let find = |mp: &str| {
        lines
            .iter()
            .find(|l| l.split(' ').next() == Some(mp))
            .unwrap_or_else(|| panic!("{mp} in {out}"))
            .to_string()
    };
    assert!(
        find("/scratch").contains("nosuid,nodev,noexec") && find("/scratch").ends_with("tmpfs"),
        "{out}"
    );
    assert!(find("/data").starts_with("/data ro,nosuid"), "{out}");
    assert!(find("/proc").ends_with("proc"));
    assert!(find("/dev/pts").ends_with("devpts"));
    assert!(
        find("/sys/fs/cgroup").starts_with("/sys/fs/cgroup ro,"),
        "{out}"
    );
    assert!(!src.join("x").exists());
    Ok(())
}

pub fn propagation() -> TestResult {
    let ctx = Ctx::new("prop")?;
    let src = ctx.base.join("shared-src");
    std::fs::create_dir_all(&src).unwrap();
    let mut b = ctx.bundle("awk '$5 == \"/\" || $5 == \"/vol\" {print $5, ($7 ~ /shared:/) ? \"shared\" : \"private\"}' /proc/self/mountinfo");
    b.config["linux"]["rootfsPropagation"] = "rprivate".into();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/vol", "type": "bind", "source": src, "options": ["rbind", "rshared"]}));
    assert_eq!(ctx.run_ok(&b), "/ private\n/vol shared\n");
    // unbindable: set on the new root after pivot_root (the rootfs could not be bound from an
    // unbindable mount; runc 1.1.5 fails so).
    let mut b = ctx.bundle(
        "awk '$5 == \"/\" {print ($7 ~ /unbindable/) ? \"unbindable\" : $7}' /proc/self/mountinfo",
    );
    b.config["linux"]["rootfsPropagation"] = "unbindable".into();
    assert_eq!(ctx.run_ok(&b), "unbindable\n");
    Ok(())
}

pub fn symlinked_mount_destination_stays_inside() -> TestResult {
    let ctx = Ctx::new("escape")?;
    let mut b = ctx.bundle("ls -d /evil/target && grep -c ' /target ' /proc/self/mountinfo");
    // The image points a destination at the host's root; the mount must land in the rootfs.
    std::os::unix::fs::symlink("/../../../../..", b.rootfs().join("evil")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/evil/target", "type": "tmpfs", "source": "tmpfs"}));
    b.config["root"]["readonly"] = false.into();
    assert_eq!(ctx.run_ok(&b), "/evil/target\n1\n");
    assert!(
        !std::path::Path::new("/target").exists(),
        "nothing made on the host"
    );
    assert!(
        b.rootfs().join("target").is_dir(),
        "made inside the rootfs instead"
    );

    // A symlink to a host path that the rootfs lacks dangles inside it: that path is made inside
    // the rootfs, as runc makes it, and still nothing outside.
    let mut b = ctx.bundle("grep -c '/victim/target ' /proc/self/mountinfo");
    let victim = ctx.base.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, b.rootfs().join("evil")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/evil/target", "type": "tmpfs", "source": "tmpfs"}));
    let inside = victim.strip_prefix("/").unwrap().join("target");
    assert_eq!(ctx.run_ok(&b), "1\n");
    assert!(b.rootfs().join(&inside).is_dir(), "made inside the rootfs");
    assert!(
        !victim.join("target").exists(),
        "nothing created outside the rootfs"
    );

    // A rootfs whose /proc is a symlink is refused, in runc's words: procfs and sysfs go on an
    // ordinary directory only (they have been aimed at elsewhere through a symlink before).
    for (dir, fs) in [("proc", "proc"), ("sys", "sysfs")] {
        let b = ctx.bundle("true");
        let p = b.rootfs().join(dir);
        std::fs::remove_dir(&p).unwrap();
        std::fs::create_dir_all(b.rootfs().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink("/elsewhere", &p).unwrap();
        let (code, _, err) = ctx.run(&b, &ctx.id());
        assert_eq!(code, 1, "{err}");
        let want = format!("{fs}\\\" must be mounted on ordinary directory");
        assert!(err.contains(&want), "{err}");
    }
    Ok(())
}

pub fn readonly_root_masked_and_readonly_paths() -> TestResult {
    let ctx = Ctx::new("ro")?;
    let mut b = ctx.bundle(
        "touch /x 2>/dev/null && echo root-rw || echo root-ro; \
         cat /etc/secret; ls /etc/secretdir | wc -l; touch /etc/secretdir/x 2>/dev/null || echo masked-ro; \
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-rw || echo sys-ro; \
         touch /tmp/ok && echo tmp-rw",
    );
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    std::fs::write(b.rootfs().join("etc/secret"), "s3cret\n").unwrap();
    std::fs::create_dir_all(b.rootfs().join("etc/secretdir")).unwrap();
    std::fs::write(b.rootfs().join("etc/secretdir/key"), "k").unwrap();
    b.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([json!("/etc/secret"), json!("/etc/secretdir")]);
    let out = ctx.run_ok(&b);
    assert_eq!(out, "root-ro\n0\nmasked-ro\nsys-ro\ntmp-rw\n");
    Ok(())
}

pub fn devices_and_dev_layout() -> TestResult {
    let ctx = Ctx::new("dev")?;
    let mut b = ctx.bundle(
        "ls -ln /dev | grep '^c' | awk '{print $1, $3, $4, $5, $6, $NF}'; \
         for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done; echo x > /dev/mynull && echo wrote",
    );
    b.config["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 7, "gid": 8}]);
    b.config["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    let out = ctx.run_ok(&b);
    let expected = "\
crw-rw-rw- 0 0 1, 7 full
crw-rw-rw- 7 8 1, 3 mynull
crw-rw-rw- 0 0 1, 3 null
crw-rw-rw- 0 0 1, 8 random
crw-rw-rw- 0 0 5, 0 tty
crw-rw-rw- 0 0 1, 9 urandom
crw-rw-rw- 0 0 1, 5 zero
fd /proc/self/fd
stdin /proc/self/fd/0
stdout /proc/self/fd/1
stderr /proc/self/fd/2
ptmx pts/ptmx
wrote
";
    assert_eq!(out, expected);
    Ok(())
}

pub fn sysctls_apply_in_the_container() -> TestResult {
    let ctx = Ctx::new("sysctl")?;
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut b = ctx.bundle("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
    let new = if host_before.trim() == "1" { "0" } else { "1" };
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": new, "kernel.shmmni": "1234"});
    assert_eq!(ctx.run_ok(&b), format!("{new}\n1234\n"));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before,
        "the host is untouched"
    );
    // user.* belong to the user namespace: allowed with one of the container's own.
    let host_before = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    let mut b = ctx.bundle("cat /proc/sys/user/max_user_namespaces");
    b.config["linux"]["sysctl"] = json!({"user.max_user_namespaces": "7"});
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "linux.sysctl[\\\"user.max_user_namespaces\\\"]: needs a private user namespace"
        ),
        "{err}"
    );
    in_user_namespace(&mut b);
    assert_eq!(ctx.run_ok(&b), "7\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap(),
        host_before,
        "the host's count is untouched"
    );
    Ok(())
}

pub fn no_pivot() -> TestResult {
    let ctx = Ctx::new("nopivot")?;
    let b = ctx.bundle("ls /; echo $$");
    b.save();
    let id = ctx.id();
    let out = ctx
        .cmd()
        .args(["run", "--no-pivot", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.contains("bin\n") && s.contains("etc\n") && s.ends_with("\n1\n"),
        "{s}"
    );
    Ok(())
}

/// The clone(2) path that sparc64 takes (no clone3), forced here on a kernel that has clone3:
/// new user and pid namespaces, and the init in its cgroup.
pub fn clone_without_clone3() -> TestResult {
    let ctx = Ctx::new("clone2")?;
    let mut b = ctx.bundle(
        "echo pid=$$; cat /proc/self/uid_map; cat /proc/self/cgroup | grep -c chitin-tests",
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    std::fs::set_permissions(
        &ctx.base,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    b.save();
    let out = ctx
        .cmd()
        .env("CHITIN_FORCE_CLONE", "1")
        .args(["run", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .unwrap();
    let text = crate::support::stdout_ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "1000"]
    );
    assert!(
        lines[2].parse::<u32>().unwrap() >= 1,
        "in its cgroup: {text}"
    );
    Ok(())
}

/// No mount namespace of its own: the caller's (a private one made for the test, so that the
/// mounts left there go with it) or one joined by path. The container still sees its rootfs
/// (chroot, as runc does), an exec'd process too, the caller's "/" is not touched; and masks,
/// which runc refuses there, are refused in runc's words.
pub fn shared_or_joined_mount_namespace() -> TestResult {
    let ctx = Ctx::new("mntns")?;
    let runc = crate::differential::runc()?;
    let mut b = ctx.bundle("cat /marker; readlink /proc/self/ns/mnt");
    std::fs::write(b.rootfs().join("marker"), "in the rootfs\n").unwrap();
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "mount");
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.save();
    // In a fresh private mount namespace: its id, then what the container printed.
    let in_caller = |rt: &std::path::Path, root: &std::path::Path| {
        let script = format!(
            "readlink /proc/self/ns/mnt; {} --root {} run -b {} {}",
            rt.display(),
            root.display(),
            b.dir.display(),
            ctx.id()
        );
        let out = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert!(
            out.status.success() && lines.len() == 3,
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (lines[1].clone(), lines[0] == lines[2])
    };
    let runc_root = ctx.base.join("runc-state");
    let theirs = in_caller(&runc, &runc_root);
    let ours = in_caller(std::path::Path::new(crate::support::bin()), &ctx.root);
    assert_eq!(ours, ("in the rootfs".to_owned(), true));
    assert_eq!(ours, theirs, "as under runc");

    // A mount namespace joined by path: the container's mounts are made there; exec sees them.
    let holder = crate::support::Guard(
        std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "100"])
            .spawn()
            .unwrap(),
    );
    let path = format!("/proc/{}/ns/mnt", holder.0.id());
    crate::clients::wait_until(10, "the holder's namespace", || {
        std::fs::read_link(&path).ok() != std::fs::read_link("/proc/self/ns/mnt").ok()
    });
    b.config["process"]["args"] = json!(["sleep", "100"]);
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "mount", "path": path}));
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let out = ctx.exec_process(
        &id,
        &["sh", "-c", "cat /marker; readlink /proc/self/ns/mnt"],
    );
    let held = std::fs::read_link(&path).unwrap();
    assert_eq!(out, format!("in the rootfs\n{}\n", held.display()));
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(b.rootfs().to_str().unwrap()),
        "no mount of the container's in the caller's namespace"
    );
    ctx.chitin_ok(&["delete", "-f", &id]);

    // Masks need a mount namespace of the container's own.
    let mut b = ctx.bundle("true");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "mount");
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "linux.maskedPaths: unable to restrict sys entries without a private MNT namespace"
        ),
        "{err}"
    );
    Ok(())
}

/// Bind sources are opened by the runtime, with the caller's rights, before the user namespace
/// applies: a source behind a directory the container's root could not enter (0700, the host
/// root's) is bound all the same, with its flags, and what is mounted below it comes with rbind.
pub fn bind_sources_opened_before_the_user_namespace() -> TestResult {
    let ctx = Ctx::new("bindfd")?;
    let private = ctx.base.join("private");
    let vol = private.join("vol");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::write(vol.join("file"), "behind 0700\n").unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(
        &ctx.base,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut b =
        ctx.bundle("cat /data/file; touch /data/x 2>/dev/null || echo read-only; cat /ro/file");
    in_user_namespace(&mut b);
    // The mount points are the image's: the mapped root may not write in a rootfs of the host's.
    for d in ["data", "ro"] {
        std::fs::create_dir_all(b.rootfs().join(d)).unwrap();
    }
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/data", "type": "bind", "source": vol, "options": ["rbind", "ro"]}),
    );
    mounts.push(json!({"destination": "/ro", "type": "bind", "source": vol, "options": ["bind"]}));
    assert_eq!(ctx.run_ok(&b), "behind 0700\nread-only\nbehind 0700\n");

    // With --preserve-fds 4 and none of fds 3..6 open in the caller, the runtime's first fds
    // (its log, the state lock, a source's tree) would land there: none may reach the container.
    let script = "for f in 3 4 5 6; do [ -e /proc/self/fd/$f ] && echo leaked $f; done; echo done";
    b.config["process"]["args"] = json!(["sh", "-c", script]);
    b.save();
    let mut cmd = ctx.cmd();
    cmd.arg("--log").arg(ctx.base.join("log"));
    cmd.args(["run", "--preserve-fds", "4", "-b"])
        .arg(&b.dir)
        .arg(ctx.id());
    // SAFETY: close(2) in the child before it execs; nothing else runs there.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            for fd in 3..7 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{err}");
    Ok(())
}
