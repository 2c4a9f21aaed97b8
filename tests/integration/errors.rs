//! Bad input: one clear line naming the problem, exit status 1, and nothing left behind.

use serde_json::{Value, json};

use crate::harness::TestResult;
use crate::support::{Ctx, cgroup_dirs, mount_count, processes_with};

/// The error as the user reads it: the text log format escapes quotes.
fn unescape(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).replace("\\\"", "\"")
}

/// Runs `create` on a bundle made bad by `spoil`; checks the message and that nothing remains.
fn refused(ctx: &Ctx, spoil: impl FnOnce(&mut Value, &std::path::Path), expect: &str) {
    let mut b = ctx.bundle("true");
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    let rootfs = b.rootfs();
    spoil(&mut b.config, &rootfs);
    b.save();
    let mounts = mount_count();
    let (code, err) = ctx.create(&b, &id, &[]);
    let err = err.replace("\\\"", "\"");
    assert_eq!(code, 1, "{expect}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert!(!ctx.root.join(&id).exists(), "{expect}: state dir left");
    for d in cgroup_dirs(&format!("/chitin-tests/{id}")) {
        assert!(!d.exists(), "{expect}: cgroup {} left", d.display());
    }
    assert_eq!(mount_count(), mounts, "{expect}: mounts left");
    assert!(processes_with(&id).is_empty(), "{expect}: process left");
}

pub fn bad_configs() -> TestResult {
    let ctx = Ctx::new("bad")?;
    refused(
        &ctx,
        |c, _| c["process"]["user"]["uid"] = "root".into(),
        "process.user.uid: invalid type: string \"root\"",
    );
    refused(
        &ctx,
        |c, _| c["ociVersion"] = "2.0.0".into(),
        "ociVersion: 2.0.0",
    );
    refused(
        &ctx,
        |c, _| c["mounts"][1]["destination"] = "dev".into(),
        "mounts[1].destination: \"dev\" is not an absolute path",
    );
    refused(
        &ctx,
        |c, _| c["process"]["cwd"] = "home".into(),
        "process.cwd",
    );
    refused(
        &ctx,
        |c, _| c["process"]["user"]["username"] = "ghost".into(),
        "process.user.username: no user \"ghost\"",
    );
    refused(
        &ctx,
        |c, _| c["root"]["path"] = "nowhere".into(),
        "root.path",
    );
    refused(
        &ctx,
        |c, _| c["hooks"] = json!({"poststop": [{"path": "rel/hook"}]}),
        "hooks.poststop[0].path",
    );
    refused(
        &ctx,
        |c, _| c["linux"]["namespaces"][0] = json!({"type": "pid", "path": "ns/pid"}),
        "linux.namespaces[0].path",
    );
    refused(
        &ctx,
        |c, _| c["windows"] = json!({"layerFolders": ["C:\\layers"]}),
        "windows: chitin is a Linux runtime",
    );
    refused(
        &ctx,
        |c, _| c["mounts"][0]["options"] = json!(["tmpcopyup"]),
        "mounts[0].options: tmpcopyup is for tmpfs mounts",
    );
    refused(
        &ctx,
        |c, _| c["mounts"] = json!("nope"),
        "mounts: invalid type",
    );
    // Found only by the init, after the mounts: still nothing left behind.
    refused(
        &ctx,
        |c, _| c["process"]["args"] = json!(["no-such-program"]),
        "\"no-such-program\": executable file not found in $PATH",
    );
    refused(
        &ctx,
        |_, rootfs| std::fs::remove_file(rootfs.join("bin/sh")).unwrap(),
        "\"sh\": executable file not found",
    );
    Ok(())
}

pub fn bad_bundles_and_json() -> TestResult {
    let ctx = Ctx::new("badb")?;
    let out = ctx
        .cmd()
        .args(["create", "-b", "/nonexistent/bundle", "x1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bundle /nonexistent/bundle: No such file")
    );

    let b = ctx.bundle("true");
    std::fs::write(b.dir.join("config.json"), "{\"ociVersion\": \"1.0.0\", ").unwrap();
    let out = ctx
        .cmd()
        .args(["create", "-b"])
        .arg(&b.dir)
        .arg("x2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("EOF while parsing"),
        "{err}"
    );
    assert!(!ctx.root.join("x2").exists());
    Ok(())
}

pub fn ids_and_signals() -> TestResult {
    let ctx = Ctx::new("ids")?;
    let b = ctx.bundle("sleep 100");
    b.save();
    let id = ctx.id();
    assert_eq!(ctx.create(&b, &id, &[]).0, 0);
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"));
    assert_eq!(
        ctx.state(&id)["status"],
        "created",
        "the first container is untouched"
    );

    let out = ctx.chitin(&["kill", &id, "SIGNOPE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(unescape(&out.stderr).contains("unknown signal \"SIGNOPE\""));
    for cmd in [
        vec!["start", "ghost"],
        vec!["state", "ghost"],
        vec!["kill", "ghost"],
        vec!["delete", "ghost"],
    ] {
        let out = ctx.chitin(&cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(
            unescape(&out.stderr).contains("container \"ghost\" does not exist"),
            "{cmd:?}: {}",
            unescape(&out.stderr)
        );
    }
    let out = ctx.chitin(&["create", "-b", ".", "bad/id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid container id"));
    // A created container is deleted without --force (runc does the same).
    assert!(ctx.chitin(&["delete", &id]).status.success());
    assert!(processes_with(&id).is_empty());
    Ok(())
}

pub fn refused_flags() -> TestResult {
    let ctx = Ctx::new("flags")?;
    // A systemd-form path without --systemd-cgroup is refused before anything is made.
    let mut b = ctx.bundle("true");
    b.config["linux"]["cgroupsPath"] = json!("system.slice:x:y");
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("linux.cgroupsPath") && err.contains("--systemd-cgroup"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists());
    let out = ctx.chitin(&["--rootless", "maybe", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--rootless: ")
            && err.contains("maybe")
            && err.contains("is not true, false or auto"),
        "{err}"
    );
    Ok(())
}

/// A key the runtime-spec does not have is ignored with a warning naming it, as runc logs it.
pub fn unknown_keys_are_warned_of() -> TestResult {
    let ctx = Ctx::new("unknownkey")?;
    let mut b = ctx.bundle("echo ran");
    b.config["futureSection"] = json!({"x": 1});
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(
        unescape(err.as_bytes()).contains("unknown key \"futureSection\" ignored"),
        "{err}"
    );
    Ok(())
}
