//! Docker, containerd (ctr) and Podman driving the runtime under test, as their users drive them.
//!
//! The runtime is chitin unless CHITIN_CLIENT_RUNTIME names another ("runc", or a path): the same
//! scenarios passing with runc is what shows that they test what they claim. The daemons run with
//! private state in a mount namespace of their own (the sandbox), where /run and /var/lib are fresh
//! tmpfs mounts and /etc/containers a copy, so what the clients write there never reaches the host;
//! and in a network namespace of their own, so that their bridges, firewall rules and the veths
//! the netDevices tests hand over never touch the host's. Their containers' cgroups go under one
//! parent per client, removed at the end of the run.
//!
//! Where systemd is pid 1 the engines run in their systemd cgroup mode, as on the hosts they are
//! made for: dockerd's native.cgroupdriver=systemd, Podman's cgroup_manager "systemd" and ctr's
//! --runc-systemd-cgroup; their parents are slices then, and the sandbox keeps /run/dbus and
//! /run/systemd, through which they and the runtime reach systemd.

pub mod ctr;
pub mod docker;
pub mod docker_cdi;
pub mod docker_userns;
pub mod podman;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{Outcome, at_exit, skip};
use crate::support::{bin, cgroup_dirs, make_rootfs, prerequisites};

/// The runtime the clients are given: CHITIN_CLIENT_RUNTIME unset or "chitin" means the chitin
/// under test.
pub fn runtime() -> &'static Path {
    static RT: OnceLock<PathBuf> = OnceLock::new();
    RT.get_or_init(|| match std::env::var("CHITIN_CLIENT_RUNTIME") {
        Err(_) => PathBuf::from(bin()),
        Ok(name) if name == "chitin" => PathBuf::from(bin()),
        Ok(name) if !name.contains('/') => {
            which(&name).unwrap_or_else(|| panic!("CHITIN_CLIENT_RUNTIME={name}: not in PATH"))
        }
        Ok(path) => PathBuf::from(path),
    })
}

/// The engines' systemd cgroup mode (the module's comment), where systemd is pid 1.
pub fn systemd_mode() -> bool {
    crate::support::systemd_booted()
}

pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

/// Skips unless every program in `progs` is installed; `package` says where they come from.
pub fn need(progs: &[&str], package: &str) -> Result<(), Outcome> {
    prerequisites()?;
    match progs.iter().find(|p| which(p).is_none()) {
        Some(p) => skip(format!("needs {p} (Debian's {package})")),
        None => Ok(()),
    }
}

pub struct Sandbox {
    holder: Mutex<Option<Child>>,
    pid: u32,
    pub dir: PathBuf,
    /// cgroup parents made for the clients' containers, removed at the end.
    parents: Mutex<Vec<String>>,
}

/// The one sandbox of this run, started on first use.
pub fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        let sb = Sandbox::start();
        at_exit(|| sandbox().stop());
        sb
    })
}

impl Sandbox {
    fn start() -> Sandbox {
        let dir = std::env::temp_dir().join(format!("chitin-clients-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let etc = dir.join("etc-containers");
        fs::create_dir_all(&etc).unwrap();
        // Podman also keeps its locks in /dev/shm and temporary files in /var/tmp.
        let mut script = String::from("set -e; ip link set lo up; ");
        let keep = dir.join("keep");
        if systemd_mode() {
            for d in ["dbus", "systemd"] {
                script.push_str(&format!(
                    "mkdir -p {k}/{d}; mount --rbind /run/{d} {k}/{d}; ",
                    k = keep.display()
                ));
            }
        }
        script.push_str(
            "for d in /run /var/lib /var/tmp /dev/shm; do mount -t tmpfs tmpfs $d; done; ",
        );
        if systemd_mode() {
            for d in ["dbus", "systemd"] {
                script.push_str(&format!(
                    "mkdir /run/{d}; mount --move {k}/{d} /run/{d}; ",
                    k = keep.display()
                ));
            }
        }
        if let Ok(rd) = fs::read_dir("/etc/containers") {
            for e in rd.flatten().filter(|e| e.path().is_file()) {
                fs::copy(e.path(), etc.join(e.file_name())).unwrap();
            }
            script.push_str(&format!("mount --bind {} /etc/containers; ", etc.display()));
        }
        // The holder lives until its stdin closes: at the end of the run, or when the test
        // process dies.
        script.push_str("echo ready; exec cat >/dev/null");
        let mut holder = Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the sandbox did not start");
        Sandbox {
            pid: holder.id(),
            holder: Mutex::new(Some(holder)),
            dir,
            parents: Mutex::new(Vec::new()),
        }
    }

    /// `prog` run inside the sandbox's mount and network namespaces.
    pub fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-n"])
            .arg("--")
            .arg(prog)
            .stdin(Stdio::null());
        c
    }

    /// A daemon in the sandbox, its output in `log`; it dies with the test process.
    pub fn daemon(&self, mut c: Command, log: &Path) -> Child {
        let out = fs::File::create(log).unwrap();
        // SAFETY: prctl in the child between fork and exec touches no shared state.
        unsafe {
            c.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        c.stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting a daemon")
    }

    /// A cgroup parent for one client's containers: "/chitin-clients-<pid>-<name>", or in
    /// systemd mode the slice "chitinclients<pid>-<name>.slice" (systemd's to remove).
    pub fn cgroup_parent(&self, name: &str) -> String {
        let p = self.parents_of(name);
        if !systemd_mode() {
            self.parents.lock().unwrap().push(p.clone());
        }
        p
    }

    /// The cgroup parent of client `name`'s containers.
    pub fn parents_of(&self, name: &str) -> String {
        let pid = std::process::id();
        if systemd_mode() {
            format!("chitinclients{pid}-{name}.slice")
        } else {
            format!("/chitin-clients-{pid}-{name}")
        }
    }

    /// The directory of client `name`'s parent from each hierarchy's root: the slice's in
    /// systemd mode, where each '-' opens a level.
    pub fn parent_dir(&self, name: &str) -> String {
        let parent = self.parents_of(name);
        let Some(stem) = parent.strip_suffix(".slice") else {
            return parent;
        };
        let mut path = String::new();
        for (i, _) in stem.match_indices('-').chain([(stem.len(), "")]) {
            path.push_str(&format!("/{}.slice", &stem[..i]));
        }
        path
    }

    /// The cgroup of client `name`'s container `id`: in its parent, or in systemd mode the
    /// scope `prefix-id.scope` in its slice.
    pub fn container_cgroup(&self, name: &str, prefix: &str, id: &str) -> String {
        let dir = self.parent_dir(name);
        if systemd_mode() {
            format!("{dir}/{prefix}-{id}.scope")
        } else {
            format!("{dir}/{id}")
        }
    }

    fn mnt_ns(pid: &str) -> Option<PathBuf> {
        fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
    }

    /// Kills what is left in the sandbox (daemons, shims, conmon) and in the clients' cgroups,
    /// then removes those cgroups and the sandbox's files.
    fn stop(&self) {
        let ns = Self::mnt_ns(&self.pid.to_string());
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_ok_and(|p| p != self.pid)
                && ns.is_some()
                && Self::mnt_ns(&name) == ns
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(name.parse().unwrap()),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(mut h) = self.holder.lock().unwrap().take() {
            drop(h.stdin.take());
            let _ = h.wait();
        }
        for parent in self.parents.lock().unwrap().iter() {
            for d in cgroup_dirs(parent) {
                remove_cgroup_tree(&d);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// A tar of a busybox rootfs, for `docker import` and `podman import`.
    pub fn image_tar(&self) -> &'static Path {
        static TAR: OnceLock<PathBuf> = OnceLock::new();
        TAR.get_or_init(|| {
            let root = self.dir.join("image-rootfs");
            make_rootfs(&root);
            let tar = self.dir.join("busybox.tar");
            ok(Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("."));
            tar
        })
    }

    /// A plain rootfs directory (for `ctr run --rootfs`).
    pub fn rootfs(&self) -> &'static Path {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let root = self.dir.join("rootfs");
            make_rootfs(&root);
            root
        })
    }
}

/// Kills the processes of a cgroup tree and removes it, deepest first.
fn remove_cgroup_tree(d: &Path) {
    let Ok(rd) = fs::read_dir(d) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::remove_dir(d).is_err() && Instant::now() < deadline {
        for pid in fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Ran {
    pub code: i32,
    pub out: String,
    pub err: String,
}

fn ran(o: Output) -> Ran {
    Ran {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `c` to its end.
pub fn run(c: &mut Command) -> Ran {
    ran(c.output().unwrap_or_else(|e| panic!("{c:?}: {e}")))
}

/// Runs `c` and insists on success; returns its stdout.
pub fn ok(c: &mut Command) -> String {
    let r = run(c);
    assert_eq!(r.code, 0, "{c:?} failed: stdout={} stderr={}", r.out, r.err);
    r.out
}

/// Waits up to `secs` for `f` to hold.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The runtime's own view of a container: `<runtime> --root ROOT state ID`'s status. Run in the
/// sandbox, where the clients keep the runtime's state.
pub fn runtime_status(root: &Path, id: &str) -> String {
    let out = ok(sandbox()
        .cmd(runtime())
        .arg("--root")
        .arg(root)
        .args(["state", id]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["status"].as_str().unwrap_or_default().to_owned()
}

/// A value read from the container's cgroup files, as `cat` inside it sees them: the v1 file, or
/// the v2 one.
pub fn cgroup_read_script(v1: &str, v2: &str) -> String {
    format!("cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}")
}

/// The annotation a device plugin would write for the CDI device of `cdi_spec`.
pub const CDI_ANNOTATION: &str = "cdi.k8s.io/chitin-test_fuse=test.chitin.dev/dev=fuse";

/// What a container prints of that device: whether its node is there and opens (`<>` would make
/// a file where there is none), and the spec's variable.
pub const CDI_SCRIPT: &str = "if [ -c /dev/cdi-fuse ]; then (exec 3<>/dev/cdi-fuse) 2>/dev/null \
     && echo fuse-opened || echo fuse-denied; else echo fuse-absent; fi; echo env=$CDI_TEST";

/// Skips where the runtime is not chitin: runc reads no CDI annotations (the engines pass them
/// on without resolving them). Asked before a client is started for nothing.
pub fn runtime_resolves_cdi() -> Result<(), Outcome> {
    if runtime() != Path::new(bin()) {
        return skip("the runtime under test is not chitin: runc does not resolve CDI annotations");
    }
    Ok(())
}

/// Skips where the runtime is not chitin, which alone reads chitin's security profile.
pub fn runtime_has_security_profiles() -> Result<(), Outcome> {
    if runtime() != Path::new(bin()) {
        return skip("the runtime under test is not chitin: runc has no security profiles");
    }
    Ok(())
}

/// The annotation that asks for chitin's hardened profile.
pub const HARDENED: (&str, &str) = ("org.chitin.profile.security", "hardened");

/// What a container prints of the hardened profile's effects: its capabilities, no_new_privs,
/// filters, whether it can make a user namespace, and whether /sys is writable.
pub const HARDENED_SCRIPT: &str = "grep -E '^(CapEff|NoNewPrivs|Seccomp_filters)' /proc/self/status; \
     unshare -U true 2>/dev/null && echo userns-made || echo userns-refused; \
     touch /sys/x 2>/dev/null || echo sys-ro";

/// Under the hardened profile, from a client's default container: Docker's and Podman's default
/// capabilities narrowed to the profile's eight (0x4fb), no_new_privs, the client's filter and
/// the profile's, no user namespace, a read-only /sys.
pub const HARDENED_OUT: &str =
    "CapEff:\t00000000000004fb\nNoNewPrivs:\t1\nSeccomp_filters:\t2\nuserns-refused\nsys-ro\n";

/// A CDI spec in the sandbox's /run/cdi (CDI's dynamic directory, on the sandbox's own tmpfs)
/// with one device, test.chitin.dev/dev=fuse: a fuse node at /dev/cdi-fuse and a variable.
/// Skips where fuse does not open.
pub fn cdi_spec() -> Result<(), Outcome> {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_err()
    {
        return skip("/dev/fuse does not open on this host (no fuse driver)");
    }
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let sb = sandbox();
        let node = sb.dir.join("cdi-fuse");
        ok(Command::new("mknod").arg(&node).args(["c", "10", "229"]));
        let spec = format!(
            "cdiVersion: 0.5.0\nkind: test.chitin.dev/dev\ncontainerEdits:\n  env: [CDI_TEST=spec-level]\n\
             devices:\n- name: fuse\n  containerEdits:\n    deviceNodes:\n    - {{path: /dev/cdi-fuse, hostPath: {}, permissions: rw}}\n",
            node.display()
        );
        let file = sb.dir.join("chitin-test.yaml");
        fs::write(&file, spec).unwrap();
        ok(sb.cmd("mkdir").args(["-p", "/run/cdi"]));
        ok(sb.cmd("install").args(["-m", "644"]).arg(&file).arg("/run/cdi/"));
    });
    Ok(())
}

/// What a container prints of the interface a CDI device hands it: net1's IPv4 address.
pub const NET_SCRIPT: &str = "ip -o address show dev net1 | grep -o 'inet [0-9./]*'";

/// A veth pair in the sandbox's network namespace, `name` (with 10.9.`n`.1/24, up) and its peer,
/// and a CDI device test.chitin.dev/net=`name` in /run/cdi whose edits move `name` into the
/// container as net1. Returns the annotation that asks for it and the line NET_SCRIPT prints.
pub fn net_device(name: &str, n: u8) -> (String, String) {
    let sb = sandbox();
    ok(sb.cmd("sh").arg("-c").arg(format!(
        "ip link add {name} type veth peer name {name}p && ip address add 10.9.{n}.1/24 dev {name} \
         && ip link set {name} up"
    )));
    let spec = format!(
        "cdiVersion: 1.1.0\nkind: test.chitin.dev/net\ndevices:\n- name: {name}\n  containerEdits:\n    \
         netDevices: [{{hostInterfaceName: {name}, name: net1}}]\n"
    );
    let file = sb.dir.join(format!("chitin-net-{name}.yaml"));
    fs::write(&file, spec).unwrap();
    ok(sb.cmd("mkdir").args(["-p", "/run/cdi"]));
    ok(sb
        .cmd("install")
        .args(["-m", "644"])
        .arg(&file)
        .arg("/run/cdi/"));
    let annotation = format!("cdi.k8s.io/chitin-test_{name}=test.chitin.dev/net={name}");
    (annotation, format!("inet 10.9.{n}.1/24\n"))
}

/// Whether the sandbox's network namespace still has the interface `name`.
pub fn sandbox_has_interface(name: &str) -> bool {
    sandbox()
        .cmd("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
