//! Rootless mode: chitin run by an ordinary user, who gets a user namespace of its own. These
//! add a user and subordinate ids, so they run only in a VM that says it may
//! (CHITIN_VM_USERS=1, tests/vm/run-systemd.sh); on the host they skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use serde_json::{Value, json};

use crate::harness::{TestResult, skip};
use crate::support::{Ctx, bin};

const USER: &str = "chitin-rl";
const UID: u32 = 1500;
/// The user's subordinate ids, in /etc/subuid and /etc/subgid.
const SUB: (u32, u32) = (200000, 65536);

/// `program` run as user `uid` (and its group), with no supplementary groups.
pub fn as_user(uid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    let (u, g) = (format!("--reuid={uid}"), format!("--regid={uid}"));
    c.args([&u, &g, "--clear-groups", "--"]).arg(program);
    c
}

/// The test user: its passwd and group lines and subordinate ranges, added once.
fn test_user() -> TestResult {
    if std::env::var_os("CHITIN_VM_USERS").is_none() {
        return skip(
            "adds a user and subordinate ids: only in a VM that allows it (CHITIN_VM_USERS)",
        );
    }
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let add = |file: &str, line: String| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
                std::fs::write(file, format!("{text}{line}\n")).unwrap();
            }
        };
        add("/etc/passwd", format!("{USER}:x:{UID}:{UID}::/tmp:/bin/sh"));
        add("/etc/group", format!("{USER}:x:{UID}:"));
        // PAM's account check (user@.service's) wants a shadow entry: a locked password.
        add("/etc/shadow", format!("{USER}:*:19000:0:99999:7:::"));
        add("/etc/subuid", format!("{USER}:{}:{}", SUB.0, SUB.1));
        add("/etc/subgid", format!("{USER}:{}:{}", SUB.0, SUB.1));
    });
    Ok(())
}

/// The user's view: its runtime directory (XDG_RUNTIME_DIR) and a bundle it owns, whose config
/// `chitin spec --rootless` wrote as that user.
struct Rootless {
    ctx: Ctx,
    xdg: PathBuf,
    bundle: PathBuf,
}

impl Rootless {
    fn new(tag: &str, script: &str) -> Result<Rootless, crate::harness::Outcome> {
        test_user()?;
        let ctx = Ctx::new(tag)?;
        let xdg = ctx.base.join("xdg");
        std::fs::create_dir_all(&xdg).unwrap();
        let b = ctx.bundle(script);
        for d in [&ctx.base, &b.dir] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        for d in [&xdg, &b.dir] {
            std::os::unix::fs::chown(d, Some(UID), Some(UID)).unwrap();
        }
        std::fs::remove_file(b.dir.join("config.json")).unwrap();
        let r = Rootless {
            ctx,
            xdg,
            bundle: b.dir,
        };
        r.ok(&["spec", "--rootless", "-b", r.bundle.to_str().unwrap()]);
        r.edit(|c| {
            c["process"]["terminal"] = false.into();
            c["process"]["args"] = json!(["sh", "-c", script]);
        });
        Ok(r)
    }

    /// The bundle and its rootfs the user's own (an image it unpacked).
    fn own_rootfs(&self) {
        let owner = format!("{UID}:{UID}");
        crate::clients::ok(Command::new("chown").args(["-R", &owner]).arg(&self.bundle));
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        let path = self.bundle.join("config.json");
        let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f(&mut c);
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    /// chitin as the user, with its XDG_RUNTIME_DIR (None: without one).
    fn cmd(&self, xdg: Option<&Path>) -> Command {
        let mut c = as_user(UID, bin());
        c.env_remove("XDG_RUNTIME_DIR").stdin(Stdio::null());
        if let Some(x) = xdg {
            c.env("XDG_RUNTIME_DIR", x);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(Some(&self.xdg)).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        crate::support::stdout_ok(&out)
    }

    /// The state directories under the user's default root.
    fn states(&self) -> Vec<String> {
        std::fs::read_dir(self.xdg.join("chitin"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// create, start, exec, kill and delete as the user, with no --root: the state goes to
/// $XDG_RUNTIME_DIR/chitin. Inside, the user is root through a map of its own uid alone (so
/// setgroups is denied); the runtime warns that it has no delegated cgroup.
pub fn lifecycle_as_an_ordinary_user() -> TestResult {
    let r = Rootless::new("rootless", "sleep 300")?;
    let id = r.ctx.id();
    let b = r.bundle.to_str().unwrap();
    // The init keeps the stdio it is given: stderr to a file, which create's exit does not wait on.
    let err_path = r.ctx.base.join("create.err");
    let status = r
        .cmd(Some(&r.xdg))
        .args(["create", "-b", b, &id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("rootless: no delegated cgroup"), "{err}");
    assert_eq!(r.states(), std::slice::from_ref(&id));
    r.ok(&["start", &id]);
    let state: Value = serde_json::from_str(&r.ok(&["state", &id])).unwrap();
    assert_eq!(state["status"], "running");
    let seen = r.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map /proc/self/setgroups",
    ]);
    let seen: Vec<Vec<&str>> = seen
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(seen, [vec!["0"], vec!["0", "1500", "1"], vec!["deny"]]);
    // Without a cgroup of its own, what needs one says so.
    let out = r.run(&["pause", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("has no cgroup of its own"),
        "{err}"
    );
    r.ok(&["kill", &id, "KILL"]);
    let stopped = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        r.ok(&["state", &id]).contains("\"stopped\"")
    });
    assert!(stopped, "the init did not stop");
    r.ok(&["delete", &id]);
    assert!(r.states().is_empty(), "{:?}", r.states());
    Ok(())
}

/// A cgroup v2 subtree delegated to the user, as systemd's user manager delegates one (here by
/// hand: the directory and its cgroup.procs, cgroup.subtree_control and cgroup.threads are the
/// user's), with the runtime started in a leaf of it: the container's cgroup is made there,
/// with its limits, and nothing is warned of.
pub fn delegated_cgroup_takes_the_limits() -> TestResult {
    let r = Rootless::new("rootless-cg", "sleep 300")?;
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .unwrap()
        .filesystem_type()
        == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
    if !v2 {
        return skip("needs a pure cgroup v2 host, where a subtree can be delegated");
    }
    let name = format!("chitin-rl-{}", std::process::id());
    let top = Path::new("/sys/fs/cgroup").join(&name);
    let leaf = top.join("runtime");
    std::fs::create_dir_all(&leaf).unwrap();
    let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory +pids");
    for f in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        std::os::unix::fs::chown(top.join(f), Some(UID), Some(UID)).unwrap();
    }
    for f in ["", "cgroup.procs"] {
        std::os::unix::fs::chown(leaf.join(f), Some(UID), Some(UID)).unwrap();
    }
    r.edit(|c| {
        c["linux"]["cgroupsPath"] = format!("/{name}/ctr").into();
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 40}});
    });
    // create from the delegated leaf (stderr to a file: the init keeps it), then read the
    // container's cgroup from here.
    let id = r.ctx.id();
    let err_path = r.ctx.base.join("create.err");
    let user = r.cmd(Some(&r.xdg));
    let status = Command::new("sh")
        .args(["-c", r#"echo $$ > "$0" && exec "$@""#])
        .arg(leaf.join("cgroup.procs"))
        .arg(user.get_program())
        .args(user.get_args())
        .env("XDG_RUNTIME_DIR", &r.xdg)
        .args(["create", "-b", r.bundle.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    let read = |f: &str| std::fs::read_to_string(top.join("ctr").join(f)).unwrap_or_default();
    let seen = (read("memory.max"), read("pids.max"), read("cgroup.procs"));
    let _ = r.run(&["delete", "-f", &id]);
    let _ = std::fs::remove_dir(&leaf);
    let _ = std::fs::remove_dir(&top);
    assert!(status.success(), "{err}");
    assert_eq!(
        (seen.0.as_str(), seen.1.as_str()),
        ("67108864\n", "40\n"),
        "{err}"
    );
    assert_eq!(
        seen.2.lines().count(),
        1,
        "the init in its cgroup: {seen:?}"
    );
    assert!(!err.contains("rootless:"), "{err}");
    Ok(())
}

/// `--systemd-cgroup` in rootless mode: the container's scope is made by the user's own systemd
/// (started here as user@1500.service, its session bus from dbus-user-session), below the
/// user's manager, with the limits, and stopped by delete.
pub fn systemd_driver_through_the_user_manager() -> TestResult {
    let r = Rootless::new("rootless-sd", "sleep 300")?;
    if !crate::support::systemd_booted() {
        return skip("needs systemd as pid 1, for the user's manager");
    }
    let manager = format!("user@{UID}.service");
    let started = crate::clients::run(Command::new("systemctl").args(["start", &manager]));
    if started.code != 0 {
        let log =
            crate::clients::run(Command::new("journalctl").args(["-u", &manager, "-n", "20"]));
        panic!("starting {manager}: {}{}", started.err, log.out);
    }
    let run = PathBuf::from(format!("/run/user/{UID}"));
    crate::clients::wait_until(30, "the user's session bus", || run.join("bus").exists());
    let id = r.ctx.id();
    r.edit(|c| {
        c["linux"]["cgroupsPath"] = format!(":chitin:{id}").into();
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 40}});
    });
    let err_path = r.ctx.base.join("create.err");
    let status = r
        .cmd(Some(&run))
        .args([
            "--systemd-cgroup",
            "create",
            "-b",
            r.bundle.to_str().unwrap(),
            &id,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    let scope = Path::new("/sys/fs/cgroup")
        .join(format!("user.slice/user-{UID}.slice/user@{UID}.service"))
        .join(format!("user.slice/chitin-{id}.scope"));
    let read = |f: &str| std::fs::read_to_string(scope.join(f)).unwrap_or_default();
    let seen = (read("memory.max"), read("pids.max"), read("cgroup.procs"));
    let delete = r
        .cmd(Some(&run))
        .args(["delete", "-f", &id])
        .output()
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(
        (seen.0.as_str(), seen.1.as_str()),
        ("67108864\n", "40\n"),
        "{err}"
    );
    assert_eq!(seen.2.lines().count(), 1, "the init in the scope: {seen:?}");
    assert!(!err.contains("rootless:"), "{err}");
    assert!(
        delete.status.success(),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    crate::clients::wait_until(10, "the scope to go", || !scope.exists());
    Ok(())
}

/// Maps beyond the user's own id, from its /etc/subuid and /etc/subgid ranges, written by
/// newuidmap and newgidmap: setgroups stays allowed, so supplementary groups work.
pub fn subordinate_ranges_through_newuidmap() -> TestResult {
    let r = Rootless::new(
        "rootless-sub",
        "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -G",
    )?;
    r.edit(|c| {
        let maps = json!([{"containerID": 0, "hostID": UID, "size": 1},
                          {"containerID": 1, "hostID": SUB.0, "size": SUB.1 - 1}]);
        c["linux"]["uidMappings"] = maps.clone();
        c["linux"]["gidMappings"] = maps;
        c["process"]["user"]["additionalGids"] = json!([1]);
    });
    let out = r.ok(&["run", "-b", r.bundle.to_str().unwrap(), &r.ctx.id()]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (one, sub) = (["0", "1500", "1"], ["1", "200000", "65535"]);
    assert_eq!(
        lines[..4],
        [one.to_vec(), sub.to_vec(), one.to_vec(), sub.to_vec()],
        "{out}"
    );
    assert_eq!(lines[4..], [vec!["allow"], vec!["0", "1"]], "{out}");
    Ok(())
}

/// What rootless mode cannot do fails before anything is made, in one line naming the field:
/// no XDG_RUNTIME_DIR (and no --root), host ids outside the user's subordinate ranges, a config
/// without a user namespace, a filesystem only root may mount, an idmapped mount.
pub fn rootless_refusals_are_clear() -> TestResult {
    let r = Rootless::new("rootless-bad", "true")?;
    let b = r.bundle.to_str().unwrap().to_owned();
    let out = r.cmd(None).args(["run", "-b", &b, "x"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("XDG_RUNTIME_DIR is not set"),
        "{err}"
    );
    let config = std::fs::read(r.bundle.join("config.json")).unwrap();
    let reset = || std::fs::write(r.bundle.join("config.json"), &config).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| {
                let maps = json!([{"containerID": 0, "hostID": UID, "size": 1},
                                  {"containerID": 1, "hostID": 300000, "size": 10}]);
                c["linux"]["uidMappings"] = maps;
            }),
            "linux.uidMappings[1]: host ids 300000-300009 are not chitin-rl's: /etc/subuid \
             gives chitin-rl 200000-265535",
        ),
        (
            Box::new(|c| {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "user");
                c["linux"]["uidMappings"] = Value::Null;
                c["linux"]["gidMappings"] = Value::Null;
            }),
            "linux.namespaces: rootless mode needs a user namespace",
        ),
        (
            Box::new(|c| {
                let m = json!({"destination": "/data", "type": "ext4", "source": "/dev/vdz"});
                c["mounts"].as_array_mut().unwrap().push(m);
            }),
            ".type: ext4 can be mounted only by root",
        ),
        (
            Box::new(|c| {
                let m = json!({"destination": "/data", "type": "bind", "source": "/tmp",
                               "options": ["rbind", "idmap"]});
                c["mounts"].as_array_mut().unwrap().push(m);
            }),
            "an idmapped mount needs chitin run as root",
        ),
    ];
    for (edit, want) in cases {
        reset();
        r.edit(edit);
        let out = r.run(&["run", "-b", &b, &r.ctx.id()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{want}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "want {want:?}: {err}");
        assert!(r.states().is_empty(), "state left for {want}");
    }
    Ok(())
}

/// Rootless Podman as the user, with chitin as its runtime (which it runs as root of the user
/// namespace it made from the user's subordinate ids): run, exec, stop, and --userns=keep-id.
pub fn podman_as_the_user() -> TestResult {
    crate::clients::need(&["podman", "conmon"], "podman")?;
    let r = Rootless::new("rootless-podman", "true")?;
    let home = r.ctx.base.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(UID), Some(UID)).unwrap();
    let conf = r.ctx.base.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n",
    )
    .unwrap();
    let rootfs = r.bundle.join("rootfs");
    let tar = r.ctx.base.join("image.tar");
    crate::clients::ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let podman = |args: &[&str]| {
        let mut c = as_user(UID, "podman");
        c.args(["--storage-driver", "overlay", "--runtime", bin()])
            .args(args)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &r.xdg)
            .env("CONTAINERS_CONF", &conf)
            .current_dir(&home)
            .stdin(Stdio::null());
        crate::clients::run(&mut c)
    };
    let ok = |args: &[&str]| {
        let ran = podman(args);
        assert_eq!(ran.code, 0, "podman {args:?}: {}{}", ran.out, ran.err);
        ran.out
    };
    const IMAGE: &str = "localhost/chitin-rl:it";
    ok(&["import", tar.to_str().unwrap(), IMAGE]);
    let run = ["run", "--rm", "--network", "none"];
    let out = ok(&[
        &run[..],
        &[IMAGE, "sh", "-c", "id -u; cat /proc/self/uid_map"],
    ]
    .concat());
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{out}");
    assert_eq!(lines[1], ["0", "1500", "1"], "{out}");
    assert_eq!(lines[2], ["1", "200000", "65536"], "{out}");
    ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "300",
    ]);
    assert_eq!(
        ok(&["inspect", "-f", "{{.OCIRuntime}}", "c1"]).trim(),
        bin()
    );
    assert_eq!(ok(&["exec", "c1", "id", "-u"]).trim(), "0");
    ok(&["stop", "-t", "1", "c1"]);
    assert_eq!(
        ok(&["inspect", "-f", "{{.State.Status}}", "c1"]).trim(),
        "exited"
    );
    ok(&["rm", "c1"]);
    let keep = ok(&[&run[..], &["--userns=keep-id", IMAGE, "id", "-u"]].concat());
    assert_eq!(keep.trim(), "1500");
    Ok(())
}

/// CVE-2019-5736 in rootless mode, where it matters most: the runtime's binary is the user's
/// own, so the container's root (the user) could write it. The attack of escapes:: still finds
/// a sealed copy (an ordinary user cannot mount the binary read-only), and its write is refused.
pub fn escapes_the_user_s_own_binary_cannot_be_overwritten() -> TestResult {
    test_user()?;
    let ctx = Ctx::new("rootless-5736")?;
    let root = ctx.base.join("xdg/chitin");
    std::fs::create_dir_all(&root).unwrap();
    let user = crate::escapes::AsUser {
        uid: UID,
        root: &root,
    };
    let (opened, result) = crate::escapes::exe_attack(&ctx, None, Some(user));
    assert!(opened.contains("/memfd:chitin"), "{opened}");
    assert!(result.contains("Operation not permitted"), "{result}");
    Ok(())
}

/// CVE-2016-9962 in rootless mode: the init is dumpable while its maps are written (so that the
/// user may write them), and not after: at the start barrier the user cannot read its environ,
/// and can once it runs the container's program.
pub fn escapes_init_is_not_dumpable_at_the_barrier() -> TestResult {
    let r = Rootless::new("rootless-9962", "sleep 100")?;
    let id = r.ctx.id();
    let b = r.bundle.to_str().unwrap();
    let status = r
        .cmd(Some(&r.xdg))
        .args(["create", "-b", b, &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let state: Value = serde_json::from_str(&r.ok(&["state", &id])).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let probe = || {
        let mut c = as_user(UID, "cat");
        c.arg(format!("/proc/{pid}/environ"));
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (read, err) = probe();
    assert!(
        !read && err.contains("Permission denied"),
        "at the barrier: {err}"
    );
    r.ok(&["start", &id]);
    crate::clients::wait_until(10, "dumpable once it runs its program", || probe().0);
    r.ok(&["delete", "-f", &id]);
    Ok(())
}

/// CVE-2024-21626 in rootless mode: a host directory fd the caller leaves open (fd 9) reaches
/// neither the init nor an exec'd process, which here takes the path that joins the pid
/// namespace late and forks.
pub fn escapes_no_host_fd_reaches_the_container() -> TestResult {
    let list = "for f in /proc/$$/fd/*; do echo ${f##*/} $(readlink $f); done";
    let r = Rootless::new("rootless-21626", "sleep 100")?;
    let host_dir = std::fs::File::open(&r.ctx.base).unwrap();
    let with_fd_9 = |mut c: Command| {
        let fd = std::os::fd::AsFd::as_fd(&host_dir)
            .try_clone_to_owned()
            .unwrap();
        // SAFETY: dup2 in the child between fork and exec; it clears close-on-exec on fd 9.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                nix::unistd::dup2_raw(&fd, 9).map(drop).map_err(Into::into)
            });
        }
        c
    };
    let host = r.ctx.base.to_str().unwrap().to_owned();
    let check = |what: &str, out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout);
        let fds: Vec<u32> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            fds.len() >= 3 && fds.iter().all(|f| *f <= 3),
            "{what}: {text}"
        );
        assert!(!text.contains(&host), "{what}: a host path: {text}");
    };
    let id = r.ctx.id();
    let b = r.bundle.to_str().unwrap();
    let mut c = with_fd_9(r.cmd(Some(&r.xdg)));
    c.args(["run", "-d", "-b", b, &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    assert!(c.status().unwrap().success());
    let mut c = with_fd_9(r.cmd(Some(&r.xdg)));
    check(
        "exec",
        &c.args(["exec", &id, "sh", "-c", list]).output().unwrap(),
    );
    r.edit(|c| c["process"]["args"] = json!(["sh", "-c", list]));
    let mut c = with_fd_9(r.cmd(Some(&r.xdg)));
    check(
        "run",
        &c.args(["run", "-b", b, &r.ctx.id()]).output().unwrap(),
    );
    r.ok(&["delete", "-f", &id]);
    Ok(())
}

/// CVE-2024-45310 in rootless mode, where the init binds sources by path: a mount target through
/// a volume shared with the host, whose symlink climbs to the host's root and down to a
/// directory the user may write, is made inside the rootfs, never there.
pub fn escapes_mount_targets_stay_in_the_rootfs() -> TestResult {
    let marker = format!("chitin-45310-{}", std::process::id());
    let r = Rootless::new("rootless-45310", &format!("ls -d /vol/up/{marker}/made"))?;
    let (shared, host_side) = (r.ctx.base.join("shared"), r.ctx.base.join("host-side"));
    for d in [&shared, &host_side] {
        std::fs::create_dir_all(d).unwrap();
    }
    // From the host: up to "/", then down to host-side, which the user may write.
    let climb = format!("../../../../../../../..{}", host_side.display());
    std::os::unix::fs::symlink(climb, shared.join("up")).unwrap();
    let owner = format!("{UID}:{UID}");
    crate::clients::ok(
        Command::new("chown")
            .args(["-R", "-h", &owner])
            .arg(&shared)
            .arg(&host_side),
    );
    r.own_rootfs();
    r.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/vol", "type": "bind", "source": shared, "options": ["rbind"]}),
        );
        let made = format!("/vol/up/{marker}/made");
        mounts.push(json!({"destination": made, "type": "tmpfs", "source": "tmpfs"}));
        c["root"]["readonly"] = false.into();
    });
    let out = r.ok(&["run", "-b", r.bundle.to_str().unwrap(), &r.ctx.id()]);
    assert_eq!(out, format!("/vol/up/{marker}/made\n"));
    assert!(!host_side.join(&marker).exists(), "made on the host's side");
    let inside = r
        .bundle
        .join("rootfs")
        .join(host_side.strip_prefix("/").unwrap());
    assert!(
        inside.join(&marker).join("made").is_dir(),
        "made in the rootfs"
    );
    Ok(())
}

/// CVE-2019-16884 in rootless mode: an impostor over /proc/sys gets none of the runtime's
/// writes, and the sysctl (of the container's own ipc namespace) still applies.
pub fn escapes_proc_writes_need_a_real_procfs() -> TestResult {
    let r = Rootless::new(
        "rootless-16884",
        "ls /proc/sys | wc -l; cat /realproc/sys/kernel/shmmni",
    )?;
    r.own_rootfs();
    std::fs::create_dir_all(r.bundle.join("rootfs/realproc")).unwrap();
    r.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/realproc", "type": "proc", "source": "proc"}));
        c["root"]["readonly"] = false.into();
        c["linux"]["sysctl"] = json!({"kernel.shmmni": "1234"});
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
    });
    let out = r.ok(&["run", "-b", r.bundle.to_str().unwrap(), &r.ctx.id()]);
    assert_eq!(
        out, "0\n1234\n",
        "the impostor got nothing; the sysctl applied"
    );
    Ok(())
}

/// CVE-2025-31133 in rootless mode, where device nodes are bound rather than made: an image
/// whose /dev/null is a symlink into /proc, with the image's /dev kept. The bind of the host's
/// node and the masking bind land on a real node, never on the procfs file.
pub fn escapes_dev_null_symlink_redirects_nothing() -> TestResult {
    let r = Rootless::new(
        "rootless-31133",
        "cat /etc/secret; echo end-of-secret; stat -c '%n %F %t' /dev/null; \
         grep -c core_pattern /proc/self/mountinfo || true",
    )?;
    let rootfs = r.bundle.join("rootfs");
    std::fs::write(rootfs.join("etc/secret"), "top secret\n").unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", rootfs.join("dev/null")).unwrap();
    r.own_rootfs();
    r.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev");
        c["linux"]["maskedPaths"] = json!(["/etc/secret"]);
        c["root"]["readonly"] = false.into();
    });
    let out = r.ok(&["run", "-b", r.bundle.to_str().unwrap(), &r.ctx.id()]);
    assert_eq!(
        out,
        "end-of-secret\n/dev/null character special file 1\n0\n"
    );
    Ok(())
}
