//! Security profiles (profiles/security): `org.chitin.profile.security=NAME` restricts a
//! container and never widens it. What the runtime-spec can say is applied to the config by the
//! edit seam's last stage (edits::security), so the effective config shows it; what it cannot
//! say is planned from the annotation, which the effective config keeps: a seccomp filter
//! stacked beneath the config's own, nosuid/nodev on the rootfs, and the narrowing of every
//! exec'd process.
//!
//! The rule that separates narrowing from refusing: what clients give every container unasked
//! (Docker's default capabilities, a missing `noNewPrivileges`, mount options left at their
//! defaults) is narrowed; what a config asks for explicitly and the profile forbids (a
//! capability beyond Docker's defaults, `noNewPrivileges: false`, a `suid`, `dev` or read-write
//! /sys mount, AppArmor `unconfined`) fails, naming the field and the profile.

use serde::Deserialize;

use super::PlanError;
use super::process::CapSets;

/// The annotation that names a shipped security profile.
pub const ANNOTATION: &str = "org.chitin.profile.security";

/// The shipped profiles, by name.
pub const SHIPPED: &[(&str, &str)] = &[(
    "hardened",
    include_str!("../../profiles/security/hardened.json"),
)];

/// The shipped profiles' names.
pub fn names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(n, _)| *n).collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityProfile {
    pub description: String,
    pub capabilities: CapRule,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// A shipped seccomp profile (crate::profiles) for a config without one.
    pub seccomp_base: String,
    /// A seccomp profile (with chitinHosts entries) loaded beneath the container's own: the
    /// kernel runs both and the stricter answer wins, so no rule of the config can allow what
    /// this one denies.
    pub seccomp_beneath: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapRule {
    /// What a container may keep.
    pub keep: Vec<String>,
    /// What is dropped without a word (clients give it every container unasked); any other
    /// capability is refused.
    pub narrow: Vec<String>,
}

/// What becomes of a capability under the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapVerdict {
    Keep,
    Drop,
    Forbid,
}

/// A security profile with its name.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub profile: &'static SecurityProfile,
}

impl Named {
    /// The profile a config's annotation names, or None without the annotation.
    pub fn of(spec: &oci_spec::runtime::Spec) -> Result<Option<Named>, PlanError> {
        let value = (spec.annotations().as_ref()).and_then(|a| a.get(ANNOTATION));
        Named::from_annotation(value.map(String::as_str))
    }

    /// The profile the annotation's value names, or None without the annotation.
    pub fn from_annotation(value: Option<&str>) -> Result<Option<Named>, PlanError> {
        let Some(name) = value else {
            return Ok(None);
        };
        let Some(i) = SHIPPED.iter().position(|(n, _)| *n == name) else {
            return Err(PlanError::field(
                &format!("annotations[{ANNOTATION:?}]"),
                format!(
                    "no security profile {name:?} (chitin has: {})",
                    names().join(", ")
                ),
            ));
        };
        // Parsed once a process: create reads it in the edit stage and again while planning.
        static PARSED: std::sync::OnceLock<Vec<SecurityProfile>> = std::sync::OnceLock::new();
        let parsed = PARSED.get_or_init(|| {
            (SHIPPED.iter())
                .map(|(_, text)| serde_json::from_str(text).expect("a shipped profile parses"))
                .collect()
        });
        Ok(Some(Named {
            name: name.to_owned(),
            profile: &parsed[i],
        }))
    }

    pub fn verdict(&self, cap: &str) -> CapVerdict {
        let c = &self.profile.capabilities;
        if c.keep.iter().any(|k| k == cap) {
            CapVerdict::Keep
        } else if c.narrow.iter().any(|k| k == cap) {
            CapVerdict::Drop
        } else {
            CapVerdict::Forbid
        }
    }

    /// The error for a config `field` that asks for `what`, which the profile forbids.
    pub fn forbidden(&self, field: &str, what: impl std::fmt::Display) -> PlanError {
        PlanError::field(field, self.why(what))
    }

    /// The error for a command-line flag that asks for `what`.
    pub fn forbidden_flag(&self, flag: &str, what: impl std::fmt::Display) -> PlanError {
        PlanError::Options(format!("{flag}: {}", self.why(what)))
    }

    fn why(&self, what: impl std::fmt::Display) -> String {
        format!(
            "{what} is forbidden by security profile {} ({ANNOTATION})",
            self.name
        )
    }

    /// The filter stacked beneath the config's, for this host's ABIs.
    pub fn beneath(&self, native: chitin_arch::Arch) -> Result<crate::seccomp::Profile, PlanError> {
        let v = crate::profiles::for_host(self.profile.seccomp_beneath.clone(), native);
        Ok(crate::seccomp::from_json(v)?)
    }

    /// An exec'd process's capabilities (`--cap`, `--process`), narrowed the same way as the
    /// config's; `what` names where they came from.
    pub fn restrict_caps(&self, caps: &mut CapSets, what: &str) -> Result<(), PlanError> {
        for set in [
            &mut caps.bounding,
            &mut caps.effective,
            &mut caps.inheritable,
            &mut caps.permitted,
            &mut caps.ambient,
        ] {
            if let Some(c) = set
                .iter()
                .find(|c| self.verdict(&c.to_string()) == CapVerdict::Forbid)
            {
                return Err(self.forbidden_flag(what, c));
            }
            set.retain(|c| self.verdict(&c.to_string()) == CapVerdict::Keep);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitin_arch::Arch;

    #[test]
    fn hardened_parses_and_resolves_for_every_host() {
        let h = Named::from_annotation(Some("hardened")).unwrap().unwrap();
        assert_eq!(h.verdict("CAP_CHOWN"), CapVerdict::Keep);
        assert_eq!(h.verdict("CAP_NET_RAW"), CapVerdict::Drop);
        assert_eq!(h.verdict("CAP_SYS_ADMIN"), CapVerdict::Forbid);
        for native in Arch::HOSTS {
            let p = h.beneath(native).unwrap();
            let clones: Vec<_> = p.rules.iter().filter(|r| r.names == ["clone"]).collect();
            assert_eq!(clones.len(), 1, "{native:?}");
            let flags_arg = if native == Arch::S390x { 1 } else { 0 };
            assert_eq!(clones[0].args[0].index, flags_arg, "{native:?}");
            crate::seccomp::compile::compile(&p).unwrap();
        }
        assert!(crate::profiles::seccomp(&h.profile.seccomp_base, Arch::X86_64).is_some());
    }

    #[test]
    fn unknown_profile_names_the_annotation() {
        let e = Named::from_annotation(Some("paranoid")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: annotations[\"org.chitin.profile.security\"]: no security profile \"paranoid\" (chitin has: hardened)"
        );
    }

    #[test]
    fn exec_caps_narrow_or_fail() {
        let h = Named::from_annotation(Some("hardened")).unwrap().unwrap();
        let mut caps = CapSets::default();
        caps.bounding.insert(caps::Capability::CAP_CHOWN);
        caps.bounding.insert(caps::Capability::CAP_NET_RAW);
        h.restrict_caps(&mut caps, "--cap").unwrap();
        assert_eq!(caps.bounding.len(), 1);
        caps.effective.insert(caps::Capability::CAP_SYS_PTRACE);
        let e = h.restrict_caps(&mut caps, "--cap").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--cap: CAP_SYS_PTRACE is forbidden by security profile hardened (org.chitin.profile.security)"
        );
    }
}
