//! config.json as a `Config`: the runtime-spec's `Spec`, with `linux.seccomp` kept apart as JSON
//! (chitin parses that section itself, so that its errors name the field). A `Config` is also what
//! `create` saves in the state directory once every edit is in, and what later commands (exec,
//! and restore to come) read: never the bundle, which may have changed since.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::{Plan, PlanError};

/// A section the config lacks, as an empty one (oci-spec's `Default`s fill some in).
pub fn empty<T: serde::de::DeserializeOwned>() -> T {
    serde_json::from_str("{}").expect("an empty section parses")
}

#[derive(Debug, Clone)]
pub struct Config {
    pub spec: Spec,
    pub seccomp: Option<serde_json::Value>,
}

impl Config {
    /// `<bundle>/config.json`, naming the JSON path of any type error.
    pub fn read(bundle: &Path) -> Result<Config, PlanError> {
        let path = bundle.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| PlanError::Bundle {
            path: path.clone(),
            source,
        })?;
        parse(&bytes, &path)
    }

    /// The config a container was created with, saved in its state directory.
    pub fn read_saved(path: &Path) -> Result<Config, PlanError> {
        let bytes = std::fs::read(path).map_err(|source| PlanError::Saved {
            path: path.to_owned(),
            source,
        })?;
        parse(&bytes, path)
    }

    /// The config as saved at create: its seccomp section back in place, and the paths that
    /// planning resolved against the bundle (the rootfs, bind sources) absolute, so that nothing
    /// read from it later depends on the bundle.
    pub fn saved(&self, plan: &Plan) -> Vec<u8> {
        let mut spec = self.spec.clone();
        if let Some(root) = spec.root_mut() {
            root.set_path(plan.rootfs.clone());
        }
        if let Some(mounts) = spec.mounts_mut() {
            // One planned mount per configured one, in order.
            debug_assert_eq!(mounts.len(), plan.mounts.len());
            for (m, planned) in mounts.iter_mut().zip(&plan.mounts) {
                if planned.is_bind() {
                    m.set_source(planned.source.clone());
                }
            }
        }
        serde_json::to_vec(&json(&spec, self.seccomp.as_ref())).expect("JSON serializes")
    }

    /// The config as runtime-spec JSON.
    pub fn to_json(&self) -> serde_json::Value {
        json(&self.spec, self.seccomp.as_ref())
    }
}

/// A spec and its seccomp section as runtime-spec JSON: oci-spec's spellings undone.
fn json(spec: &Spec, seccomp: Option<&serde_json::Value>) -> serde_json::Value {
    let mut value = serde_json::to_value(spec).expect("a spec serializes");
    if let Some(p) = value.get_mut("process") {
        respell_sched_flags(p, Spelling::RuntimeSpec);
    }
    if let (Some(s), Some(linux)) = (seccomp, value.get_mut("linux")) {
        linux["seccomp"] = s.clone();
    }
    value
}

/// config.json's bytes (read from `path`) as the spec, and its seccomp section apart.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Config, PlanError> {
    let parse = |e: serde_path_to_error::Error<serde_json::Error>| {
        let at = e.path().to_string();
        let msg = if at == "." {
            e.inner().to_string()
        } else {
            format!("{at}: {}", e.inner())
        };
        PlanError::Parse {
            path: path.to_owned(),
            msg,
        }
    };
    let mut value: serde_json::Value =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
            .map_err(parse)?;
    check_top_level(&value)?;
    if let Some(p) = value.get_mut("process") {
        for_oci_spec(p);
    }
    let seccomp = value
        .get_mut("linux")
        .and_then(|l| l.as_object_mut())
        .and_then(|l| l.remove("seccomp"));
    let spec = serde_path_to_error::deserialize(value).map_err(parse)?;
    Ok(Config { spec, seccomp })
}

/// The other platforms' sections are refused (chitin runs Linux containers: such a config
/// was not written for it); keys the runtime-spec does not have are ignored with a warning.
fn check_top_level(spec: &serde_json::Value) -> Result<(), PlanError> {
    const KNOWN: [&str; 9] = [
        "ociVersion",
        "process",
        "root",
        "hostname",
        "domainname",
        "mounts",
        "hooks",
        "annotations",
        "linux",
    ];
    for key in spec.as_object().into_iter().flat_map(|m| m.keys()) {
        match key.as_str() {
            k if KNOWN.contains(&k) => {}
            k @ ("windows" | "solaris" | "vm" | "zos") => {
                return Err(PlanError::field(
                    k,
                    "chitin is a Linux runtime: this section is another platform's",
                ));
            }
            k => crate::logger::warn(&format!("config.json: unknown key {k:?} ignored")),
        }
    }
    Ok(())
}

/// Capability names this build does not know (a newer kernel's) are left out with a warning, as
/// runc 1.2 does, rather than refusing a config written for a newer runtime.
fn drop_unknown_capabilities(process: &mut serde_json::Value) {
    let Some(sets) = process
        .pointer_mut("/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return;
    };
    for (set, names) in sets.iter_mut() {
        let Some(names) = names.as_array_mut() else {
            continue;
        };
        names.retain(|n| {
            let known = n
                .as_str()
                .is_none_or(|n| n.parse::<caps::Capability>().is_ok());
            if !known {
                crate::logger::warn(&format!(
                    "process.capabilities.{set}: unknown capability {n} ignored"
                ));
            }
            known
        });
    }
}

/// A process as read (config.json's or `exec --process`'s), made what oci-spec takes: unknown
/// capabilities left out, the scheduler flags respelled, and an empty execCPUAffinity list (the
/// runtime-spec's "leave it to the kernel", which oci-spec refuses) as none.
pub fn for_oci_spec(process: &mut serde_json::Value) {
    drop_unknown_capabilities(process);
    respell_sched_flags(process, Spelling::OciSpec);
    if let Some(a) = process
        .get_mut("execCPUAffinity")
        .and_then(|a| a.as_object_mut())
    {
        a.retain(|_, v| v.as_str() != Some(""));
    }
}

/// oci-spec 0.10 spells two scheduler flags unlike the runtime-spec (which runc follows): the
/// runtime-spec's name and oci-spec's.
const SCHED_FLAG_SPELLINGS: [(&str, &str); 2] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    RuntimeSpec,
    OciSpec,
}

/// `process.scheduler.flags` in one spelling, as read (runtime-spec to oci-spec) or saved.
pub fn respell_sched_flags(process: &mut serde_json::Value, to: Spelling) {
    let Some(flags) = process
        .pointer_mut("/scheduler/flags")
        .and_then(|f| f.as_array_mut())
    else {
        return;
    };
    for f in flags.iter_mut() {
        let found = SCHED_FLAG_SPELLINGS.iter().find_map(|&(spec, oci)| {
            let (from, into) = if to == Spelling::OciSpec {
                (spec, oci)
            } else {
                (oci, spec)
            };
            (f.as_str() == Some(from)).then_some(into)
        });
        if let Some(name) = found {
            *f = name.into();
        }
    }
}
