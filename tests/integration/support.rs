//! Fixtures: a state root and bundles with a busybox rootfs in a temp dir, and the chitin binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use crate::harness::{Outcome, skip};

pub const BUSYBOX: &str = "/bin/busybox";

/// The binary under test: cargo's, or CHITIN_BIN where the tests run elsewhere (the VM).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("CHITIN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_chitin").to_owned())
    })
}

/// Root and a static busybox are what every container test needs.
pub fn prerequisites() -> Result<(), Outcome> {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root");
    }
    let Ok(bytes) = std::fs::read(BUSYBOX) else {
        return skip("needs busybox-static (/bin/busybox)");
    };
    if has_interpreter(&bytes) {
        return skip("/bin/busybox is dynamically linked; install busybox-static");
    }
    Ok(())
}

/// True for an ELF64 with a PT_INTERP header, i.e. one that needs a dynamic loader. The fields
/// are in the file's byte order (EI_DATA): big-endian on s390x and sparc64.
fn has_interpreter(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return true;
    }
    let big = elf[5] == 2;
    let int = |at: usize, len: usize| {
        let b = &elf[at..at + len];
        let fold = |v: u64, x: &u8| v << 8 | u64::from(*x);
        if big {
            b.iter().fold(0, fold)
        } else {
            b.iter().rev().fold(0, fold)
        }
    };
    let phoff = int(0x20, 8) as usize;
    let (size, count) = (int(0x36, 2) as usize, int(0x38, 2) as usize);
    (0..count).any(|i| phoff + i * size + 4 <= elf.len() && int(phoff + i * size, 4) == 3)
}

fn applets() -> &'static Vec<String> {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        let out = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    })
}

/// Makes a busybox rootfs at `dir`.
pub fn make_rootfs(dir: &Path) {
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for a in applets() {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(a));
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\nsvc:x:1000:1000::/tmp:/bin/sh\n").unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\nsvc:x:1000:\n",
    )
    .unwrap();
}

/// Starts `c` pinned to CPU 0, as a caller that pins its runtime would.
pub fn pin_to_cpu0(c: &mut Command) {
    // SAFETY: only sched_setaffinity runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(c, || {
            let mut cpu0 = nix::sched::CpuSet::new();
            cpu0.set(0)?;
            Ok(nix::sched::sched_setaffinity(
                nix::unistd::Pid::from_raw(0),
                &cpu0,
            )?)
        });
    }
}

/// The stdout of a command that must have succeeded; its stderr is the failure message if not.
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel's page size: 4 KiB on most, 64 KiB on Debian's ppc64el kernel.
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .expect("sysconf(_SC_PAGESIZE)") as u64
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Ctx {
    pub base: PathBuf,
    pub root: PathBuf,
    pub tag: String,
}

impl Ctx {
    pub fn new(tag: &str) -> Result<Ctx, Outcome> {
        prerequisites()?;
        let base = std::env::temp_dir().join(format!(
            "chitin-it-{}-{tag}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let root = base.join("state");
        Ok(Ctx {
            base,
            root,
            tag: tag.to_owned(),
        })
    }

    /// A fresh id, unique in this run.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.tag,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// A bundle with its own rootfs and chitin's default spec, no terminal, running `script`
    /// with sh, in the cgroup /chitin-tests/<id>.
    pub fn bundle(&self, script: &str) -> Bundle {
        let dir = self
            .base
            .join(format!("bundle-{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
        make_rootfs(&dir.join("rootfs"));
        let out = Command::new(bin())
            .args(["spec", "-b"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        Bundle { dir, config }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root").arg(&self.root).stdin(Stdio::null());
        c
    }

    pub fn chitin(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `exec --process FILE` (as containerd execs) of a process.json running `args` as root;
    /// returns its stdout.
    pub fn exec_process(&self, id: &str, args: &[&str]) -> String {
        let process = self.base.join(format!("process-{id}.json"));
        let json = serde_json::json!({"cwd": "/", "args": args,
                                      "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]});
        std::fs::write(&process, json.to_string()).unwrap();
        let out = self.chitin_ok(&["exec", "--process", process.to_str().unwrap(), id]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `chitin(args)`, which must succeed; its stderr is the failure message if not.
    pub fn chitin_ok(&self, args: &[&str]) -> Output {
        let out = self.chitin(args);
        assert!(
            out.status.success(),
            "chitin {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `create` with `extra` flags. The init keeps the stdio it is given until it exits, so
    /// stdout goes nowhere and stderr to a file. Returns (exit code, stderr).
    pub fn create(&self, b: &Bundle, id: &str, extra: &[&std::ffi::OsStr]) -> (i32, String) {
        self.create_with(&[], b, id, extra)
    }

    /// `create` after the global flags `global`.
    pub fn create_with(
        &self,
        global: &[&str],
        b: &Bundle,
        id: &str,
        extra: &[&std::ffi::OsStr],
    ) -> (i32, String) {
        b.save();
        let err_path = self.base.join(format!("create-{id}.err"));
        let err = std::fs::File::create(&err_path).unwrap();
        let st = self
            .cmd()
            .args(global)
            .arg("create")
            .args(extra)
            .arg("-b")
            .arg(&b.dir)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .unwrap();
        (
            st.code().unwrap_or(-1),
            std::fs::read_to_string(&err_path).unwrap(),
        )
    }

    /// `run -d`; returns the exit code.
    pub fn run_detached(&self, b: &Bundle, id: &str) -> i32 {
        b.save();
        let st = self
            .cmd()
            .args(["run", "-d", "-b"])
            .arg(&b.dir)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        st.code().unwrap_or(-1)
    }

    /// Runs the bundle in the foreground; returns (exit code, stdout, stderr).
    pub fn run(&self, b: &Bundle, id: &str) -> (i32, String, String) {
        b.save();
        let out = self
            .cmd()
            .args(["run", "-b"])
            .arg(&b.dir)
            .arg(id)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs and insists on success; returns stdout.
    pub fn run_ok(&self, b: &Bundle) -> String {
        let id = self.id();
        let (code, out, err) = self.run(b, &id);
        assert_eq!(code, 0, "run failed: stdout={out} stderr={err}");
        out
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.chitin(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let _ = self.chitin(&["delete", "-f", &e.file_name().to_string_lossy()]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
        // The tests' shared cgroup parent goes once it is empty.
        for d in cgroup_dirs("/chitin-tests") {
            let _ = std::fs::remove_dir(d);
        }
    }
}

pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn save(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// systemd runs as pid 1 here (sd_booted(3): it makes this directory).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The directories a container's cgroup would have, in every mounted hierarchy.
pub fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            matches!(fstype, "cgroup" | "cgroup2")
                .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
        })
        .map(|m| m.join(cgroups_path.trim_start_matches('/')))
        .collect()
}

pub fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

/// Processes whose command line mentions `needle` (for "nothing left behind").
pub fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Parses "Cap...:\t<hex>" from /proc/self/status text.
pub fn cap_field(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// A helper process (recvtty, a namespace holder), killed when the test ends, however it ends.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
