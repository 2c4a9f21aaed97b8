//! The generated part of the corpus: the specs runc and chitin write, and variants of them that
//! between them set nearly every field of a Linux config.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::Case;
use crate::support::{Ctx, bin};

fn spec_of(ctx: &Ctx, rt: &Path, name: &str) -> Value {
    let dir = ctx.base.join(format!("spec-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(rt)
        .arg("spec")
        .arg("-b")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name} spec failed");
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

pub(super) fn plain(mut v: Value) -> Value {
    v["process"]["terminal"] = false.into();
    v
}

/// Capabilities a nested user namespace needs to map root and mount (for the --no-pivot case,
/// where only the hiding of the host's /proc stops a fresh procfs).
fn with_caps(mut v: Value, caps: &[&str]) -> Value {
    for set in ["bounding", "effective", "permitted"] {
        let list = v["process"]["capabilities"][set].as_array_mut().unwrap();
        list.extend(caps.iter().map(|c| json!(c)));
    }
    v
}

pub fn runc_spec(ctx: &Ctx, runc: &Path) -> Value {
    spec_of(ctx, runc, "runc")
}

pub fn cases(ctx: &Ctx) -> Vec<Case> {
    let runc = crate::clients::which("runc").expect("runc");
    let runc_spec = runc_spec(ctx, &runc);
    let chitin_spec = spec_of(ctx, Path::new(bin()), "chitin");
    let mut cases = vec![
        Case::new("runc-spec", plain(runc_spec.clone())),
        Case::new("chitin-spec", plain(chitin_spec.clone())),
        Case::new("runc-spec-terminal", runc_spec.clone()),
        Case::new("chitin-spec-terminal", chitin_spec.clone()),
    ];
    let mut no_pivot = Case::new(
        "no-pivot",
        with_caps(
            plain(runc_spec.clone()),
            &["CAP_SETUID", "CAP_SETGID", "CAP_SETFCAP", "CAP_SYS_ADMIN"],
        ),
    );
    no_pivot.config["root"]["readonly"] = false.into();
    no_pivot.flags = vec!["--no-pivot"];
    // In a user namespace the host's mounts are locked: they cannot be detached, only covered.
    let mut no_pivot_userns = Case::new("no-pivot-user-namespace", no_pivot.config.clone());
    no_pivot_userns.flags = vec!["--no-pivot"];
    userns_of(&mut no_pivot_userns.config);
    cases.push(no_pivot);
    cases.push(no_pivot_userns);

    let mut userns = plain(runc_spec.clone());
    userns_of(&mut userns);
    cases.push(Case::new("user-namespace", userns.clone()));
    let mut userns_tty = userns;
    userns_tty["process"]["terminal"] = true.into();
    cases.push(Case::new("user-namespace-terminal", userns_tty));

    let mut host_net = plain(runc_spec.clone());
    host_net["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    cases.push(Case::new("host-network", host_net));
    // A runtime its caller pinned to one CPU: the container may still use every CPU.
    let mut pinned = Case::new("runtime-pinned", plain(runc_spec.clone()));
    pinned.pinned = true;
    cases.push(pinned);

    let mut cgroupns = plain(runc_spec.clone());
    let ns = cgroupns["linux"]["namespaces"].as_array_mut().unwrap();
    if !ns.iter().any(|n| n["type"] == "cgroup") {
        ns.push(json!({"type": "cgroup"}));
    }
    cases.push(Case::new("cgroup-namespace", cgroupns));

    cases.push(everything(plain(runc_spec.clone())));
    cases.push(crate::mount_options::corpus_case(plain(runc_spec.clone())));
    // A read-only /dev: filled first (devices, /dev/pts, /dev/shm), read-only at the end.
    let mut ro_dev = plain(runc_spec.clone());
    for m in ro_dev["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!("ro"));
        }
    }
    cases.push(Case::new("read-only-dev", ro_dev));
    cases.push(mount_order(plain(runc_spec.clone())));
    if crate::idmapped::temp_dir_idmappable() {
        cases.push(idmapped(plain(runc_spec.clone())));
    }
    // Destinations through the image's dangling symlinks, absolute and relative: made inside.
    let mut dangling = plain(runc_spec.clone());
    dangling["root"]["readonly"] = false.into();
    let mounts = dangling["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(json!({"destination": "/etc/logs/app", "type": "tmpfs", "source": "tmpfs"}));
    let mut dangling = Case::new("dangling-symlinks", dangling);
    dangling.links = vec![("data", "/srv/data"), ("etc/logs", "../var/log")];
    cases.push(dangling);
    cases.push(hooks(plain(runc_spec)));
    // The cgroup is the tests' (without one, chitin's default differs from runc's by design:
    // README, "Where chitin differs from runc").
    for c in cases.iter_mut() {
        if c.config["linux"]["cgroupsPath"].is_null() {
            c.config["linux"]["cgroupsPath"] = format!("/chitin-tests/diff-{}", c.name).into();
        }
    }
    cases
}

/// A user namespace whose root is the host's 100000.
fn userns_of(v: &mut Value) {
    let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

/// Nearly every field a Linux config has, at values other than the defaults.
fn everything(mut v: Value) -> Case {
    v["hostname"] = "every".into();
    v["domainname"] = "example.org".into();
    v["root"]["readonly"] = false.into();
    let p = &mut v["process"];
    p["env"] = json!(["PATH=/bin:/sbin", "A=1", "EMPTY=", "TERM=dumb"]);
    p["cwd"] = "/tmp".into();
    p["user"] = json!({"uid": 1000, "gid": 1000, "umask": 23, "additionalGids": [65534, 5]});
    p["noNewPrivileges"] = false.into();
    p["oomScoreAdj"] = 123.into();
    p["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    p["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    p["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 2048},
        {"type": "RLIMIT_NPROC", "hard": 512, "soft": 256},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
        {"type": "RLIMIT_MEMLOCK", "hard": 65536, "soft": 65536}
    ]);
    let caps = [
        "CAP_CHOWN",
        "CAP_NET_RAW",
        "CAP_KILL",
        "CAP_SETUID",
        "CAP_SETGID",
    ];
    p["capabilities"] = json!({
        "bounding": caps, "permitted": caps, "effective": caps,
        "inheritable": ["CAP_NET_RAW", "CAP_KILL"], "ambient": ["CAP_NET_RAW"]
    });
    let mounts = v["mounts"].as_array_mut().unwrap();
    mounts.extend([
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "size=4m", "mode=1770", "uid=1000", "gid=5"]}),
        json!({"destination": "/data", "type": "bind", "source": "/etc",
               "options": ["rbind", "ro", "nosuid"]}),
        json!({"destination": "/etc/os", "type": "bind", "source": "/etc/passwd",
               "options": ["bind", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["noexec", "nosuid", "nodev", "mode=755", "size=1m"]}),
        // Podman's option: the image's /etc is copied onto the tmpfs.
        json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
               "options": ["tmpcopyup", "nosuid", "size=1m"]}),
    ]);
    let l = &mut v["linux"];
    l["sysctl"] = json!({"kernel.msgmax": "4096", "net.ipv4.ip_forward": "1"});
    l["personality"] = json!({"domain": "LINUX32"});
    l["memoryPolicy"] = json!({"mode": "MPOL_PREFERRED", "nodes": "0"});
    l["rootfsPropagation"] = "slave".into();
    l["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push("/proc/cpuinfo".into());
    l["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push("/proc/uptime".into());
    l["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 432,
         "uid": 1000, "gid": 5},
        {"path": "/dev/loop-x", "type": "b", "major": 7, "minor": 200},
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200}
    ]);
    l["resources"] = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
        ],
        "memory": {"limit": 268435456, "reservation": 134217728},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 100}
    });
    l["cgroupsPath"] = "/chitin-tests/diff-every".into();
    l["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["syslog"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    Case::new("everything", v)
}

/// A bind whose source an earlier mount of the config makes (below that mount's destination in
/// the rootfs): found when its turn comes.
fn mount_order(base: Value) -> Case {
    let mut case = Case::new("mount-order", base.clone());
    case.prepare = Some(Box::new(move |bundle| {
        let vol = bundle.join("vol");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        std::fs::write(vol.join("sub/file"), "in sub\n").unwrap();
        let mut mounts = base["mounts"].as_array().unwrap().clone();
        mounts.push(
            json!({"destination": "/data", "type": "bind", "source": vol, "options": ["rbind"]}),
        );
        let made = bundle.join("rootfs/data/sub");
        mounts.push(json!({"destination": "/other", "type": "bind", "source": made, "options": ["rbind", "ro"]}));
        json!({ "mounts": mounts })
    }));
    case
}

/// An idmapped bind in a user namespace: the host's root-owned directory is root's inside.
fn idmapped(mut base: Value) -> Case {
    userns_of(&mut base);
    let mut case = Case::new("user-namespace-idmapped-bind", base.clone());
    case.prepare = Some(Box::new(move |bundle| {
        let vol = bundle.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let mut mounts = base["mounts"].as_array().unwrap().clone();
        mounts.push(json!({"destination": "/idm", "type": "bind", "source": vol,
                           "options": ["rbind", "idmap"]}));
        json!({ "mounts": mounts })
    }));
    case
}

/// Every hook phase reporting what it sees: cwd, environment and the state on stdin. The
/// runtime's phases write in the bundle (known once it is made), startContainer in the rootfs,
/// as it runs in the container.
fn hooks(mut v: Value) -> Case {
    v["root"]["readonly"] = false.into();
    v["hooks"] = json!({"startContainer": [hook("startContainer", "/")]});
    let mut case = Case::new("hooks", v);
    case.prepare = Some(Box::new(|bundle| {
        let dir = bundle.join("hooks").to_str().unwrap().to_owned() + "/";
        let phases = [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop",
        ];
        let hooks: serde_json::Map<String, Value> = phases
            .iter()
            .map(|p| (p.to_string(), json!([hook(p, &dir)])))
            .collect();
        json!({ "hooks": hooks })
    }));
    case
}

fn hook(phase: &str, dir: &str) -> Value {
    let ext = if dir == "/" { "hook" } else { "out" };
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
                 format!("{{ echo cwd=$(pwd); env | sort; printf state=; cat; }} > {dir}{phase}.{ext}")],
        "env": ["HOOK_PHASE=x", "PATH=/bin:/usr/bin"]
    })
}
