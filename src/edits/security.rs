//! The last stage of the edit seam: a security profile (plan::hardening) over the config every
//! provider has edited. It only takes away: capabilities outside its set, mount options, a
//! missing no_new_privs; it adds masks, read-only paths and, where the config has no seccomp
//! section, its base profile. An explicit request it forbids fails, naming the field (and the
//! provider that set it) and the profile.

use std::path::Path;

use oci_spec::runtime::{Capabilities, LinuxCapabilities, Mount, Process};

use super::Provenance;
use crate::plan::hardening::{CapVerdict, Named};
use crate::plan::{Config, PlanError};

/// Applies the profile the config's annotation names, if any.
pub fn restrict(config: &mut Config, provenance: &Provenance) -> Result<(), PlanError> {
    let Some(s) = Named::of(&config.spec)? else {
        return Ok(());
    };
    apply(config, &s).map_err(|e| provenance.name_origin(e))
}

fn apply(config: &mut Config, s: &Named) -> Result<(), PlanError> {
    let spec = &mut config.spec;
    if let Some(mut p) = spec.process().clone() {
        process(&mut p, s)?;
        spec.set_process(Some(p));
    }
    if let Some(mut mounts) = spec.mounts().clone() {
        for (i, m) in mounts.iter_mut().enumerate() {
            mount(m, i, s)?;
        }
        spec.set_mounts(Some(mounts));
    }
    let mut linux = spec
        .linux()
        .clone()
        .unwrap_or_else(crate::plan::config::empty);
    let add = |have: &Option<Vec<String>>, more: &[String]| {
        let mut v = have.clone().unwrap_or_default();
        for p in more {
            if !v.contains(p) {
                v.push(p.clone());
            }
        }
        Some(v)
    };
    linux.set_masked_paths(add(linux.masked_paths(), &s.profile.masked_paths));
    linux.set_readonly_paths(add(linux.readonly_paths(), &s.profile.readonly_paths));
    spec.set_linux(Some(linux));
    if config.seccomp.is_none() {
        let base = &s.profile.seccomp_base;
        config.seccomp = Some(
            crate::profiles::seccomp(base, chitin_arch::Arch::native())
                .expect("a security profile names a shipped seccomp profile"),
        );
    }
    Ok(())
}

fn process(p: &mut Process, s: &Named) -> Result<(), PlanError> {
    if p.no_new_privileges() == Some(false) {
        return Err(s.forbidden("process.noNewPrivileges", "false"));
    }
    p.set_no_new_privileges(Some(true));
    if p.apparmor_profile().as_deref() == Some("unconfined") {
        return Err(s.forbidden("process.apparmorProfile", "\"unconfined\""));
    }
    if let Some(c) = p.capabilities().clone() {
        p.set_capabilities(Some(capabilities(c, s)?));
    }
    Ok(())
}

fn capabilities(mut c: LinuxCapabilities, s: &Named) -> Result<LinuxCapabilities, PlanError> {
    let narrow = |name: &str, set: &Option<Capabilities>| -> Result<_, PlanError> {
        let Some(set) = set else { return Ok(None) };
        let mut out = Capabilities::new();
        for cap in set {
            // oci-spec's Display is not the runtime-spec's name; its serde form is.
            let text = serde_json::to_value(cap).expect("a capability serializes");
            let text = text.as_str().unwrap_or_default();
            match s.verdict(text) {
                CapVerdict::Keep => {
                    out.insert(*cap);
                }
                CapVerdict::Drop => {}
                CapVerdict::Forbid => {
                    return Err(s.forbidden(&format!("process.capabilities.{name}"), text));
                }
            }
        }
        Ok(Some(out))
    };
    c.set_bounding(narrow("bounding", c.bounding())?);
    c.set_effective(narrow("effective", c.effective())?);
    c.set_inheritable(narrow("inheritable", c.inheritable())?);
    c.set_permitted(narrow("permitted", c.permitted())?);
    c.set_ambient(narrow("ambient", c.ambient())?);
    Ok(c)
}

/// nosuid on every mount; nodev on every one but /dev and devpts, which hold the container's
/// device nodes; read-only sysfs and everything mounted below /sys.
fn mount(m: &mut Mount, i: usize, s: &Named) -> Result<(), PlanError> {
    let dest = m.destination().clone();
    let typ = m.typ().clone().unwrap_or_default();
    let holds_nodes = dest == Path::new("/dev") || typ == "devpts";
    let sys = typ == "sysfs" || dest.starts_with("/sys");
    let mut opts = m.options().clone().unwrap_or_default();
    let field = format!("mounts[{i}].options");
    for (opt, forbidden) in [("suid", true), ("dev", !holds_nodes), ("rw", sys)] {
        if forbidden && opts.iter().any(|o| o == opt) {
            return Err(s.forbidden(&field, format!("{opt:?} on {}", dest.display())));
        }
    }
    let mut want = vec!["nosuid"];
    if !holds_nodes {
        want.push("nodev");
    }
    if sys {
        want.push("ro");
    }
    for o in want {
        if !opts.iter().any(|x| x == o) {
            opts.push(o.to_owned());
        }
    }
    m.set_options(Some(opts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{Edit, Edits, Origin, Precedence, Provider, apply, builtin};
    use crate::plan::{Config, PlanError, config};

    fn hardened(mut v: Value) -> Config {
        v["process"]["terminal"] = false.into();
        v["annotations"] = json!({"org.chitin.profile.security": "hardened"});
        let bytes = serde_json::to_vec(&v).unwrap();
        config::parse(&bytes, std::path::Path::new("/b/config.json")).unwrap()
    }

    #[test]
    fn narrows_what_clients_give_unasked() {
        let mut v = crate::commands::spec::default_spec(false);
        let docker_caps = json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE"
        ]);
        v["process"]["capabilities"] = json!({"bounding": docker_caps, "effective": docker_caps});
        v["process"]
            .as_object_mut()
            .unwrap()
            .remove("noNewPrivileges");
        let mut c = hardened(v);
        apply(&mut c, &builtin(Some(&[]), crate::plan::Driver::Cgroupfs)).unwrap();
        let once = c.to_json();
        let mut caps: Vec<&str> = once["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        caps.sort();
        assert_eq!(
            caps,
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_SETGID",
                "CAP_SETUID"
            ]
        );
        assert_eq!(once["process"]["noNewPrivileges"], true);
        let opts = |dest: &str| {
            let m = once["mounts"].as_array().unwrap().iter();
            let m = m.clone().find(|m| m["destination"] == dest).unwrap();
            m["options"].as_array().unwrap().clone()
        };
        assert!(
            opts("/proc").contains(&"nodev".into()) && opts("/proc").contains(&"nosuid".into())
        );
        assert!(
            !opts("/dev").contains(&"nodev".into()),
            "/dev holds the nodes"
        );
        assert!(
            !opts("/dev/pts").contains(&"nodev".into()),
            "so does devpts"
        );
        assert!(opts("/sys/fs/cgroup").contains(&"ro".into()));
        assert!(
            once["linux"]["maskedPaths"]
                .to_string()
                .contains("/proc/kallsyms")
        );
        assert_eq!(once["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        // Applied again (to a config `spec --profile` wrote), nothing changes.
        super::restrict(&mut c, &super::Provenance::default()).unwrap();
        let again = c.to_json();
        for field in ["mounts", "linux"] {
            assert_eq!(again[field], once[field]);
        }
    }

    /// A provider whose mount asks for device nodes outside /dev.
    struct DevMount;

    impl Provider for DevMount {
        fn edits(&self, _: &Config) -> Result<Vec<Edit>, PlanError> {
            let m = json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["dev"]});
            Ok(vec![Edit {
                origin: Origin("CDI vendor.com/x=0, /etc/cdi/x.json".into()),
                precedence: Precedence::Replace,
                edits: Edits {
                    mounts: vec![serde_json::from_value(m).unwrap()],
                    ..Edits::default()
                },
            }])
        }
    }

    #[test]
    fn an_explicit_ask_fails_naming_field_origin_and_profile() {
        let mut c = hardened(crate::commands::spec::default_spec(false));
        let e = apply(&mut c, &[Box::new(DevMount)]).unwrap_err();
        let n = crate::commands::spec::default_spec(false)["mounts"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            e.to_string(),
            format!(
                "config.json: mounts[{n}].options (from CDI vendor.com/x=0, /etc/cdi/x.json): \"dev\" on /x is forbidden by security profile hardened (org.chitin.profile.security)"
            )
        );
        let mut v = crate::commands::spec::default_spec(false);
        v["process"]["apparmorProfile"] = "unconfined".into();
        let e = apply(&mut hardened(v), &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("process.apparmorProfile: \"unconfined\" is forbidden"),
            "{e}"
        );
    }

    #[test]
    fn the_config_s_own_filter_stays_and_one_is_planned_beneath() {
        let mut v = crate::commands::spec::default_spec(false);
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW"});
        let mut c = hardened(v);
        apply(&mut c, &[]).unwrap();
        assert_eq!(c.seccomp, Some(json!({"defaultAction": "SCMP_ACT_ALLOW"})));
        let dir = std::env::temp_dir().join(format!("chitin-hardened-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let plan = crate::plan::Plan::new(
            &c,
            &dir,
            "x",
            &crate::plan::host::RealHost,
            crate::plan::Driver::Cgroupfs,
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let plan = plan.unwrap_or_else(|e| panic!("{e}"));
        assert!(plan.root_nosuid_nodev);
        let beneath = plan.seccomp_beneath.unwrap();
        assert!(beneath.rules.iter().any(|r| r.names
            == [
                "io_uring_setup",
                "io_uring_enter",
                "io_uring_register",
                "userfaultfd",
                "keyctl",
                "add_key",
                "request_key",
                "perf_event_open",
                "bpf"
            ]));
    }
}
