//! The same bundle under runc (Debian's) and chitin: the container must see the same world.

use std::process::{Command, Stdio};

use crate::harness::{TestResult, skip};
use crate::support::Ctx;

const SCRIPT: &str = "hostname; id; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; ulimit -n; \
    ls -ln /dev | awk '{print $1,$5,$6,$NF}' | sort; awk '{print $5, $6, $9}' /proc/self/mountinfo | sort; \
    cat /proc/self/oom_score_adj; umask; pwd; cat /proc/1/comm; ls /proc/self/fd | wc -l; \
    touch /x 2>&1 | sed 's/.*: //'";

/// Cgroup mounts differ by design on a hybrid host: chitin also shows the unified hierarchy,
/// and keeps the tmpfs read-only as the config asks.
fn comparable(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.contains("/sys/fs/cgroup") && *l != "unified")
        .collect()
}

pub fn same_view_as_runc() -> TestResult {
    let ctx = Ctx::new("runc")?;
    let Ok(runc) = which("runc") else {
        return skip("runc is not installed");
    };
    let b = ctx.bundle(SCRIPT);
    b.save();
    let runc_root = ctx.base.join("runc-state");
    let id = ctx.id();
    let theirs = Command::new(&runc)
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        theirs.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let ours = ctx.run_ok(&b);
    let theirs = String::from_utf8(theirs.stdout).unwrap();
    assert_eq!(
        comparable(&ours),
        comparable(&theirs),
        "chitin:\n{ours}\nrunc:\n{theirs}"
    );
    assert!(ours.lines().count() > 40, "the script really ran: {ours}");
    Ok(())
}

/// One lifecycle, step by step, as a client sees it: exit codes, statuses and state keys.
fn lifecycle(
    runtime: &str,
    root: &std::path::Path,
    bundle: &std::path::Path,
    id: &str,
) -> Vec<String> {
    let run = |args: &[&str]| {
        let out = Command::new(runtime)
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let state = |log: &mut Vec<String>| {
        let (code, out) = run(&["state", id]);
        if code != 0 {
            log.push(format!("state exit {code}"));
            return;
        }
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        let pid_set = v["pid"].as_i64().unwrap_or(0) > 0;
        log.push(format!(
            "state {} pid>0={pid_set} keys={keys:?}",
            v["status"]
        ));
    };
    let mut log = Vec::new();
    let st = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["create", "-b"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    log.push(format!("create exit {:?}", st.code()));
    state(&mut log);
    for step in [
        &["start", id][..],
        &["start", id],
        &["delete", id],
        &["kill", id, "KILL"],
    ] {
        log.push(format!("{} exit {}", step[0], run(step).0));
        if step[0] == "kill" {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !run(&["state", id]).1.contains("stopped") && std::time::Instant::now() < end {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        state(&mut log);
    }
    log.push(format!("kill-stopped exit {}", run(&["kill", id]).0));
    let (code, out) = run(&["list", "-f", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    log.push(format!(
        "list exit {code} entries {}",
        list.as_array().map_or(0, |a| a.len())
    ));
    log.push(format!("delete exit {}", run(&["delete", id]).0));
    state(&mut log);
    log
}

pub fn same_lifecycle_as_runc() -> TestResult {
    let ctx = Ctx::new("runclife")?;
    let Ok(runc) = which("runc") else {
        return skip("runc is not installed");
    };
    let b = ctx.bundle("sleep 100");
    b.save();
    let theirs = lifecycle(
        runc.to_str().unwrap(),
        &ctx.base.join("runc-state"),
        &b.dir,
        &ctx.id(),
    );
    let ours = lifecycle(crate::support::bin(), &ctx.root, &b.dir, &ctx.id());
    assert_eq!(ours, theirs);
    assert!(
        ours.iter().any(|l| l.starts_with("state \"running\"")),
        "{ours:?}"
    );
    Ok(())
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
