//! The last stage of the edit seam: a security profile (plan::hardening) over the config every
//! provider has edited. It only takes away: capabilities outside its set, mount options, a
//! missing no_new_privs; it adds masks, read-only paths and, where the config has no seccomp
//! section, its base profile. An explicit request it forbids fails, naming the field (and the
//! provider that set it) and the profile.

use std::path::Path;

use oci_spec::runtime::{Capabilities, LinuxCapabilities, Mount, Process};

use super::Provenance;
use crate::plan::hardening::{ANNOTATION, CapVerdict, Named};
use crate::plan::{Config, PlanError};

/// Applies the profile the config's annotation names, if any.
pub fn restrict(config: &mut Config, provenance: &Provenance) -> Result<(), PlanError> {
    let named = Named::from_annotation(
        (config.spec.annotations().as_ref())
            .and_then(|a| a.get(ANNOTATION))
            .map(String::as_str),
    )?;
    let Some(s) = named else {
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
