//! dockerd (Debian's docker.io) with the runtime under test as its default runtime.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::{Sandbox, cgroup_read_script, need, ok, run, runtime, runtime_status, sandbox};
use crate::harness::{TestResult, at_exit};
use crate::support::cap_field;
use crate::tty::Tmux;

pub(super) const IMAGE: &str = "chitin-busybox:it";

pub struct Docker {
    pub(super) dir: PathBuf,
    daemon: Mutex<Option<Child>>,
}

/// The run's dockerd, started on first use; Err skips when docker.io is not installed.
pub(super) fn docker() -> Result<&'static Docker, crate::harness::Outcome> {
    need(
        &["dockerd", "containerd", "containerd-shim-runc-v2", "docker"],
        "docker.io",
    )?;
    static D: OnceLock<Docker> = OnceLock::new();
    Ok(D.get_or_init(|| {
        let d = Docker::start(sandbox(), "dockerd", "docker", &[]);
        at_exit(|| {
            if let Ok(d) = docker() {
                d.stop();
            }
        });
        d
    }))
}

impl Docker {
    /// `dockerd` (a path, or Debian's in PATH) with its state under the sandbox's `name`.
    pub(super) fn start(sb: &Sandbox, dockerd: &str, name: &str, extra: &[&str]) -> Docker {
        let dir = sb.dir.join(name);
        std::fs::create_dir_all(dir.join("cli")).unwrap();
        let config = serde_json::json!({
            "runtimes": {"under-test": {"path": runtime()}},
            "default-runtime": "under-test",
            // Else dockerd writes /etc/docker/key.json.
            "deprecated-key-path": dir.join("key.json"),
        });
        std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        let mut c = sb.cmd(dockerd);
        c.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("sock").display()))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args(["--containerd-namespace", "chitin-it"])
            .args(["--containerd-plugins-namespace", "chitin-it-plugins"])
            .arg("--cgroup-parent")
            .arg(sb.cgroup_parent(name))
            // No bridge, no iptables rules: nothing changes in the host's network.
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .arg("--ip-masq=false")
            .args(extra);
        if super::systemd_mode() {
            c.args(["--exec-opt", "native.cgroupdriver=systemd"]);
        }
        let d = Docker {
            daemon: Mutex::new(Some(sb.daemon(c, &dir.join("dockerd.log")))),
            dir,
        };
        let started = std::time::Instant::now();
        while run(d.cli().arg("version")).code != 0 {
            assert!(
                started.elapsed().as_secs() < 60,
                "dockerd did not start: {}",
                std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        ok(d.cli().arg("import").arg(sb.image_tar()).arg(IMAGE));
        d
    }

    pub(super) fn stop(&self) {
        let ids = run(self.cli().args(["ps", "-aq"])).out;
        for id in ids.split_whitespace() {
            let _ = run(self.cli().args(["rm", "-f", id]));
        }
        if let Some(mut child) = self.daemon.lock().unwrap().take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// The docker CLI of Debian's docker.io, talking to this daemon, its config kept here.
    pub(super) fn cli(&self) -> Command {
        let prog = if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let mut c = Command::new(prog);
        c.env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("sock").display()))
            .stdin(Stdio::null());
        c
    }

    /// The same, as a shell command line (for a terminal to run).
    fn cli_line(&self) -> String {
        let c = self.cli();
        let mut line = format!("DOCKER_CONFIG={}", self.dir.join("cli").display());
        for a in std::iter::once(c.get_program()).chain(c.get_args()) {
            line.push(' ');
            line.push_str(&a.to_string_lossy());
        }
        line
    }

    pub(super) fn inspect(&self, id: &str, format: &str) -> String {
        ok(self.cli().args(["inspect", "-f", format, id]))
            .trim()
            .to_owned()
    }

    /// Where the runtime keeps these containers' state (dockerd hands containerd's runc shim
    /// this root, whatever the runtime's name).
    fn runtime_root(&self) -> PathBuf {
        self.dir.join("exec/runtime-runc/chitin-it")
    }
}

pub fn run_in_the_foreground_with_options() -> TestResult {
    let d = docker()?;
    // The runtime in use is the one under test, and it reports the container to its own `state`.
    assert_eq!(
        ok(d.cli().args(["info", "-f", "{{.DefaultRuntime}}"])).trim(),
        "under-test"
    );
    let r = run(d.cli().args(["run", "--rm", "--name", "fg", IMAGE]).args([
        "sh",
        "-c",
        "echo hello from docker; exit 3",
    ]));
    assert_eq!(
        (r.code, r.out.as_str()),
        (3, "hello from docker\n"),
        "{}",
        r.err
    );
    assert!(
        !ok(d.cli().args(["ps", "-a", "--format", "{{.Names}}"]))
            .lines()
            .any(|n| n == "fg"),
        "--rm leaves no container"
    );

    let vol = sandbox().dir.join("docker-volume");
    std::fs::create_dir_all(&vol).unwrap();
    let script = format!(
        "echo $FOO $(id -u) $(id -g) $(pwd); touch /x 2>&1; grep CapEff /proc/self/status; \
         echo mem=$({}); echo cpu=$({}); echo pids=$({}); grep ' /scratch ' /proc/mounts; \
         echo from-container > /vol/out",
        cgroup_read_script("memory/memory.limit_in_bytes", "memory.max"),
        cgroup_read_script("cpu/cpu.cfs_quota_us", "cpu.max"),
        cgroup_read_script("pids/pids.max", "pids.max"),
    );
    let out = ok(d
        .cli()
        .args(["run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "--read-only"])
        .args(["--memory", "64m", "--cpus", "0.5", "--pids-limit", "20"])
        .args(["--tmpfs", "/scratch:size=1m", "-v"])
        .arg(format!("{}:/vol", vol.display()))
        .args(["--cap-drop", "ALL", "--cap-add", "NET_RAW", IMAGE])
        .args(["sh", "-c", &script]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "bar 0 0 /tmp", "{out}");
    assert!(lines[1].contains("Read-only file system"), "{out}");
    assert_eq!(
        cap_field(lines[2], "CapEff"),
        1 << 13,
        "only NET_RAW: {out}"
    );
    assert_eq!(lines[3], "mem=67108864", "{out}");
    assert!(
        lines[4] == "cpu=50000" || lines[4] == "cpu=50000 100000",
        "{out}"
    );
    assert_eq!(lines[5], "pids=20", "{out}");
    assert!(
        lines[6].starts_with("tmpfs /scratch tmpfs") && lines[6].contains("size=1024k"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(vol.join("out")).unwrap(),
        "from-container\n"
    );

    let out = ok(d
        .cli()
        .args(["run", "--rm", "-u", "1000:1000", IMAGE])
        .args(["sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{out}");
    assert_eq!(
        cap_field(lines[2], "CapEff"),
        0,
        "a non-root user has no effective caps"
    );

    // --device: the node is there and the device cgroup lets it open (tun answers EBADFD to a
    // read with no interface attached); without it, no node.
    let out = ok(d
        .cli()
        .args(["run", "--rm", "--device", "/dev/net/tun", IMAGE])
        .args([
            "sh",
            "-c",
            "ls -l /dev/net/tun; cat /dev/net/tun 2>&1; true",
        ]));
    assert!(out.starts_with("crw") && out.contains("10, 200"), "{out}");
    assert!(out.contains("File descriptor in bad state"), "{out}");
    let r = run(d.cli().args(["run", "--rm", IMAGE, "ls", "/dev/net/tun"]));
    assert_ne!(r.code, 0, "no tun without --device: {}", r.out);

    // stdin reaches the container, and its EOF ends it.
    let mut c = d.cli();
    c.args(["run", "--rm", "-i", IMAGE, "sh", "-c", "cat; echo eof-seen"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped line\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "piped line\neof-seen\n"
    );
    Ok(())
}

pub fn seccomp_profiles() -> TestResult {
    let d = docker()?;
    // Docker's default profile: filter mode, and unshare(CLONE_NEWUSER) refused (it needs
    // CAP_SYS_ADMIN there), which it is not without a profile.
    let probe = "grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1 && echo unshared; true";
    let out = ok(d.cli().args(["run", "--rm", IMAGE, "sh", "-c", probe]));
    assert!(out.starts_with("Seccomp:\t2\n"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let out = ok(d
        .cli()
        .args(["run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE])
        .args(["sh", "-c", probe]));
    assert!(out.starts_with("Seccomp:\t0\n"), "{out}");
    assert!(out.contains("unshared"), "{out}");
    // A profile of the user's: mkdir gets ENOSYS, the rest is allowed.
    let profile = sandbox().dir.join("docker-seccomp.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
    )
    .unwrap();
    let r = run(d
        .cli()
        .args(["run", "--rm", "--security-opt"])
        .arg(format!("seccomp={}", profile.display()))
        .args([IMAGE, "sh", "-c", "mkdir /tmp/d; echo after"]));
    assert!(r.err.contains("Function not implemented"), "{}", r.err);
    assert_eq!(r.out, "after\n");
    Ok(())
}

pub fn detached_lifecycle() -> TestResult {
    let d = docker()?;
    let script = "trap 'echo got-term; exit 7' TERM; echo started; while :; do sleep 0.1; done";
    let id = ok(d.cli().args(["run", "-d", IMAGE, "sh", "-c", script]))
        .trim()
        .to_owned();
    super::wait_until(10, "the container's first line", || {
        run(d.cli().args(["logs", &id])).out == "started\n"
    });
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    let pid: i32 = d.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap()
            .starts_with("sh\0-c\0trap")
    );
    assert_eq!(runtime_status(&d.runtime_root(), &id), "running");

    // stop: SIGTERM reaches the trap, the exit status is kept.
    ok(d.cli().args(["stop", "-t", "10", &id]));
    assert_eq!(
        d.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 7"
    );
    assert_eq!(ok(d.cli().args(["logs", &id])), "started\ngot-term\n");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    // restart: a new init.
    ok(d.cli().args(["restart", "-t", "10", &id]));
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    let pid2: i32 = d.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert_ne!(pid, pid2);

    // kill: SIGKILL; wait prints the status.
    ok(d.cli().args(["kill", &id]));
    assert_eq!(ok(d.cli().args(["wait", &id])).trim(), "137");
    assert_eq!(
        d.inspect(
            &id,
            "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}"
        ),
        "exited 137 false"
    );
    ok(d.cli().args(["rm", &id]));
    let r = run(d.cli().args(["inspect", &id]));
    assert_ne!(r.code, 0, "removed");
    Ok(())
}

pub fn exec_into_a_container() -> TestResult {
    let d = docker()?;
    let id = ok(d
        .cli()
        .args(["run", "-d", "-e", "IN=init", IMAGE, "sleep", "1000"]))
    .trim()
    .to_owned();
    // pid 1 is the container's init: the exec joined its pid namespace; the status passes out.
    let r = run(d
        .cli()
        .args(["exec", &id, "sh", "-c", "cat /proc/1/cmdline; echo; exit 3"]));
    assert_eq!(
        (r.code, r.out.as_str()),
        (3, "sleep\u{0}1000\u{0}\n"),
        "{}",
        r.err
    );
    let out = ok(d
        .cli()
        .args(["exec", "-u", "1000:1000", "-w", "/tmp", "-e", "X=1", &id])
        .args(["sh", "-c", "echo $(id -u) $(id -g) $(pwd) $X"]));
    assert_eq!(out, "1000 1000 /tmp 1\n");
    // The exec'd process is in the container's cgroup and under its seccomp filter.
    let out = ok(d.cli().args(["exec", &id, "sh", "-c"]).arg(
        "grep '^Seccomp:' /proc/self/status; \
         [ \"$(grep memory /proc/self/cgroup)\" = \"$(grep memory /proc/1/cgroup)\" ] && echo same-cgroup",
    ));
    assert_eq!(out, "Seccomp:\t2\nsame-cgroup\n");
    // -d: runs on after exec returns.
    ok(d.cli().args([
        "exec",
        "-d",
        &id,
        "sh",
        "-c",
        "sleep 0.3; echo done > /tmp/bg",
    ]));
    super::wait_until(10, "the detached exec's file", || {
        run(d.cli().args(["exec", &id, "cat", "/tmp/bg"])).out == "done\n"
    });
    ok(d.cli().args(["rm", "-f", &id]));
    Ok(())
}

/// `docker run -it` and `docker exec -it` in a real terminal (tmux): the size of the terminal
/// reaches the container, and follows a resize.
pub fn interactive_terminal() -> TestResult {
    let d = docker()?;
    super::need(&["tmux"], "tmux")?;
    let term = Tmux::new(&sandbox().dir.join("tmux-docker"));
    let cli = d.cli_line();
    term.start(
        91,
        27,
        &format!("{cli} run --rm -it --name tty {IMAGE} sh; echo exit=$?"),
    );
    term.wait_for("/ #");
    // The client sizes the terminal just after the start (with runc, a shell can see 0x0 first,
    // and busybox's stty then fails): wait for a size, as the exec below does.
    term.keys(
        "until stty -a 2>/dev/null | grep -q 'rows [1-9]'; do sleep 0.1; done; tty; stty size",
    );
    term.wait_for("27 91");
    assert!(term.screen().contains("/dev/pts/0"), "{}", term.screen());
    term.resize(77, 22);
    // The client passes the resize on asynchronously.
    term.keys("clear; while [ \"$(stty size)\" = '27 91' ]; do sleep 0.1; done; stty size");
    term.wait_for("22 77");
    // exec -it gets a terminal of its own, of its client's size.
    let id = d.inspect("tty", "{{.Id}}");
    let exec_term = Tmux::new(&sandbox().dir.join("tmux-docker-exec"));
    exec_term.start(
        60,
        20,
        // Docker 20.10 sizes an exec's terminal just after starting it: wait for that.
        &format!(
            "{cli} exec -it {id} sh -c 'until stty -a 2>/dev/null | grep -q \"rows [1-9]\"; do sleep 0.1; done; \
             tty; stty size; exit 5'; echo exit=$?"
        ),
    );
    exec_term.wait_for("exit=5");
    assert!(
        exec_term.screen().contains("/dev/pts/1\n20 60\n"),
        "{}",
        exec_term.screen()
    );
    // EOF at the prompt ends the shell, and so the container.
    term.key("C-d");
    term.wait_for("exit=0");
    Ok(())
}

pub fn pause_update_top_stats() -> TestResult {
    let d = docker()?;
    let id = ok(d.cli().args([
        "run",
        "-d",
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
    ]))
    .trim()
    .to_owned();
    let count = || {
        run(d.cli().args(["exec", &id, "cat", "/tmp/n"]))
            .out
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    super::wait_until(10, "the counter", || count() > 0);

    ok(d.cli().args(["pause", &id]));
    assert_eq!(
        d.inspect(&id, "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    assert_eq!(runtime_status(&d.runtime_root(), &id), "paused");
    let pid: i32 = d.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    let read = || std::fs::read_to_string(format!("/proc/{pid}/root/tmp/n")).unwrap();
    let frozen = read();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(read(), frozen, "no progress while paused");
    ok(d.cli().args(["unpause", &id]));
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    super::wait_until(10, "progress after unpause", || read() != frozen);

    ok(d.cli().args([
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--pids-limit",
        "50",
        &id,
    ]));
    let script = format!(
        "echo $({}) $({})",
        cgroup_read_script("memory/memory.limit_in_bytes", "memory.max"),
        cgroup_read_script("pids/pids.max", "pids.max")
    );
    assert_eq!(
        ok(d.cli().args(["exec", &id, "sh", "-c", &script])),
        "134217728 50\n"
    );
    ok(d.cli().args(["update", "--cpus", "0.25", &id]));
    let script = format!(
        "echo $({}) $({})",
        cgroup_read_script("cpu/cpu.cfs_quota_us", "cpu.max"),
        cgroup_read_script("memory/memory.limit_in_bytes", "memory.max"),
    );
    let out = ok(d.cli().args(["exec", &id, "sh", "-c", &script]));
    assert!(out.starts_with("25000"), "{out}");
    assert!(
        out.trim_end().ends_with("134217728"),
        "an update keeps what it does not name: {out}"
    );
    assert_eq!(d.inspect(&id, "{{.HostConfig.Memory}}"), "134217728");

    let top = ok(d.cli().args(["top", &id]));
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sh -c i=0"), "{top}");
    assert!(
        top.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&pid.to_string())),
        "{top}"
    );

    let stats = ok(d.cli().args([
        "stats",
        "--no-stream",
        "--format",
        "{{.ID}} {{.MemUsage}} {{.PIDs}}",
        &id,
    ]));
    let f: Vec<&str> = stats.split_whitespace().collect();
    assert!(id.starts_with(f[0]), "{stats}");
    assert_eq!(&f[2..4], ["/", "128MiB"], "{stats}");
    assert!(f[4].parse::<u32>().unwrap() >= 1, "{stats}");
    ok(d.cli().args(["rm", "-f", &id]));
    Ok(())
}

/// `docker stop` with a systemd image's stop signal (RTMIN+3) reaches the container's handler
/// instead of ending in SIGKILL; and a container that made a sub-cgroup of its own is removed
/// with it.
pub fn stop_signal_and_sub_cgroups() -> TestResult {
    let d = docker()?;
    let script = "trap 'echo got-rtmin3; exit 9' 37; echo started; while :; do sleep 0.1; done";
    let id = ok(d.cli().args([
        "run",
        "-d",
        "--stop-signal",
        "RTMIN+3",
        IMAGE,
        "sh",
        "-c",
        script,
    ]))
    .trim()
    .to_owned();
    super::wait_until(10, "the container's first line", || {
        run(d.cli().args(["logs", &id])).out == "started\n"
    });
    ok(d.cli().args(["stop", "-t", "10", &id]));
    assert_eq!(
        d.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 9"
    );
    assert_eq!(ok(d.cli().args(["logs", &id])), "started\ngot-rtmin3\n");
    ok(d.cli().args(["rm", &id]));

    // In a cgroup namespace, with CAP_SYS_ADMIN to make its cgroup mount writable (--privileged
    // would ask for capabilities this host's bounding set lacks), it moves itself to a
    // sub-cgroup (in the memory hierarchy on v1, the only one on v2). Docker's AppArmor profile,
    // where the kernel runs AppArmor, forbids that mount.
    let script = "d=/sys/fs/cgroup; [ -d $d/memory ] && d=$d/memory; mount -o remount,bind,rw $d && \
                  mkdir $d/sub && echo $$ > $d/sub/cgroup.procs && echo moved; sleep 1000";
    let id = ok(d.cli().args([
        "run",
        "-d",
        "--security-opt",
        "apparmor=unconfined",
        "--cap-add",
        "SYS_ADMIN",
        "--cgroupns",
        "private",
        IMAGE,
        "sh",
        "-c",
        script,
    ]))
    .trim()
    .to_owned();
    let logs = || {
        let r = run(d.cli().args(["logs", &id]));
        r.out + &r.err
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logs() != "moved\n" {
        assert!(std::time::Instant::now() < deadline, "{}", logs());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dirs: Vec<PathBuf> =
        crate::support::cgroup_dirs(&sandbox().container_cgroup("docker", "docker", &id));
    assert!(dirs.iter().any(|d| d.join("sub").is_dir()), "{dirs:?}");
    ok(d.cli().args(["rm", "-f", &id]));
    super::wait_until(10, "the cgroups gone", || dirs.iter().all(|d| !d.exists()));
    Ok(())
}
