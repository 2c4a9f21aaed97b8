//! Many containers at once, commands racing on one container, and long runs: nothing is corrupted
//! and nothing is left behind: no fd, mount, cgroup, state directory or process.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use crate::harness::TestResult;
use crate::support::{Ctx, cgroup_dirs, mount_count, processes_with};

/// What a leak would show in.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    /// The test process's own fds.
    fds: usize,
    /// Mounts in the host's namespace.
    mounts: usize,
    /// cgroup directories under chitin's default parent, in every hierarchy.
    cgroups: usize,
    /// Entries in the state root.
    states: usize,
}

fn footprint(ctx: &Ctx) -> Footprint {
    let count = |p: &Path| std::fs::read_dir(p).map_or(0, |d| d.count());
    let cgroups = cgroup_dirs("/chitin")
        .iter()
        .map(|d| {
            std::fs::read_dir(d).map_or(0, |rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .count()
            })
        })
        .sum();
    Footprint {
        fds: count(Path::new("/proc/self/fd")),
        mounts: mount_count(),
        cgroups,
        states: count(&ctx.root),
    }
}

/// Unreclaimable kernel memory (namespaces, mounts and cgroups live there), in KiB.
fn kernel_unreclaimable() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SUnreclaim:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// chitin with a time limit: a lock left held by a dead create would make it wait for ever.
fn bounded(ctx: &Ctx, args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .arg("10")
        .arg(crate::support::bin())
        .arg("--root")
        .arg(&ctx.root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// One create/start/delete cycle of a container that exits at once.
fn cycle(ctx: &Ctx, b: &crate::support::Bundle, id: &str) {
    // The init keeps the stdio it is given: nothing to wait on, errors to a file.
    let err = ctx.base.join(format!("{id}.err"));
    let ok = |args: &[&str]| {
        let st = ctx
            .cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "{args:?}: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    };
    ok(&["create", "-b", b.dir.to_str().unwrap(), id]);
    ok(&["start", id]);
    ok(&["delete", "-f", id]);
}

pub fn parallel_cycles_leak_nothing() -> TestResult {
    let ctx = Arc::new(Ctx::new("parallel")?);
    let b = Arc::new(ctx.bundle("exit 0"));
    b.save();
    let marker = format!("parallel-{}", std::process::id());
    let before = footprint(&ctx);
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let (ctx, b, id) = (ctx.clone(), b.clone(), format!("{marker}-{i}"));
            std::thread::spawn(move || cycle(&ctx, &b, &id))
        })
        .collect();
    for t in threads {
        t.join().expect("a cycle failed");
    }
    assert_eq!(footprint(&ctx), before, "50 parallel cycles left something");
    assert!(processes_with(&marker).is_empty());
    Ok(())
}

/// start against delete -f, and kill against delete -f, on one container at a time: whichever
/// wins, the loser fails cleanly or finds nothing to do, `state` tells the truth, and nothing is
/// left once the container is deleted.
pub fn racing_commands_on_one_container() -> TestResult {
    let ctx = Arc::new(Ctx::new("race")?);
    let b = ctx.bundle("sleep 100");
    b.save();
    let before = footprint(&ctx);
    let chitin = |ctx: &Ctx, args: Vec<String>| {
        let out = ctx
            .cmd()
            .args(&args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for round in 0..20 {
        let id = ctx.id();
        let (code, err) = ctx.create(&b, &id, &[]);
        assert_eq!(code, 0, "{err}");
        let first = if round % 2 == 0 { "start" } else { "kill" };
        if first == "kill" {
            assert_eq!(chitin(&ctx, vec!["start".into(), id.clone()]).0, Some(0));
        }
        let (c1, c2) = (ctx.clone(), ctx.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let a = std::thread::spawn(move || {
            let args = if first == "start" {
                vec!["start".into(), i1]
            } else {
                vec!["kill".into(), i1, "KILL".into()]
            };
            chitin(&c1, args)
        });
        let d = std::thread::spawn(move || chitin(&c2, vec!["delete".into(), "-f".into(), i2]));
        let (ra, rd) = (a.join().unwrap(), d.join().unwrap());
        assert_eq!(rd.0, Some(0), "delete -f always succeeds: {}", rd.1);
        // The loser may fail, with a message, never a crash.
        assert!(matches!(ra.0, Some(0) | Some(1)), "{first}: {ra:?}");
        let state = bounded(&ctx, &["state", &id]);
        assert!(!state.status.success(), "deleted, and state says so");
    }
    assert_eq!(footprint(&ctx), before, "the races left something");
    Ok(())
}

/// Create/start/delete again and again: the footprint stays flat, and so does the kernel's
/// unreclaimable memory. CHITIN_SOAK_CYCLES sets the count (tests/soak.sh runs 2,000).
pub fn soak() -> TestResult {
    let ctx = Ctx::new("soak")?;
    let cycles: usize = std::env::var("CHITIN_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let b = ctx.bundle("exit 0");
    b.save();
    // A first cycle warms caches that are not leaks.
    cycle(&ctx, &b, &ctx.id());
    let before = footprint(&ctx);
    let kmem_before = kernel_unreclaimable();
    let start = std::time::Instant::now();
    // A new id each time: what one container leaves (its cgroup, its state) would pile up.
    for _ in 0..cycles {
        cycle(&ctx, &b, &ctx.id());
    }
    let per_cycle = start.elapsed() / cycles as u32;
    assert_eq!(footprint(&ctx), before, "after {cycles} cycles");
    // The kernel frees namespaces and cgroups after an RCU grace period: let it settle. Leaking
    // a mount namespace or a cgroup per cycle would keep megabytes.
    let settle = std::time::Instant::now();
    let grown = loop {
        let grown = kernel_unreclaimable().saturating_sub(kmem_before);
        if grown < 8 * 1024 || settle.elapsed().as_secs() >= 15 {
            break grown;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    println!(
        "soak: {cycles} cycles, {per_cycle:?} each; unreclaimable kernel memory {grown:+} KiB after {:?}",
        settle.elapsed()
    );
    assert!(grown < 8 * 1024, "{grown} KiB more kernel memory");
    Ok(())
}

/// chitin SIGKILLed at each stage of create: at the calls a normal create makes, one after the
/// other, strace delivers SIGKILL (`inject=NAME:signal=KILL:when=N`; only the runtime is traced,
/// not the init it clones). Wherever it dies, `state` tells the truth (no container, or one whose
/// status matches its process) and `delete -f` leaves nothing behind.
pub fn killed_at_each_stage_of_create() -> TestResult {
    let ctx = Ctx::new("killed")?;
    if crate::clients::which("strace").is_none() {
        return crate::harness::skip("needs strace (Debian's strace)");
    }
    let b = ctx.bundle("sleep 100");
    b.save();
    let create = |id: &str, name: &str, n: usize| {
        let mut c = std::process::Command::new("strace");
        c.args(["-qq", "-o", "/dev/null", "-e"])
            .arg(format!("inject={name}:signal=KILL:when={n}"));
        c.arg(crate::support::bin())
            .arg("--root")
            .arg(&ctx.root)
            .args(["create", "-b", b.dir.to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    // The calls of one whole create, in order, each as (name, its n-th call).
    let trace = ctx.base.join("trace");
    let st = std::process::Command::new("strace")
        .args(["-qq", "-o"])
        .arg(&trace)
        .arg(crate::support::bin())
        .arg("--root")
        .arg(&ctx.root)
        .args(["create", "-b", b.dir.to_str().unwrap(), &ctx.id()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    for e in std::fs::read_dir(&ctx.root).unwrap().flatten() {
        assert!(
            ctx.chitin(&["delete", "-f", &e.file_name().to_string_lossy()])
                .status
                .success()
        );
    }
    let mut seen = std::collections::HashMap::new();
    let calls: Vec<(String, usize)> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter_map(|l| Some(l.split_once('(')?.0.to_owned()))
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|n| {
            let k = seen.entry(n.clone()).or_insert(0);
            *k += 1;
            (n, *k)
        })
        .collect();
    assert!(calls.len() > 50, "{} calls", calls.len());

    let before = footprint(&ctx);
    let mut killed = 0;
    for (name, n) in &calls {
        let id = ctx.id();
        let st = create(&id, name, *n).status().unwrap();
        killed += usize::from(st.code().is_none());
        let state = bounded(&ctx, &["state", &id]);
        if state.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
            let pid = v["pid"].as_i64().unwrap_or(0);
            let alive = pid > 0 && Path::new(&format!("/proc/{pid}")).exists();
            match v["status"].as_str().unwrap() {
                "created" => assert!(alive, "{name}#{n}: created, but no process"),
                "stopped" => assert!(!alive, "{name}#{n}: stopped, but {pid} lives"),
                s => panic!("{name}#{n}: {s} after its create died"),
            }
        } else {
            let err = String::from_utf8_lossy(&state.stderr);
            assert!(err.contains("does not exist"), "{name}#{n}: {err}");
        }
        let del = bounded(&ctx, &["delete", "-f", &id]);
        assert!(
            del.status.success(),
            "{name}#{n}: delete -f: {}",
            String::from_utf8_lossy(&del.stderr)
        );
        assert_eq!(footprint(&ctx), before, "{name}#{n}: left something");
        assert!(
            processes_with(&id).is_empty(),
            "{name}#{n}: a process is left"
        );
    }
    println!("killed at {killed} of {} calls", calls.len());
    assert!(killed * 2 > calls.len(), "the injection took");
    Ok(())
}

/// The init dies (SIGKILL from outside), before start and while running: `state` says stopped,
/// `start` refuses with a reason, and a plain `delete` removes everything.
pub fn init_dies() -> TestResult {
    let ctx = Ctx::new("initdies")?;
    let b = ctx.bundle("sleep 100");
    let before = footprint(&ctx);
    for running in [false, true] {
        let id = ctx.id();
        let (code, err) = ctx.create(&b, &id, &[]);
        assert_eq!(code, 0, "{err}");
        if running {
            assert!(ctx.chitin(&["start", &id]).status.success());
        }
        let pid = ctx.state(&id)["pid"].as_i64().unwrap() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ctx.state(&id)["status"] != "stopped" {
            assert!(std::time::Instant::now() < deadline, "state says stopped");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !running {
            let out = ctx.chitin(&["start", &id]);
            assert_eq!(out.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("stopped"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ctx.chitin_ok(&["delete", &id]);
    }
    assert_eq!(footprint(&ctx), before);
    Ok(())
}

/// A tmpfs mounted for one test, gone with it.
struct TmpMount(std::path::PathBuf);

impl TmpMount {
    fn new(at: &Path, options: &str) -> TmpMount {
        std::fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(options),
        )
        .unwrap();
        TmpMount(at.to_owned())
    }
}

impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The state directory's filesystem read-only, or full: create fails with the state path named,
/// and leaves no cgroup, process or mount; the containers already there stay as they are.
pub fn state_dir_unwritable_or_full() -> TestResult {
    let ctx = Ctx::new("statefs")?;
    let b = ctx.bundle("sleep 100");
    b.save();
    let try_create = |root: &Path, id: &str| {
        let err = ctx.base.join(format!("{id}.err"));
        let st = std::process::Command::new(crate::support::bin())
            .arg("--root")
            .arg(root)
            .args(["create", "-b", b.dir.to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        (st.code(), std::fs::read_to_string(&err).unwrap())
    };
    let before = footprint(&ctx);

    // Full: a tmpfs of 16 pages (64 KiB, or 1 MiB where pages are 64 KiB as on ppc64el), a
    // container in it, then filled to the last byte.
    let size = format!("size={}", 16 * crate::support::page_size());
    let full = TmpMount::new(&ctx.base.join("full"), &size);
    let keep = ctx.id();
    assert_eq!(try_create(&full.0, &keep).0, Some(0));
    let mut filler = std::fs::File::create(full.0.join("filler")).unwrap();
    while std::io::Write::write_all(&mut filler, &[0u8; 4096]).is_ok() {}
    let id = ctx.id();
    let (code, err) = try_create(&full.0, &id);
    assert_eq!(code, Some(1));
    assert!(err.contains("No space left on device"), "{err}");
    assert!(processes_with(&id).is_empty());
    assert!(
        !full.0.join(&id).exists(),
        "the failed create left its state directory"
    );
    drop(filler);
    std::fs::remove_file(full.0.join("filler")).unwrap();
    // The container made before is still whole.
    let state = state_in(&full.0, &keep);
    assert!(state.contains("\"status\": \"created\""), "{state}");
    let out = std::process::Command::new(crate::support::bin())
        .arg("--root")
        .arg(&full.0)
        .args(["delete", "-f", &keep])
        .output()
        .unwrap();
    assert!(out.status.success());
    drop(full);

    // Read-only.
    let ro = TmpMount::new(&ctx.base.join("ro"), "ro");
    let id = ctx.id();
    let (code, err) = try_create(&ro.0, &id);
    assert_eq!(code, Some(1));
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(processes_with(&id).is_empty());
    drop(ro);
    assert_eq!(footprint(&ctx), before);
    Ok(())
}

fn state_in(root: &Path, id: &str) -> String {
    let out = std::process::Command::new(crate::support::bin())
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
