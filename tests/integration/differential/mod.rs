//! runc as the oracle: each bundle of a corpus runs under Debian's runc and under chitin, a probe
//! inside the container (probe.sh) reports what it sees as lines of data, and the two reports must
//! be equal but for the reasoned entries of `allow::ALLOWED`. The corpus is the bundles chitin and
//! runc generate, variants of them that set nearly every field (corpus.rs), and the config.json
//! files Docker, Podman and containerd wrote on this host, kept as fixtures (fixtures.rs).

mod allow;
mod corpus;
mod fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clients::which;
use crate::harness::{Outcome, TestResult, skip};
use crate::support::{Ctx, Guard, bin};

pub const PROBE: &str = include_str!("probe.sh");

/// Makes the part of a case's config that depends on the bundle's path.
pub type Prepare = Box<dyn Fn(&Path) -> Value>;

/// One bundle of the corpus: its config (root.path and process.args are the runner's), the
/// flags of `run`, and whether it has a terminal (then it runs detached, on a console socket).
pub struct Case {
    pub name: String,
    pub config: Value,
    /// The runtime's global flags (before the command).
    pub global: Vec<&'static str>,
    pub flags: Vec<&'static str>,
    /// Changes to the config made for each runtime's run, given the bundle.
    pub prepare: Option<Prepare>,
    /// Processes holding namespaces the config joins, for as long as the case runs.
    pub holders: Vec<fixtures::Holder>,
    /// Symlinks the image holds: their path in the rootfs and their target.
    pub links: Vec<(&'static str, &'static str)>,
    /// The runtime is started pinned to CPU 0, as a caller may pin it.
    pub pinned: bool,
}

impl Case {
    pub fn new(name: &str, config: Value) -> Case {
        Case {
            name: name.to_owned(),
            config,
            global: Vec::new(),
            flags: Vec::new(),
            prepare: None,
            holders: Vec::new(),
            links: Vec::new(),
            pinned: false,
        }
    }
}

/// What a runtime's container reported: the probe's lines, the exit status, and what the hooks
/// saw; or the runtime's refusal.
type Report = Vec<String>;

/// Debian's runc, the oracle; a test without it is skipped.
pub fn runc() -> Result<PathBuf, Outcome> {
    match which("runc") {
        Some(p) => Ok(p),
        None => skip("needs runc (Debian's runc), the oracle"),
    }
}

/// Runs every case under both runtimes; fails listing every case whose reports differ beyond
/// the allow-list. `min_cases` guards against a corpus that lost its cases.
pub fn check(ctx: &Ctx, cases: Vec<Case>, min_cases: usize) -> TestResult {
    let runc = runc()?;
    assert!(cases.len() >= min_cases, "only {} cases", cases.len());
    let host = allow::host();
    let mut failures = Vec::new();
    let mut used = vec![false; allow::ALLOWED.len()];
    for case in &cases {
        let id = ctx.id();
        let bundle = ctx.base.join(format!("bundle-{}", case.name));
        // The same bundle for both, its rootfs made anew for each: a runtime makes mount points.
        make_rootfs(case, &bundle);
        let theirs = run_case(&runc, &ctx.base.join("runc-state"), case, &bundle, &id);
        make_rootfs(case, &bundle);
        let ours = run_case(Path::new(bin()), &ctx.root, case, &bundle, &id);
        let diff = if theirs.len() == 1 || ours.len() == 1 {
            // One runtime refused: its message says it all.
            vec![
                format!("- {}", theirs[theirs.len() - 1]),
                format!("+ {}", ours[ours.len() - 1]),
            ]
        } else {
            differences(&theirs, &ours)
        };
        let (allowed, left): (Vec<_>, Vec<_>) = diff.into_iter().partition(|d| {
            let by = allow::ALLOWED
                .iter()
                .position(|a| a.covers(&case.name, host, d));
            by.inspect(|&i| used[i] = true).is_some()
        });
        let pending = allow::PENDING.iter().find(|p| p.case_matches(&case.name));
        println!(
            "  {}: {} lines, {} differences allowed, {} left",
            case.name,
            ours.len(),
            allowed.len(),
            left.len()
        );
        match (pending, left.is_empty()) {
            (None, true) | (Some(_), false) => {}
            (Some(p), true) => failures.push(format!(
                "{}: listed as pending ({}) but now equal: take it off allow::PENDING",
                case.name, p.why
            )),
            (None, false) => failures.push(format!(
                "{}: chitin differs from runc (- runc, + chitin):\n    {}",
                case.name,
                left.join("\n    ")
            )),
        }
        let _ = std::fs::remove_dir_all(&bundle);
    }
    for (a, _) in allow::ALLOWED.iter().zip(&used).filter(|(_, u)| **u) {
        println!("  allowed: {}: {}", a.line, a.why);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

fn make_rootfs(case: &Case, bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    crate::support::make_rootfs(&rootfs);
    std::fs::write(rootfs.join("probe.sh"), PROBE).unwrap();
    for (path, target) in &case.links {
        std::os::unix::fs::symlink(target, rootfs.join(path)).unwrap();
    }
    // A user namespace's root owns the rootfs, as Docker arranges with --userns-remap.
    if let Some(host) = case.config["linux"]["uidMappings"][0]["hostID"].as_u64() {
        let st = Command::new("chown")
            .args(["-R", &format!("{host}:{host}")])
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// Lines in one report and not the other, as multisets, prefixed "- " (runc) or "+ " (chitin).
fn differences(theirs: &Report, ours: &Report) -> Vec<String> {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in theirs {
        *count.entry(l).or_default() -= 1;
    }
    for l in ours {
        *count.entry(l).or_default() += 1;
    }
    let mut out = Vec::new();
    for (l, n) in count {
        let sign = if n < 0 { "- " } else { "+ " };
        for _ in 0..n.abs() {
            out.push(format!("{sign}{l}"));
        }
    }
    out
}

fn run_case(rt: &Path, root: &Path, case: &Case, bundle: &Path, id: &str) -> Report {
    let mut config = case.config.clone();
    if let Some(prepare) = &case.prepare {
        config = merge(config, prepare(bundle));
    }
    config["root"]["path"] = bundle.join("rootfs").to_str().unwrap().into();
    // By absolute path: ctr's configs have no PATH, and runc then finds no bare "sh".
    config["process"]["args"] = serde_json::json!(["/bin/sh", "/probe.sh"]);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let hooks_dir = bundle.join("hooks");
    let _ = std::fs::remove_dir_all(&hooks_dir);
    std::fs::create_dir_all(&hooks_dir).unwrap();
    let terminal = config["process"]["terminal"].as_bool() == Some(true);
    let mut report = if terminal {
        run_on_console(rt, root, case, bundle, id)
    } else {
        run_foreground(rt, root, case, bundle, id)
    };
    report.extend(hook_reports(&hooks_dir, bundle));
    // Whatever is left (a refused create) must not keep the id from the next runtime.
    let _ = Command::new(rt)
        .arg("--root")
        .arg(root)
        .args(&case.global)
        .args(["delete", "-f", id])
        .stderr(Stdio::null())
        .status();
    report
}

/// Values of `b` replace those of `a`, recursively for objects.
fn merge(mut a: Value, b: Value) -> Value {
    match (a.as_object_mut(), b) {
        (Some(ao), Value::Object(bo)) => {
            for (k, v) in bo {
                let old = ao.remove(&k).unwrap_or(Value::Null);
                ao.insert(k, merge(old, v));
            }
            a
        }
        (_, b) => b,
    }
}

fn run_foreground(rt: &Path, root: &Path, case: &Case, bundle: &Path, id: &str) -> Report {
    let mut cmd = Command::new(rt);
    if case.pinned {
        crate::support::pin_to_cpu0(&mut cmd);
    }
    let out = cmd
        .arg("--root")
        .arg(root)
        .args(&case.global)
        .arg("run")
        .args(&case.flags)
        .arg("-b")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut report = lines(&String::from_utf8_lossy(&out.stdout));
    report.push(exit_line(out.status.code(), &out.stderr));
    report
}

/// The exit status, and for a runtime's own failure its message's last clause (the runtimes
/// word their errors differently; the status says whether it ran).
fn exit_line(code: Option<i32>, stderr: &[u8]) -> String {
    match code {
        Some(7) => "exit\t7 (the probe ran to its end)".to_owned(),
        c => format!(
            "exit\t{c:?}: {}",
            String::from_utf8_lossy(stderr).trim().replace('\n', " | ")
        ),
    }
}

fn lines(out: &str) -> Report {
    out.lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| l.contains('\t'))
        .collect()
}

/// A terminal case runs detached with chitin-recvtty on the console socket; recvtty's output is
/// what the container wrote to its terminal.
fn run_on_console(rt: &Path, root: &Path, case: &Case, bundle: &Path, id: &str) -> Report {
    let recvtty = match crate::terminal::recvtty() {
        Ok(p) => p,
        Err(_) => return vec!["exit\tno chitin-recvtty".to_owned()],
    };
    let sock = bundle.join("console.sock");
    let _ = std::fs::remove_file(&sock);
    let out_path = bundle.join("console.out");
    let helper = Command::new(recvtty)
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut helper = Guard(helper);
    crate::clients::wait_until(10, "the console socket", || sock.exists());
    let st = Command::new(rt)
        .arg("--root")
        .arg(root)
        .args(&case.global)
        .args(["run", "-d", "--console-socket"])
        .arg(&sock)
        .args(&case.flags)
        .arg("-b")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    if !st.status.success() {
        return vec![exit_line(st.status.code(), &st.stderr)];
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while helper.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{}: the console never closed",
            case.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut report = lines(&std::fs::read_to_string(&out_path).unwrap_or_default());
    report.push("exit\tdetached".to_owned());
    report
}

/// What the hooks of corpus::hooks wrote: their cwd and env, and the state on their stdin (as
/// sorted keys, the pid left out).
fn hook_reports(dir: &Path, bundle: &Path) -> Report {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // startContainer runs in the container: it writes in the rootfs.
    if let Ok(rd) = std::fs::read_dir(bundle.join("rootfs")) {
        files.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "hook")),
        );
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let phase = f.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let (head, state) = text.split_once("state=").unwrap_or((&text, ""));
        out.extend(head.lines().map(|l| format!("hook-{phase}\t{l}")));
        match serde_json::from_str::<Value>(state.trim()) {
            Ok(Value::Object(m)) => {
                for (k, v) in m {
                    let v = if k == "pid" {
                        format!("{}", v.as_i64().is_some_and(|p| p > 0))
                    } else {
                        v.to_string()
                    };
                    out.push(format!("hook-{phase}\tstate.{k}={v}"));
                }
            }
            _ => out.push(format!("hook-{phase}\tstate unreadable: {state:?}")),
        }
        let _ = std::fs::remove_file(&f);
    }
    out
}

pub fn generated_bundles() -> TestResult {
    let ctx = Ctx::new("diff")?;
    runc()?;
    check(&ctx, corpus::cases(&ctx), 8)
}

pub fn client_configs() -> TestResult {
    let ctx = Ctx::new("diffcl")?;
    runc()?;
    check(&ctx, fixtures::cases(&ctx), 15)
}

/// Under systemd, both runtimes with `--systemd-cgroup` and a scope for a path: runc's own spec
/// and the clients' configs that mount the cgroup filesystem each way.
pub fn under_systemd() -> TestResult {
    if !crate::support::systemd_booted() {
        return skip("systemd is not pid 1 here (tests/vm/run-systemd.sh boots a system with it)");
    }
    let ctx = Ctx::new("diffsd")?;
    let runc = runc()?;
    let spec = corpus::plain(corpus::runc_spec(&ctx, &runc));
    let mut cases = vec![Case::new("runc-spec", spec)];
    cases.extend(fixtures::cases(&ctx).into_iter().filter(|c| {
        [
            "docker-default",
            "docker-cgroupns-private",
            "podman-cgroupns-host",
        ]
        .contains(&c.name.as_str())
    }));
    for c in &mut cases {
        c.name = format!("systemd-{}", c.name);
        c.global = vec!["--systemd-cgroup"];
        c.config["linux"]["cgroupsPath"] = format!("machine-chitin.slice:diff:{}", c.name).into();
    }
    check(&ctx, cases, 4)
}

/// The shape of a JSON value: objects as their keys (each with its value's shape), arrays as
/// the shape of their first element, scalars as their type.
fn shape(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                shape(v, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(a) => match a.first() {
            Some(first) => shape(first, &format!("{at}[]"), out),
            None => out.push(format!("{at}\t[]")),
        },
        Value::Number(_) => out.push(format!("{at}\tnumber")),
        Value::String(_) => out.push(format!("{at}\tstring")),
        Value::Bool(_) => out.push(format!("{at}\tbool")),
        Value::Null => out.push(format!("{at}\tnull")),
    }
}

/// `events --stats` as runc prints it: field order, and the same keys and types throughout
/// (values differ: two containers).
pub fn events_as_runc_reports_them() -> TestResult {
    let ctx = Ctx::new("diffev")?;
    let runc = runc()?;
    let id = ctx.id();
    let bundle = ctx.base.join("bundle-events");
    let mut config = corpus::runc_spec(&ctx, &runc);
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["sleep", "100"]);
    config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    config["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 100_000_000}, "pids": {"limit": 50},
        "cpu": {"quota": 50000, "period": 100000}
    });
    let host = allow::host();
    let mut reports = Vec::new();
    for (rt, root) in [
        (runc.as_path(), ctx.base.join("runc-state")),
        (Path::new(bin()), ctx.root.clone()),
    ] {
        let case = Case::new("events", config.clone());
        make_rootfs(&case, &bundle);
        config["root"]["path"] = bundle.join("rootfs").to_str().unwrap().into();
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        let run = |args: &[&str]| {
            Command::new(rt)
                .arg("--root")
                .arg(&root)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        // Detached, the container keeps its stdio: nothing of ours to hold open.
        let st = Command::new(rt)
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "-b", bundle.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{} run -d", rt.display());
        let out = run(&["events", "--stats", &id]);
        let _ = run(&["delete", "-f", &id]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.starts_with(&format!("{{\"type\":\"stats\",\"id\":\"{id}\",\"data\":{{")),
            "{}: {text}",
            rt.display()
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut lines = Vec::new();
        shape(&v["data"], "data", &mut lines);
        // memory.stat's keys are the kernel's, the same for both; throttling counts are left
        // out while zero (Go's omitempty), and whether a container was throttled is timing.
        lines.retain(|l| {
            !l.starts_with("data.memory.raw.") && !l.starts_with("data.cpu.throttling.")
        });
        reports.push(lines);
    }
    let diff: Vec<String> = differences(&reports[0], &reports[1])
        .into_iter()
        .filter(|d| !allow::ALLOWED.iter().any(|a| a.covers("events", host, d)))
        .collect();
    assert!(
        diff.is_empty(),
        "events --stats differs (- runc, + chitin):\n{}",
        diff.join("\n")
    );
    assert!(reports[1].len() > 20, "{:?}", reports[1]);
    Ok(())
}
