use super::host::{FakeHost, RealHost};
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

pub(super) fn base() -> serde_json::Value {
    let mut v = crate::commands::spec::default_spec(false);
    v["process"]["terminal"] = false.into();
    v
}

/// The bundle through the built-in providers, as create loads it.
fn load(b: &Path) -> Result<(Config, Plan), PlanError> {
    Plan::load(
        b,
        "c1",
        &crate::edits::builtin(None, Driver::Cgroupfs),
        Driver::Cgroupfs,
    )
}

fn err(tag: &str, config: serde_json::Value) -> String {
    let b = bundle(tag, config);
    let e = load(&b).unwrap_err().to_string();
    std::fs::remove_dir_all(&b).unwrap();
    e
}

#[test]
fn the_default_spec_plans() {
    let b = bundle("ok", base());
    let (_, p) = load(&b).unwrap();
    assert_eq!(p.process.args, vec!["sh"]);
    assert!(p.namespaces.is_new(NsKind::Pid) && p.namespaces.is_new(NsKind::Mount));
    assert_eq!(p.mounts.len(), 7);
    assert_eq!(p.devices.len(), 6, "default devices");
    // The default spec denies every device first (a flipped `allow` would print the same line).
    let deny_all = DeviceRule {
        allow: false,
        kind: 'a',
        major: None,
        minor: None,
        access: "rwm".into(),
    };
    assert_eq!(p.device_rules[0], deny_all);
    assert_eq!(p.cgroup.path, "/chitin/c1");
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
    let (_, p) = load(&b).unwrap();
    assert_eq!(
        p.seccomp.unwrap().archs,
        [chitin_arch::Arch::Sparc64],
        "chitin's own arch name is accepted"
    );
    std::fs::remove_dir_all(&b).unwrap();

    let b = std::env::temp_dir().join("chitin-plan-no-such-bundle");
    let e = load(&b).unwrap_err().to_string();
    assert!(
        e.starts_with("bundle ") && e.contains("No such file"),
        "{e}"
    );

    let b = bundle("json", base());
    std::fs::write(b.join("config.json"), "{\"ociVersion\": ").unwrap();
    let e = load(&b).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("EOF"), "{e}");
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn terminal_rules_follow_runc() {
    let mut c = base();
    c["process"]["terminal"] = true.into();
    let b = bundle("tty", c);
    let (_, p) = load(&b).unwrap();
    let detached = RunOptions {
        detach: true,
        ..Default::default()
    };
    assert!(
        detached
            .apply(&mut p.process.clone())
            .unwrap_err()
            .to_string()
            .contains("--console-socket")
    );
    assert!(
        RunOptions::default().apply(&mut p.process.clone()).is_ok(),
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

/// The plan of `config` on a fake host (the bundle /b), or its error as text.
pub(super) fn on(host: &FakeHost, config: serde_json::Value) -> Result<Plan, String> {
    let config = config::parse(
        &serde_json::to_vec(&config).unwrap(),
        Path::new("/b/config.json"),
    )
    .map_err(|e| e.to_string())?;
    Plan::new(&config, Path::new("/b"), "c1", host, Driver::Cgroupfs).map_err(|e| e.to_string())
}

pub(super) fn fails(host: &FakeHost, config: serde_json::Value, want: &str) {
    let e = on(host, config).expect_err(want);
    assert!(e.contains(want), "{e}\nwanted: {want}");
}

#[test]
fn apparmor_profiles_need_apparmor() {
    let mut c = base();
    c["process"]["apparmorProfile"] = "p".into();
    let mut host = FakeHost::bundle();
    fails(
        &host,
        c.clone(),
        "process.apparmorProfile: AppArmor is not enabled in this kernel",
    );
    host.apparmor = true;
    assert_eq!(
        on(&host, c.clone())
            .unwrap()
            .process
            .apparmor_profile
            .as_deref(),
        Some("p")
    );
    c["process"]["apparmorProfile"] = "a\nb".into();
    fails(
        &host,
        c.clone(),
        "process.apparmorProfile: not a profile name",
    );
    c["process"]["apparmorProfile"] = "".into();
    assert_eq!(
        on(&FakeHost::bundle(), c).unwrap().process.apparmor_profile,
        None
    );
}

#[test]
fn selinux_labels_need_selinux_and_its_policy() {
    let mut c = base();
    c["process"]["selinuxLabel"] = "u:r:t:s0".into();
    let mut host = FakeHost::bundle();
    fails(
        &host,
        c.clone(),
        "process.selinuxLabel: SELinux is not enabled in this kernel",
    );
    host.selinux = Some(vec!["u:r:t:s0".into()]);
    assert_eq!(
        on(&host, c.clone())
            .unwrap()
            .process
            .selinux_label
            .as_deref(),
        Some("u:r:t:s0")
    );
    c["process"]["selinuxLabel"] = "u:r:other:s0".into();
    fails(
        &host,
        c.clone(),
        "\"u:r:other:s0\" is not a valid context in the loaded SELinux policy",
    );
    c["process"]["selinuxLabel"] = "a\u{0}b".into();
    fails(&host, c, "process.selinuxLabel: not an SELinux context");
}

#[test]
fn the_mount_label_is_dropped_without_selinux() {
    let mut c = base();
    c["linux"]["mountLabel"] = "u:object_r:t:s0:c1,c2".into();
    let tmpfs = |p: &Plan| {
        p.mounts
            .iter()
            .find(|m| m.dest == Path::new("/dev"))
            .unwrap()
            .options
            .data
            .clone()
    };
    let p = on(&FakeHost::bundle(), c.clone()).unwrap();
    assert_eq!(p.mount_label, None);
    assert!(!tmpfs(&p).contains("context="), "{}", tmpfs(&p));
    let mut host = FakeHost::bundle();
    host.selinux = Some(vec!["u:object_r:t:s0:c1,c2".into()]);
    let p = on(&host, c.clone()).unwrap();
    // Quoted: an MLS range has commas, which would otherwise split the option.
    assert!(
        tmpfs(&p).ends_with(",context=\"u:object_r:t:s0:c1,c2\""),
        "{}",
        tmpfs(&p)
    );
    let proc = p
        .mounts
        .iter()
        .find(|m| m.fstype.as_deref() == Some("proc"))
        .unwrap();
    assert!(
        !proc.options.data.contains("context="),
        "procfs keeps the policy's label"
    );
    host.selinux = Some(vec![]);
    fails(&host, c, "linux.mountLabel");
}

#[test]
fn usernames_resolve_in_the_rootfs_s_passwd() {
    let mut c = base();
    c["process"]["user"]["username"] = "svc".into();
    let mut host = FakeHost::bundle();
    let p = on(&host, c.clone()).unwrap();
    assert_eq!((p.process.uid, p.process.gid), (1001, 1002));
    c["process"]["user"]["username"] = "nobody-here".into();
    fails(
        &host,
        c.clone(),
        "process.user.username: no user \"nobody-here\" in the rootfs's /etc/passwd",
    );
    host.files.clear();
    fails(
        &host,
        c,
        "process.user.username: reading /etc/passwd in the rootfs",
    );
}

#[test]
fn bind_sources_and_namespace_paths_must_exist() {
    let mut c = base();
    let bind = serde_json::json!({"destination": "/data", "type": "bind", "source": "/srv/data"});
    c["mounts"].as_array_mut().unwrap().push(bind);
    let mut host = FakeHost::bundle();
    fails(
        &host,
        c.clone(),
        "mounts[7].source: /srv/data does not exist",
    );
    host.dirs.insert("/srv/data".into());
    assert_eq!(
        on(&host, c.clone()).unwrap().mounts[7].source.as_deref(),
        Some(Path::new("/srv/data"))
    );
    // Relative sources are the bundle's; one under an earlier destination is made by that mount.
    c["mounts"][7]["source"] = "data".into();
    fails(&host, c.clone(), "mounts[7].source: /b/data does not exist");
    c["mounts"][7]["source"] = "/b/rootfs/dev/shm/x".into();
    assert!(on(&host, c).is_ok(), "made by the /dev mount");

    let mut c = base();
    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
    let net = ns.iter().position(|n| n["type"] == "network").unwrap();
    ns[net]["path"] = "/run/netns/n1".into();
    let want = format!("linux.namespaces[{net}].path: /run/netns/n1 does not exist");
    fails(&host, c.clone(), &want);
    host.files.insert("/run/netns/n1".into(), String::new());
    let p = on(&host, c).unwrap();
    assert_eq!(
        p.namespaces.joined(NsKind::Net),
        Some(Path::new("/run/netns/n1"))
    );
}

#[test]
fn the_rootfs_must_be_a_directory() {
    let mut host = FakeHost::bundle();
    assert_eq!(on(&host, base()).unwrap().rootfs, Path::new("/b/rootfs"));
    host.dirs.remove(Path::new("/b/rootfs"));
    fails(&host, base(), "root.path: /b/rootfs: No such file");
    host.files.insert("/b/rootfs".into(), String::new());
    fails(&host, base(), "root.path: /b/rootfs is not a directory");
}

#[test]
fn a_joined_user_namespace_must_have_the_config_s_maps() {
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let mut c = base();
    let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(serde_json::json!({"type": "user", "path": "/proc/7/ns/user"}));
    c["linux"]["uidMappings"] = map.clone();
    c["linux"]["gidMappings"] = map;
    let mut host = FakeHost::bundle();
    fails(
        &host,
        c.clone(),
        "linux.namespaces[5].path: /proc/7/ns/user does not exist",
    );
    let theirs = vec![IdMap {
        container: 0,
        host: 100000,
        size: 65536,
    }];
    host.userns
        .insert("/proc/7/ns/user".into(), (theirs.clone(), theirs.clone()));
    assert!(on(&host, c.clone()).is_ok());
    let other = vec![IdMap {
        container: 0,
        host: 200000,
        size: 65536,
    }];
    host.userns
        .insert("/proc/7/ns/user".into(), (theirs, other));
    fails(
        &host,
        c,
        "linux.gidMappings: differ from those of the joined user namespace /proc/7/ns/user",
    );
}

#[test]
fn id_maps_the_kernel_would_refuse_fail_here() {
    let map =
        |c: u32, h: u32, n: u32| serde_json::json!({"containerID": c, "hostID": h, "size": n});
    let check = |page: usize, maps: serde_json::Value| {
        let mut c = base();
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] = maps;
        c["linux"]["gidMappings"] = serde_json::json!([map(0, 0, 1)]);
        let host = FakeHost {
            page_size: page,
            ..FakeHost::bundle()
        };
        on(&host, c).map(|_| ())
    };
    let ok = |maps| check(4096, maps);
    assert!(ok(serde_json::json!([map(0, 100000, 65536), map(65536, 0, 1)])).is_ok());
    let e = ok(serde_json::json!([map(0, 4294967295, 2)])).unwrap_err();
    assert!(
        e.contains("linux.uidMappings[0]: hostID 4294967295 + size 2"),
        "{e}"
    );
    let e = ok(serde_json::json!([map(0, 1000, 10), map(5, 2000, 10)])).unwrap_err();
    assert!(
        e.contains("linux.uidMappings[1]: overlaps linux.uidMappings[0]"),
        "{e}"
    );
    let e = ok(serde_json::json!([map(0, 1000, 10), map(100, 1009, 1)])).unwrap_err();
    assert!(e.contains("overlaps"), "{e}");
    assert!(ok(serde_json::json!([map(0, 1000, 10), map(10, 1010, 1)])).is_ok());
    let e = ok(serde_json::json!([map(0, 1000, 0)])).unwrap_err();
    assert!(
        e.contains("linux.uidMappings[0].size: must be greater than zero"),
        "{e}"
    );
    let many = |n: u32| -> Vec<_> { (0..n).map(|i| map(i, 1000 + i, 1)).collect() };
    assert!(check(65536, serde_json::json!(many(340))).is_ok());
    let e = check(65536, serde_json::json!(many(341))).unwrap_err();
    assert!(e.contains("341 ranges"), "{e}");
    // The kernel reads a map in one write of less than a page: 24-byte lines, 171 of them fill
    // a 4 KiB page (a 64 KiB page holds the 340 the count allows).
    let long: Vec<_> = (0..171)
        .map(|i| map(1_000_000_000 + i, 2_000_000_000 + i, 1))
        .collect();
    let e = check(4096, serde_json::json!(long)).unwrap_err();
    assert!(
        e.contains("4104 bytes as a map; the kernel takes less than a page (4096)"),
        "{e}"
    );
    assert!(check(65536, serde_json::json!(long)).is_ok());
}

#[test]
fn cross_field_rules_name_the_field() {
    let host = FakeHost::bundle();
    let drop_ns = |c: &mut serde_json::Value, t: &str| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != t);
    };
    let mut c = base();
    drop_ns(&mut c, "uts");
    fails(
        &host,
        c,
        "hostname: setting the hostname needs a private uts namespace",
    );
    let mut c = base();
    drop_ns(&mut c, "mount");
    fails(
        &host,
        c,
        "linux.maskedPaths: unable to restrict sys entries without a private MNT namespace",
    );
    let mut c = base();
    drop_ns(&mut c, "network");
    c["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    fails(
        &host,
        c,
        "linux.sysctl[\"net.ipv4.ip_forward\"]: needs a private network namespace",
    );
    let mut c = base();
    c["linux"]["timeOffsets"] = serde_json::json!({"monotonic": {"secs": 1}});
    fails(
        &host,
        c,
        "linux.timeOffsets: offsets need a new time namespace",
    );
    let mut c = base();
    c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1, "size": 1}]);
    fails(
        &host,
        c,
        "linux.uidMappings: mappings need a user namespace of the container's own",
    );
}

#[test]
fn the_real_host_plans_a_bundle_on_disk() {
    let b = bundle("real", base());
    let config = Config::read(&b).unwrap();
    let p = Plan::new(&config, &b, "c1", &RealHost, Driver::Cgroupfs).unwrap();
    assert_eq!(p.rootfs, b.join("rootfs").canonicalize().unwrap());
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn a_config_without_a_linux_section_has_no_namespaces() {
    // As runc reads it: oci-spec's Default would add namespaces and masked paths.
    let mut c = base();
    c.as_object_mut().unwrap().remove("linux");
    c.as_object_mut().unwrap().remove("hostname");
    let p = on(&FakeHost::bundle(), c).unwrap();
    assert_eq!(p.namespaces, Namespaces::default());
    assert!(p.masked_paths.is_empty() && p.readonly_paths.is_empty());
}

#[test]
fn an_rlimit_above_what_the_runtime_can_raise_is_refused() {
    let mut c = base();
    c["process"]["rlimits"] = serde_json::json!([
        {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
        {"type": "RLIMIT_MEMLOCK", "hard": u64::MAX, "soft": 65536}
    ]);
    let mut host = FakeHost::bundle();
    assert_eq!(on(&host, c.clone()).unwrap().process.rlimits.len(), 2);
    host.rlimit_ceilings
        .insert(libc::RLIMIT_MEMLOCK as i32, 8 << 20);
    fails(
        &host,
        c.clone(),
        "process.rlimits[1]: RLIMIT_MEMLOCK's hard limit unlimited is above this runtime's own, 8388608, which it cannot raise without CAP_SYS_RESOURCE",
    );
    c["process"]["rlimits"][1]["hard"] = (8u64 << 20).into();
    assert!(on(&host, c).is_ok(), "up to its own limit");
}
