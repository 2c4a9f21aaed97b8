//! containerd (Debian's) and its ctr, with `--runc-binary` the runtime under test.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};

use super::{need, ok, run, runtime, runtime_status, sandbox, wait_until};
use crate::harness::{Outcome, TestResult, at_exit};

struct Containerd {
    dir: PathBuf,
    parent: String,
    daemon: Mutex<Option<Child>>,
}

fn containerd() -> Result<&'static Containerd, Outcome> {
    need(
        &["containerd", "ctr", "containerd-shim-runc-v2"],
        "containerd",
    )?;
    static C: OnceLock<Containerd> = OnceLock::new();
    Ok(C.get_or_init(|| {
        let sb = sandbox();
        let dir = sb.dir.join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        // No CRI plugin: it would set up CNI and image services this test does not use.
        let config = format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
            dir.join("root"),
            dir.join("state"),
            dir.join("sock"),
            dir.join("sock.ttrpc"),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut c = sb.cmd("containerd");
        c.arg("--config").arg(dir.join("config.toml"));
        let d = Containerd {
            daemon: Mutex::new(Some(sb.daemon(c, &dir.join("containerd.log")))),
            parent: sb.cgroup_parent("ctr"),
            dir,
        };
        wait_until(30, "containerd", || run(d.ctr().arg("version")).code == 0);
        at_exit(|| {
            if let Ok(d) = containerd() {
                if let Some(mut child) = d.daemon.lock().unwrap().take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        });
        d
    }))
}

impl Containerd {
    /// ctr in the sandbox (its FIFOs go under /run/containerd, the shim's side of them).
    fn ctr(&self) -> Command {
        let mut c = sandbox().cmd("ctr");
        c.arg("--address")
            .arg(self.dir.join("sock"))
            .args(["--namespace", "chitin-it"]);
        c
    }

    /// `ctr run` with the runtime under test, its state under our dir, the rootfs a directory.
    fn ctr_run(&self, id: &str, flags: &[&str], args: &[&str]) -> Command {
        let mut c = self.ctr();
        c.arg("run")
            .args(flags)
            .arg("--runc-binary")
            .arg(runtime())
            .arg("--runc-root")
            .arg(self.dir.join("runtime"))
            .arg("--cgroup");
        if super::systemd_mode() {
            c.arg(format!("{}:ctr:{id}", self.parent))
                .arg("--runc-systemd-cgroup");
        } else {
            c.arg(format!("{}/{id}", self.parent));
        }
        c.arg("--rootfs").arg(sandbox().rootfs()).arg(id).args(args);
        c
    }

    /// The shim gives the runtime `--runc-root` joined with the namespace.
    fn runtime_root(&self) -> PathBuf {
        self.dir.join("runtime/chitin-it")
    }

    fn task_status(&self, id: &str) -> String {
        let out = ok(self.ctr().args(["task", "ls"]));
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_owned()
    }
}

pub fn run_exec_kill_rm() -> TestResult {
    let c = containerd()?;
    // ctr gives a container no PATH, and runc then finds no "sh": commands are absolute here.
    // In the foreground: output and exit status; --rm removes it.
    let r = run(&mut c.ctr_run(
        "fg",
        &["--rm"],
        &[
            "/bin/sh",
            "-c",
            "echo hello from ctr; cat /proc/self/cgroup; exit 4",
        ],
    ));
    assert_eq!(r.code, 4, "{} {}", r.out, r.err);
    assert!(r.out.starts_with("hello from ctr\n"), "{}", r.out);
    let cgroup = sandbox().container_cgroup("ctr", "ctr", "fg");
    assert!(
        r.out.contains(&format!("{cgroup}\n")),
        "its cgroup: {}",
        r.out
    );
    assert!(!ok(c.ctr().args(["containers", "ls", "-q"])).contains("fg"));

    // Detached, then exec, kill and rm.
    let script = "trap 'echo term > /tmp/seen; exit 9' TERM; while :; do sleep 0.1; done";
    ok(&mut c.ctr_run("bg", &["-d"], &["/bin/sh", "-c", script]));
    assert_eq!(c.task_status("bg"), "RUNNING");
    assert_eq!(runtime_status(&c.runtime_root(), "bg"), "running");
    let r = run(c
        .ctr()
        .args(["task", "exec", "--exec-id", "e1", "bg"])
        .args(["/bin/sh", "-c", "cat /proc/1/cmdline; echo; exit 3"]));
    assert_eq!(r.code, 3, "{}", r.err);
    assert!(r.out.starts_with("/bin/sh\u{0}-c\u{0}trap"), "{}", r.out);

    ok(c.ctr().args(["task", "kill", "bg"]));
    wait_until(10, "the task to stop", || c.task_status("bg") == "STOPPED");
    // The rootfs is a plain directory here, so the trap's file is seen from outside.
    let seen = sandbox().rootfs().join("tmp/seen");
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "term\n");
    std::fs::remove_file(seen).unwrap();
    let r = run(c.ctr().args(["task", "rm", "bg"]));
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("exit code 9"),
        "the trap's status: {}",
        r.err
    );
    ok(c.ctr().args(["containers", "rm", "bg"]));
    assert!(!ok(c.ctr().args(["containers", "ls", "-q"])).contains("bg"));
    // The runtime forgot it too.
    let r = run(sandbox()
        .cmd(runtime())
        .arg("--root")
        .arg(c.runtime_root())
        .args(["state", "bg"]));
    assert_ne!(r.code, 0, "state after rm: {}", r.out);
    Ok(())
}

/// A CDI device asked for by `ctr run --annotation`, resolved by chitin under containerd's shim:
/// the node opens, with the spec's variable; without the annotation, neither.
pub fn cdi_device_by_annotation() -> TestResult {
    super::runtime_resolves_cdi()?;
    let c = containerd()?;
    super::cdi_spec()?;
    let script = ["/bin/sh", "-c", super::CDI_SCRIPT];
    let out = ok(&mut c.ctr_run(
        "cdi",
        &["--rm", "--annotation", super::CDI_ANNOTATION],
        &script,
    ));
    assert_eq!(out, "fuse-opened\nenv=spec-level\n");
    let out = ok(&mut c.ctr_run("nocdi", &["--rm"], &script));
    assert_eq!(out, "fuse-absent\nenv=\n");
    Ok(())
}

/// An interface handed over by a CDI device's netDevices, asked for by annotation: net1 in the
/// container, with its address, and gone from containerd's namespace.
pub fn net_device_by_annotation() -> TestResult {
    super::runtime_resolves_cdi()?;
    let c = containerd()?;
    let (annotation, want) = super::net_device("ctr-vf0", 2);
    let script = ["/bin/sh", "-c", super::NET_SCRIPT];
    let out = ok(&mut c.ctr_run("net", &["--rm", "--annotation", &annotation], &script));
    assert_eq!(out, want);
    assert!(!super::sandbox_has_interface("ctr-vf0"));
    Ok(())
}
