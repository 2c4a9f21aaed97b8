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

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
