//! The six hook phases: order, where they run, the state on stdin, env, args, timeout, failures.

use serde_json::{Value, json};

use crate::harness::TestResult;
use crate::support::{Ctx, cgroup_dirs, processes_with};

/// A hook script that appends "<phase> <status> <pid-seen> <arg1> $HOOKENV" to a log file.
fn hook(log: &std::path::Path, phase: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("read -r s; st=$(echo \"$s\" | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/'); echo \"$1 $st $HOOKENV\" >> {}", log.display()), "hook", phase],
        "env": ["HOOKENV=set"]
    })
}

pub fn all_phases_in_order() -> TestResult {
    let ctx = Ctx::new("hooks")?;
    let log = ctx.base.join("hooks.log");
    let mut b = ctx.bundle("echo running >> /hostlog/hooks.log");
    let logdir = ctx.base.clone();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hostlog", "type": "bind", "source": logdir, "options": ["bind"]}),
    );
    // startContainer runs inside the container, so its path and log are the container's.
    let inside_log = std::path::Path::new("/hostlog/hooks.log");
    b.config["hooks"] = json!({
        "prestart": [hook(&log, "prestart")],
        "createRuntime": [hook(&log, "createRuntime")],
        "createContainer": [hook(&log, "createContainer")],
        "startContainer": [hook(inside_log, "startContainer")],
        "poststart": [hook(&log, "poststart")],
        "poststop": [hook(&log, "poststop")]
    });
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    assert_eq!(code, 0, "{out} {err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "prestart creating set");
    assert_eq!(lines[1], "createRuntime creating set");
    assert_eq!(lines[2], "createContainer creating set");
    assert_eq!(lines[3], "startContainer created set");
    // poststart and the process itself race; poststop is last.
    let mut middle = vec![lines[4], lines[5]];
    middle.sort();
    assert_eq!(middle, ["poststart running set", "running"]);
    assert_eq!(lines[6], "poststop stopped set");
    assert_eq!(lines.len(), 7);
    Ok(())
}

pub fn failing_hook_fails_create_and_cleans_up() -> TestResult {
    let ctx = Ctx::new("hookfail")?;
    let mut b = ctx.bundle("true");
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook says no >&2; exit 3"]}]});
    b.save();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("createRuntime hook /bin/sh: exit status 3: hook says no"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists());
    for d in cgroup_dirs(&format!("/chitin-tests/{id}")) {
        assert!(!d.exists(), "{}", d.display());
    }
    Ok(())
}

pub fn hook_timeout() -> TestResult {
    let ctx = Ctx::new("hooktime")?;
    let mut b = ctx.bundle("true");
    // A second duration unique to this run tells this hook from any other sleep on the host.
    let marker = format!("0.{}", std::process::id());
    b.config["hooks"] = json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30", marker], "timeout": 1}]});
    b.save();
    let id = ctx.id();
    let start = std::time::Instant::now();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(start.elapsed().as_secs() < 10);
    assert!(err.contains("timed out after 1s"));
    assert!(
        processes_with(&format!("sleep\u{0}30\u{0}{marker}")).is_empty(),
        "the hook was killed"
    );
    Ok(())
}

pub fn late_hook_failures() -> TestResult {
    let ctx = Ctx::new("hooklate")?;
    // A failing startContainer hook fails start, and the process never runs.
    let mut b = ctx.bundle("echo ran");
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("startContainer hook /bin/false"), "{err}");

    // Failing poststart and poststop hooks are warnings: the container runs and is removed.
    let mut b = ctx.bundle("echo ran");
    b.config["hooks"] =
        json!({"poststart": [{"path": "/bin/false"}], "poststop": [{"path": "/bin/false"}]});
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(
        err.contains("level=warning") && err.contains("poststart hook /bin/false"),
        "{err}"
    );
    assert!(err.contains("poststop hook /bin/false"), "{err}");
    assert!(!ctx.root.join(&id).exists());
    Ok(())
}

/// A hook that writes more than a pipe holds (64 KiB) to stdout and stderr does not hang
/// `create`; a failing one's message ends with the last of its output.
pub fn chatty_hooks() -> TestResult {
    let ctx = Ctx::new("hookchat")?;
    let mut b = ctx.bundle("echo ran");
    let chatter =
        "head -c 1048576 /dev/zero | tr '\\0' x; head -c 1048576 /dev/zero | tr '\\0' y >&2";
    b.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", chatter], "timeout": 20}]});
    let start = std::time::Instant::now();
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    // A createContainer hook (run by the init) that exits without reading a state larger than
    // a pipe holds: the init's write fails, and must not kill it.
    let mut quiet = ctx.bundle("echo ran");
    quiet.config["annotations"] = json!({"big": "x".repeat(80_000)});
    quiet.config["hooks"] = json!({"createContainer": [{"path": "/bin/true"}]});
    let (code, out, err) = ctx.run(&quiet, &ctx.id());
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    let failing = format!("{chatter}; echo last words >&2; exit 3");
    b.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", failing], "timeout": 20}]});
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 1);
    assert!(
        err.contains("exit status 3") && err.contains("last words"),
        "{}",
        &err[err.len().saturating_sub(300)..]
    );
    Ok(())
}
