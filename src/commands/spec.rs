//! `spec`: the default config.json, runc's defaults with chitin's hostname.

use std::path::Path;

use serde_json::{Value, json};

pub fn default_spec(rootless: bool) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut spec = json!({
        "ociVersion": crate::plan::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "chitin",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let linux = &mut spec["linux"];
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        linux["namespaces"] = json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}, {"type": "user"}]);
        linux.as_object_mut().expect("object").remove("resources");
        let mounts = spec["mounts"].as_array_mut().expect("array");
        // Without a network namespace of its own, sysfs cannot be mounted: bind the host's.
        mounts.retain(|m| m["type"] != "cgroup");
        for m in mounts.iter_mut() {
            if m["type"] == "sysfs" {
                *m = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            if m["type"] == "devpts" {
                m["options"]
                    .as_array_mut()
                    .expect("array")
                    .retain(|o| o != "gid=5");
            }
        }
    }
    // As runc: a cgroup namespace only on a pure cgroup v2 host (a config made on a v1 or hybrid
    // host that adds one itself would otherwise name it twice).
    if !pure_cgroup_v2() {
        let ns = spec["linux"]["namespaces"].as_array_mut().expect("array");
        ns.retain(|n| n["type"] != "cgroup");
    }
    spec
}

fn pure_cgroup_v2() -> bool {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
    statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// Writes config.json into `bundle`: the default spec, with a shipped seccomp profile and a
/// security profile (its annotation, and the config as the profile leaves it) when named.
pub fn write(
    bundle: &Path,
    rootless: bool,
    seccomp: Option<&str>,
    profile: Option<&str>,
) -> std::io::Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", path.display()),
        ));
    }
    let mut spec = default_spec(rootless);
    if let Some(name) = seccomp {
        spec["linux"]["seccomp"] = crate::profiles::seccomp(name, chitin_arch::Arch::native())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no seccomp profile {name:?}"),
                )
            })?;
    }
    if let Some(name) = profile {
        spec["annotations"] = json!({crate::plan::hardening::ANNOTATION: name});
        spec = hardened(&spec).map_err(std::io::Error::other)?;
    }
    let mut text = serde_json::to_string_pretty(&spec).expect("spec serializes");
    text.push('\n');
    std::fs::write(path, text)
}

/// The spec as its security profile leaves it.
fn hardened(spec: &Value) -> Result<Value, crate::plan::PlanError> {
    let bytes = serde_json::to_vec(spec).expect("JSON serializes");
    let mut config = crate::plan::config::parse(&bytes, Path::new("config.json"))?;
    crate::edits::restrict(&mut config)?;
    Ok(config.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Config, Plan, RunOptions};

    #[test]
    fn default_spec_plans() {
        let dir = std::env::temp_dir().join(format!("chitin-spec-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        for rootless in [false, true] {
            let spec = serde_json::from_value(default_spec(rootless)).unwrap();
            let opts = RunOptions {
                console_socket: Some("/x".into()),
                ..Default::default()
            };
            let config = Config {
                spec,
                seccomp: None,
            };
            let mut plan = Plan::new(
                &config,
                &dir,
                "x",
                &crate::plan::host::RealHost,
                crate::plan::Driver::Cgroupfs,
            )
            .unwrap();
            opts.apply(&mut plan.process).unwrap();
            assert_eq!(plan.hostname.as_deref(), Some("chitin"));
            assert!(plan.process.terminal);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
