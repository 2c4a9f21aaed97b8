use super::*;

fn bundle(tag: &str, config: serde_json::Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chitin-plan-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(
        dir.join("rootfs/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nsvc:x:1001:1002::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    dir
}

fn base() -> serde_json::Value {
    let mut v = crate::commands::spec::default_spec(false);
    v["process"]["terminal"] = false.into();
    v
}

fn err(tag: &str, config: serde_json::Value) -> String {
    let b = bundle(tag, config);
    let e = Plan::load(&b, "c1", RunOptions::default())
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&b).unwrap();
    e
}

#[test]
fn the_default_spec_plans() {
    let b = bundle("ok", base());
    let p = Plan::load(&b, "c1", RunOptions::default()).unwrap();
    assert_eq!(p.process.args, vec!["sh"]);
    assert!(p.namespaces.is_new(NsKind::Pid) && p.namespaces.is_new(NsKind::Mount));
    assert_eq!(p.mounts.len(), 7);
    assert_eq!(p.devices.len(), 6, "default devices");
    assert_eq!(p.device_rules[0].v1_line(), "a");
    assert_eq!(p.cgroups_path, "/chitin/c1");
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn bad_inputs_name_the_field() {
    let mut c = base();
    c["process"]["user"]["uid"] = "root".into();
    let e = err("type", c);
    assert!(
        e.contains("process.user.uid") && e.contains("invalid type"),
        "{e}"
    );

    let mut c = base();
    c["ociVersion"] = "2.0.0".into();
    assert!(err("ver", c).contains("ociVersion"));

    let mut c = base();
    c["mounts"][0]["destination"] = "proc".into();
    assert!(err("rel", c).contains("mounts[0].destination"));

    let mut c = base();
    c["process"]["cwd"] = "tmp".into();
    assert!(err("cwd", c).contains("process.cwd"));

    let mut c = base();
    c["process"]["user"]["username"] = "nobody-here".into();
    let e = err("user", c);
    assert!(
        e.contains("process.user.username") && e.contains("nobody-here"),
        "{e}"
    );

    let mut c = base();
    c["root"]["path"] = "missing".into();
    assert!(err("root", c).contains("root.path"));

    let mut c = base();
    c["linux"]["sysctl"] = serde_json::json!({"kernel.panic": "1"});
    assert!(err("sysctl", c).contains("kernel.panic"));

    let mut c = base();
    c["hooks"] = serde_json::json!({"prestart": [{"path": "hook"}]});
    assert!(err("hook", c).contains("hooks.prestart[0].path"));

    let mut c = base();
    c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOWED"});
    let e = err("seccomp", c);
    assert!(
        e.contains("linux.seccomp.defaultAction") && e.contains("SCMP_ACT_ALLOWED"),
        "{e}"
    );

    let mut c = base();
    c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_SPARC64"]});
    let b = bundle("sparc", c);
    let p = Plan::load(&b, "c1", RunOptions::default()).unwrap();
    assert_eq!(
        p.seccomp.unwrap().archs,
        [chitin_arch::Arch::Sparc64],
        "chitin's own arch name is accepted"
    );
    std::fs::remove_dir_all(&b).unwrap();

    let b = std::env::temp_dir().join("chitin-plan-no-such-bundle");
    let e = Plan::load(&b, "c1", RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("bundle ") && e.contains("No such file"),
        "{e}"
    );

    let b = bundle("json", base());
    std::fs::write(b.join("config.json"), "{\"ociVersion\": ").unwrap();
    let e = Plan::load(&b, "c1", RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json") && e.contains("EOF"), "{e}");
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn usernames_resolve_in_the_rootfs() {
    let mut c = base();
    c["process"]["user"]["username"] = "svc".into();
    let b = bundle("svc", c);
    let p = Plan::load(&b, "c1", RunOptions::default()).unwrap();
    assert_eq!((p.process.uid, p.process.gid), (1001, 1002));
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn terminal_rules_follow_runc() {
    let mut c = base();
    c["process"]["terminal"] = true.into();
    let b = bundle("tty", c);
    let detached = RunOptions {
        detach: true,
        ..Default::default()
    };
    assert!(
        Plan::load(&b, "c1", detached)
            .unwrap_err()
            .to_string()
            .contains("--console-socket")
    );
    assert!(
        Plan::load(&b, "c1", RunOptions::default()).is_ok(),
        "run in the foreground relays the pty"
    );
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn ids_are_checked() {
    assert!(validate_id("ok-id_1.2").is_ok());
    for bad in ["", "..", "a/b", "a b"] {
        assert!(validate_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn apparmor_profiles_need_apparmor() {
    assert_eq!(apparmor_profile("f", None).unwrap(), None);
    assert_eq!(apparmor_profile("f", Some("")).unwrap(), None);
    let e = apparmor_profile("process.apparmorProfile", Some("a\nb"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("process.apparmorProfile: not a profile name"),
        "{e}"
    );
    let r = apparmor_profile("process.apparmorProfile", Some("p"));
    if apparmor_enabled() {
        assert_eq!(r.unwrap().as_deref(), Some("p"));
    } else {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("AppArmor is not enabled in this kernel"), "{e}");
    }
}

#[test]
fn selinux_labels_need_selinux() {
    assert_eq!(selinux::label("f", None).unwrap(), None);
    assert_eq!(selinux::label("f", Some("")).unwrap(), None);
    let e = selinux::label("linux.mountLabel", Some("a\0b"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux.mountLabel: not an SELinux context"),
        "{e}"
    );
    if !Path::new("/sys/fs/selinux/context").exists() {
        let e = selinux::label("process.selinuxLabel", Some("u:r:t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SELinux is not enabled in this kernel"), "{e}");
    }
    // Quoted: an MLS range has commas, which would otherwise split the option.
    assert_eq!(
        selinux::mount_data("", Some("u:object_r:t:s0:c1,c2")),
        "context=\"u:object_r:t:s0:c1,c2\""
    );
    assert_eq!(
        selinux::mount_data("mode=755", Some("u:object_r:t")),
        "mode=755,context=\"u:object_r:t\""
    );
    assert_eq!(selinux::mount_data("mode=755", None), "mode=755");
}

#[test]
fn id_maps_the_kernel_would_refuse_fail_here() {
    let map =
        |c: u32, h: u32, n: u32| serde_json::json!({"containerID": c, "hostID": h, "size": n});
    let check = |maps: serde_json::Value| {
        let v: Vec<oci_spec::runtime::LinuxIdMapping> = serde_json::from_value(maps).unwrap();
        id_maps("linux.uidMappings", Some(&v)).map_err(|e| e.to_string())
    };
    assert!(check(serde_json::json!([map(0, 100000, 65536), map(65536, 0, 1)])).is_ok());
    let e = check(serde_json::json!([map(0, 4294967295, 2)])).unwrap_err();
    assert!(
        e.contains("linux.uidMappings[0]: hostID 4294967295 + size 2"),
        "{e}"
    );
    let e = check(serde_json::json!([map(0, 1000, 10), map(5, 2000, 10)])).unwrap_err();
    assert!(
        e.contains("linux.uidMappings[1]: overlaps linux.uidMappings[0]"),
        "{e}"
    );
    let e = check(serde_json::json!([map(0, 1000, 10), map(100, 1009, 1)])).unwrap_err();
    assert!(e.contains("overlaps"), "{e}");
    assert!(check(serde_json::json!([map(0, 1000, 10), map(10, 1010, 1)])).is_ok());
    let many = |n: u32| -> Vec<_> { (0..n).map(|i| map(i, 1000 + i, 1)).collect() };
    assert!(check(serde_json::json!(many(340))).is_ok());
    let e = check(serde_json::json!(many(341))).unwrap_err();
    assert!(e.contains("341 ranges"), "{e}");
    // Lines of 24 bytes, more than the one page the kernel reads (340 such lines fit in a 64 KiB
    // page, so there only the count is a limit).
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .unwrap()
        .unwrap() as u32;
    if page / 24 < 340 {
        let long: Vec<_> = (0..page / 24 + 1)
            .map(|i| map(1_000_000_000 + i, 2_000_000_000 + i, 1))
            .collect();
        let e = check(serde_json::json!(long)).unwrap_err();
        assert!(
            e.contains("bytes as a map; the kernel takes less than a page"),
            "{e}"
        );
    }
}
