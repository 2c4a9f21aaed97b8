//! `features`: what this build supports, in the runtime-spec features.md shape. Only what works
//! is listed; everything refused by the planner is reported as disabled or left out.

use serde_json::{Value, json};

pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

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
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": seccomp(),
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.chitin.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// runc prints features with a four-space indent.
pub fn render() -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(&features(), &mut ser).expect("features serialize");
    String::from_utf8(out).expect("utf-8")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_listed_mount_option_parses() {
        for o in super::MOUNT_OPTIONS {
            crate::plan::mounts::parse(&[o.to_string()]).unwrap_or_else(|e| panic!("{o}: {e}"));
        }
    }
}
