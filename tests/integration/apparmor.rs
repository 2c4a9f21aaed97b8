//! AppArmor: a container and its exec'd processes confined by the profiles named in the config and
//! by `exec --apparmor`; refused, not ignored, where the kernel does not run AppArmor.

use std::process::Command;

use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::support::Ctx;

fn enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.starts_with(b"Y"))
}

pub fn refused_without_apparmor() -> TestResult {
    let ctx = Ctx::new("aa-off")?;
    if enabled() {
        return skip("this kernel runs AppArmor (apparmor::confines covers it)");
    }
    let mut b = ctx.bundle("true");
    b.config["process"]["apparmorProfile"] = json!("chitin-it");
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("process.apparmorProfile: AppArmor is not enabled in this kernel"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");

    let b = ctx.bundle("sleep 100");
    let id = ctx.id();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let out = ctx.chitin(&["exec", "--apparmor", "chitin-it", &id, "true"]);
    assert_eq!(out.status.code(), Some(255), "a failed exec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--apparmor: AppArmor is not enabled"), "{err}");
    Ok(())
}

/// Loads a profile that denies writes below /tmp/denied and allows the rest.
fn load(ctx: &Ctx, name: &str) {
    let text = format!(
        "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  capability,\n  \
         network,\n  signal,\n  ptrace,\n  mount,\n  umount,\n  pivot_root,\n  unix,\n  \
         deny /tmp/denied/** w,\n}}\n"
    );
    let path = ctx.base.join(format!("{name}.profile"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new("apparmor_parser")
        .args(["-r", "-K"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apparmor_parser: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn confines() -> TestResult {
    let ctx = Ctx::new("aa-on")?;
    if !enabled() {
        return skip("this kernel does not run AppArmor (the cgroup v2 VM's Debian kernel does)");
    }
    if crate::clients::which("apparmor_parser").is_none() {
        return skip("needs apparmor_parser (Debian's apparmor)");
    }
    if !std::path::Path::new("/sys/kernel/security/apparmor").exists() {
        return skip("securityfs is not mounted at /sys/kernel/security");
    }
    load(&ctx, "chitin-it-a");
    load(&ctx, "chitin-it-b");
    let probe = "cat /proc/self/attr/current; mkdir -p /tmp/denied 2>&1; \
                 touch /tmp/denied/x 2>&1; touch /tmp/ok && echo allowed";
    let mut b = ctx.bundle(&format!("{probe}; sleep 100"));
    b.config["process"]["apparmorProfile"] = json!("chitin-it-a");
    b.config["root"]["readonly"] = json!(false);
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    // The init's output goes nowhere with create; exec shows what the container is under.
    assert_eq!(ctx.chitin(&["start", &id]).status.code(), Some(0));
    let exec = |extra: &[&str]| {
        let out = ctx
            .cmd()
            .arg("exec")
            .args(extra)
            .args([&id, "sh", "-c", probe])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pid = ctx.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/attr/current")).unwrap(),
        "chitin-it-a (enforce)\n",
        "the init"
    );
    let out = exec(&[]);
    assert!(
        out.starts_with("chitin-it-a (enforce)\n"),
        "exec gets the container's: {out}"
    );
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.ends_with("allowed\n"), "{out}");
    let out = exec(&["--apparmor", "chitin-it-b"]);
    assert!(out.starts_with("chitin-it-b (enforce)\n"), "{out}");
    // containerd execs with --process: a process.json without a profile gets the container's.
    assert_eq!(
        ctx.exec_process(&id, &["cat", "/proc/self/attr/current"]),
        "chitin-it-a (enforce)\n"
    );

    crate::escapes::lsm_label_refuses_an_impostor_proc(
        &ctx,
        |c| c["process"]["apparmorProfile"] = json!("chitin-it-a"),
        &["apparmor/exec", "exec"],
    );
    Ok(())
}
