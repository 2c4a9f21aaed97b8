//! Podman (Debian's) with `--runtime` the runtime under test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::{need, ok, run, runtime, runtime_status, sandbox, wait_until};
use crate::harness::{Outcome, TestResult};

const IMAGE: &str = "localhost/chitin-busybox:it";

struct Podman {
    dir: PathBuf,
    parent: String,
}

fn podman() -> Result<&'static Podman, Outcome> {
    need(&["podman", "conmon"], "podman")?;
    static P: OnceLock<Podman> = OnceLock::new();
    Ok(P.get_or_init(|| {
        let sb = sandbox();
        let dir = sb.dir.join("podman");
        std::fs::create_dir_all(&dir).unwrap();
        // This machine lacks CAP_SYS_RESOURCE, so podman's default rlimits cannot be set.
        let manager = if super::systemd_mode() { "systemd" } else { "cgroupfs" };
        std::fs::write(
            dir.join("containers.conf"),
            format!("[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"{manager}\"\nevents_logger = \"file\"\n"),
        )
        .unwrap();
        let p = Podman {
            dir,
            parent: sb.cgroup_parent("podman"),
        };
        ok(p.podman().arg("import").arg(sb.image_tar()).arg(IMAGE));
        p
    }))
}

impl Podman {
    fn podman(&self) -> Command {
        let mut c = sandbox().cmd("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "overlay", "--runtime"])
            .arg(runtime())
            .arg("--runtime-flag")
            .arg(format!("root={}", self.runtime_root().display()));
        c
    }

    fn runtime_root(&self) -> PathBuf {
        self.dir.join("runtime")
    }

    fn run_flags(&self) -> Vec<String> {
        vec![
            "run".into(),
            "--network".into(),
            "none".into(),
            "--cgroup-parent".into(),
            self.parent.clone(),
        ]
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        ok(self.podman().args(["inspect", "-f", format, id]))
            .trim()
            .to_owned()
    }
}

pub fn run_exec_stop_pause_ps() -> TestResult {
    let p = podman()?;
    let r = run(p
        .podman()
        .args(p.run_flags())
        .args(["--rm", IMAGE, "sh", "-c"])
        .arg("echo hello from podman; grep '^Seccomp:' /proc/self/status; exit 6"));
    assert_eq!(r.code, 6, "{} {}", r.out, r.err);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines, ["hello from podman", "Seccomp:\t2"], "{}", r.out);

    let script = "trap 'echo got-term; exit 7' TERM; echo started; while :; do sleep 0.1; done";
    let id = ok(p
        .podman()
        .args(p.run_flags())
        .args(["-d", IMAGE, "sh", "-c", script]))
    .trim()
    .to_owned();
    wait_until(10, "the first line", || {
        run(p.podman().args(["logs", &id])).out == "started\n"
    });
    assert_eq!(runtime_status(&p.runtime_root(), &id), "running");
    // Its cgroup, seen from the host (in a cgroup namespace it sees "/").
    let pid = p.inspect(&id, "{{.State.Pid}}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let parent = sandbox().parent_dir("podman");
    assert!(cgroup.contains(&format!("{parent}/")), "{cgroup}");
    let ps = |id: &str| {
        ok(p.podman()
            .args(["ps", "-a", "--format", "{{.ID}} {{.Status}}"]))
        .lines()
        .find(|l| id.starts_with(l.split(' ').next().unwrap()))
        .unwrap_or("")
        .to_owned()
    };
    assert!(ps(&id).contains(" Up "), "{}", ps(&id));

    let r = run(p
        .podman()
        .args(["exec", "-u", "1000", &id, "sh", "-c"])
        .arg("echo $(id -u) $(cat /proc/1/cmdline | head -c 2); exit 3"));
    assert_eq!((r.code, r.out.as_str()), (3, "1000 sh\n"), "{}", r.err);

    ok(p.podman().args(["pause", &id]));
    assert!(ps(&id).ends_with(" Paused"), "{}", ps(&id));
    assert_eq!(runtime_status(&p.runtime_root(), &id), "paused");
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "paused");
    ok(p.podman().args(["unpause", &id]));
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "running");

    ok(p.podman().args(["stop", "-t", "10", &id]));
    assert_eq!(
        p.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 7"
    );
    assert!(ps(&id).contains("Exited (7)"), "{}", ps(&id));
    assert_eq!(ok(p.podman().args(["logs", &id])), "started\ngot-term\n");
    ok(p.podman().args(["rm", &id]));
    assert_eq!(ps(&id), "");
    Ok(())
}

/// `--read-only` and `--tmpfs` (Podman's tmpcopyup: the tmpfs starts with the image's files),
/// and a pod whose containers, with no network but the pod's, talk over 127.0.0.1.
pub fn read_only_tmpfs_and_a_pod() -> TestResult {
    let p = podman()?;
    let r = run(p.podman().args(p.run_flags()).args(["--rm", "--read-only", IMAGE, "sh", "-c"]).arg(
        "touch /x 2>/dev/null && echo root-writable; for d in /tmp /var/tmp /run; do touch $d/y && echo $d-writable; done",
    ));
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "/tmp-writable\n/var/tmp-writable\n/run-writable\n"),
        "{}",
        r.err
    );
    for how in ["--tmpfs=/etc", "--mount=type=tmpfs,destination=/etc"] {
        let r = run(p.podman().args(p.run_flags()).args(["--rm", how, IMAGE, "sh", "-c"]).arg(
            "grep -c '^svc:' /etc/passwd; grep ' /etc ' /proc/self/mounts | cut -d' ' -f3; touch /etc/new && echo etc-writable",
        ));
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "1\ntmpfs\netc-writable\n"),
            "{how}: {}",
            r.err
        );
    }

    let pod = format!("pod-{}", std::process::id());
    ok(p.podman()
        .args(["pod", "create", "--name", &pod, "--network", "none"])
        .args(["--cgroup-parent", &p.parent, "--infra-image", IMAGE])
        // The infra container only holds the pod's namespaces (podman splits the command at
        // spaces).
        .args(["--infra-command", "sleep 1000"]));
    let server = ok(p
        .podman()
        .args(["run", "-d", "--pod", &pod, IMAGE, "sh", "-c"])
        .arg("echo pong | nc -l -p 8080 127.0.0.1"))
    .trim()
    .to_owned();
    let r = (0..50)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            run(p.podman().args(["run", "--rm", "--pod", &pod, IMAGE, "sh", "-c"])
                .arg("ip -o link show lo | grep -o 'state [A-Z]*\\|LOOPBACK,UP'; nc 127.0.0.1 8080 </dev/null"))
        })
        .find(|r| r.out.contains("pong"));
    let r = r.expect("the pod's containers never talked over 127.0.0.1");
    assert!(r.out.contains("LOOPBACK,UP"), "{}", r.out);
    let _ = run(p.podman().args(["rm", "-f", &server]));
    ok(p.podman().args(["pod", "rm", "-f", "-t", "0", &pod]));
    Ok(())
}

/// A CDI device asked for by `podman run --annotation`, resolved by chitin: the node opens
/// within podman's device rules, with the spec's variable; without the annotation, neither.
pub fn cdi_device_by_annotation() -> TestResult {
    super::runtime_resolves_cdi()?;
    let p = podman()?;
    super::cdi_spec()?;
    let script = ["sh", "-c", super::CDI_SCRIPT];
    let out = ok(p
        .podman()
        .args(p.run_flags())
        .args(["--rm", "--annotation", super::CDI_ANNOTATION, IMAGE])
        .args(script));
    assert_eq!(out, "fuse-opened\nenv=spec-level\n");
    let out = ok(p
        .podman()
        .args(p.run_flags())
        .args(["--rm", IMAGE])
        .args(script));
    assert_eq!(out, "fuse-absent\nenv=\n");
    Ok(())
}

/// An interface handed over by a CDI device's netDevices, asked for by annotation: it is net1 in
/// the container, with its address, and gone from the namespace the engine runs in.
pub fn net_device_by_annotation() -> TestResult {
    super::runtime_resolves_cdi()?;
    let p = podman()?;
    let (annotation, want) = super::net_device("pm-vf0", 1);
    let out = ok(p
        .podman()
        .args(p.run_flags())
        .args(["--rm", "--annotation", &annotation, IMAGE])
        .args(["sh", "-c", super::NET_SCRIPT]));
    assert_eq!(out, want);
    assert!(!super::sandbox_has_interface("pm-vf0"));
    Ok(())
}

/// The hardened profile by `--annotation`: Podman's own profile lets a container make a user
/// namespace (it allows unshare), the hardened one does not; capabilities, no_new_privs and
/// /sys as the profile leaves them.
pub fn hardened_by_annotation() -> TestResult {
    super::runtime_has_security_profiles()?;
    let p = podman()?;
    let (key, value) = super::HARDENED;
    let run_with = |extra: &[&str]| {
        ok(p.podman()
            .args(p.run_flags())
            .arg("--rm")
            .args(extra)
            .args([IMAGE, "sh", "-c", super::HARDENED_SCRIPT]))
    };
    let out = run_with(&["--annotation", &format!("{key}={value}")]);
    assert_eq!(out, super::HARDENED_OUT);
    let out = run_with(&[]);
    assert!(
        out.contains("NoNewPrivs:\t0\nSeccomp_filters:\t1\nuserns-made\n"),
        "{out}"
    );
    Ok(())
}
