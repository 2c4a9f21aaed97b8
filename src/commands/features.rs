//! `features`: what this build supports, in the runtime-spec features.md shape. Only what works
//! is listed; everything refused by the planner is reported as disabled or left out.

use serde_json::{Value, json};

/// What the filter compiler takes, and which flags this kernel supports.
fn seccomp() -> Value {
    use crate::seccomp::{ACTION_NAMES, FLAG_NAMES, OPERATOR_NAMES, load};
    if !load::filters_supported() {
        return json!({"enabled": false});
    }
    let archs: Vec<&str> = chitin_arch::Arch::ALL
        .iter()
        .map(|a| a.oci_name())
        .collect();
    let known: Vec<&str> = FLAG_NAMES.iter().map(|(n, _)| *n).collect();
    let supported: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(_, f)| load::flag_supported(*f))
        .map(|(n, _)| *n)
        .collect();
    json!({"enabled": true, "actions": ACTION_NAMES, "operators": OPERATOR_NAMES, "archs": archs,
           "knownFlags": known, "supportedFlags": supported})
}

pub fn features() -> Value {
    let mut caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    caps.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::plan::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::plan::mount_options::OPTIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": true},
            "seccomp": seccomp(),
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": true, "schemata": true, "monitoring": true},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                          "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "mountExtensions": {"idmap": {"enabled": idmap_supported()}},
            "netDevices": {"enabled": true}
        },
        "annotations": annotations(),
        "potentiallyUnsafeConfigAnnotations": unsafe_annotations(),
    })
}

/// Whether the kernel has mount_setattr(2), which came with MOUNT_ATTR_IDMAP (Linux 5.12): asked
/// with a bad fd, it answers EBADF where it exists.
fn idmap_supported() -> bool {
    // SAFETY: mount_setattr with an invalid fd and null arguments only returns an error.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    r == 0 || nix::errno::Errno::last() != nix::errno::Errno::ENOSYS
}

/// The escape classes chitin is immune to by design, each with a test in
/// tests/integration/escapes.rs that fails on a build without its guard.
const GUARANTEES: &[(&str, &str)] = &[
    (
        "cve-2016-9962",
        "the init and exec'd processes are not dumpable until they execve",
    ),
    (
        "cve-2019-5736",
        "create, run and exec run from a read-only mount of the binary (or a sealed memfd copy): a container cannot write to it through /proc/<pid>/exe",
    ),
    (
        "cve-2019-16884",
        "writes meant for procfs go only through an fd checked to be procfs; sysctls through the runtime's own",
    ),
    (
        "cve-2021-30465",
        "mount destinations are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), mounts made by fd",
    ),
    (
        "cve-2022-29162",
        "the inheritable set is empty unless the config asks for it; exec --cap never adds to it",
    ),
    (
        "cve-2024-21626",
        "every fd is close-on-exec and close_range runs before execve; a cwd through /proc/self/fd is refused",
    ),
    (
        "cve-2024-45310",
        "mount targets are created inside the rootfs only, also through shared volumes",
    ),
    (
        "cve-2025-31133",
        "/dev/null is checked to be the null device (1:3) before it masks anything",
    ),
    (
        "cve-2025-52565",
        "/dev/console is a bind of the pty by fd onto a file at exactly /dev/console, never through a symlink",
    ),
];

fn annotations() -> Value {
    let mut a = serde_json::Map::new();
    a.insert(
        "org.chitin.version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    for (cve, how) in GUARANTEES {
        a.insert(format!("org.chitin.guarantee.{cve}"), (*how).into());
    }
    // The config annotations chitin acts on, with what each takes.
    for d in chitin_devices::annotations() {
        a.insert(d.key.into(), d.what.into());
    }
    a.insert(
        crate::plan::perf_profile::ANNOTATION.into(),
        "NAME: a performance profile shipped with chitin, resolved for this host (chitin profile list)".into(),
    );
    a.insert(
        crate::plan::hardening::ANNOTATION.into(),
        format!(
            "NAME: a security profile shipped with chitin, which only restricts ({})",
            crate::plan::hardening::names().join(", ")
        )
        .into(),
    );
    a.insert(
        crate::cgroup::systemd::props::ANNOTATION.into(),
        "with --systemd-cgroup: NAME=VALUE sets the unit property NAME (GVariant text; *Sec in seconds)".into(),
    );
    Value::Object(a)
}

/// Annotations of a config that widen what the container can reach or change what the runtime
/// does: one turns seccomp off, the devices' hand hardware in, systemd's set unit properties.
fn unsafe_annotations() -> Vec<&'static str> {
    let devices = chitin_devices::annotations()
        .into_iter()
        .filter(|a| a.unsafe_);
    std::iter::once(crate::seccomp::SKIP_ANNOTATION)
        .chain(devices.map(|a| a.key))
        // As runc: raw unit properties can lift the container's limits.
        .chain([crate::cgroup::systemd::props::ANNOTATION])
        .collect()
}

/// runc prints features with a four-space indent.
pub fn render() -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(&features(), &mut ser).expect("features serialize");
    String::from_utf8(out).expect("utf-8")
}
