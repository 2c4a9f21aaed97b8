//! CDI's versions: the ones a spec may declare, and the least one that the fields it uses need
//! (a spec that declares less is refused, as in the reference loader).

use super::spec::{ContainerEdits, Spec};

/// In order; 0.8.0 and 1.0.0 changed only the Go API, so no field needs them.
const KNOWN: [&str; 10] = [
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];

fn index(v: &str) -> Option<usize> {
    let v = v.strip_prefix('v').unwrap_or(v);
    KNOWN.iter().position(|k| *k == v)
}

/// The least version whose fields `spec` uses, with the field that needs it.
fn needed(spec: &Spec) -> (usize, &'static str) {
    let mut need = (index("0.3.0").unwrap(), "");
    let mut at_least = |v: &str, why: &'static str| {
        let i = index(v).unwrap();
        if i > need.0 {
            need = (i, why);
        }
    };
    let edits = std::iter::once(&spec.container_edits)
        .chain(spec.devices.iter().map(|d| &d.container_edits));
    for e in edits {
        edits_need(e, &mut at_least);
    }
    if spec
        .devices
        .iter()
        .any(|d| d.name.starts_with(|c: char| c.is_ascii_digit()))
    {
        at_least("0.5.0", "a device name that starts with a digit");
    }
    if !spec.annotations.is_empty() || spec.devices.iter().any(|d| !d.annotations.is_empty()) {
        at_least("0.6.0", "annotations");
    }
    if spec
        .kind
        .split_once('/')
        .is_some_and(|(_, class)| class.contains('.'))
    {
        at_least("0.6.0", "a dot in the kind's class");
    }
    need
}

fn edits_need(e: &ContainerEdits, at_least: &mut impl FnMut(&str, &'static str)) {
    if e.mounts.iter().any(|m| !m.typ.is_empty()) {
        at_least("0.4.0", "mounts[].type");
    }
    if e.device_nodes.iter().any(|d| !d.host_path.is_empty()) {
        at_least("0.5.0", "deviceNodes[].hostPath");
    }
    if e.intel_rdt.is_some() {
        at_least("0.7.0", "intelRdt");
    }
    if !e.additional_gids.is_empty() {
        at_least("0.7.0", "additionalGids");
    }
    if !e.net_devices.is_empty() {
        at_least("1.1.0", "netDevices");
    }
}

/// Refuses a version CDI does not define, and one below what the spec's fields need.
pub fn check(spec: &Spec) -> Result<(), String> {
    let declared = index(&spec.cdi_version).ok_or_else(|| {
        format!(
            "cdiVersion {:?} is not a CDI version (0.1.0 to {})",
            spec.cdi_version,
            KNOWN[KNOWN.len() - 1]
        )
    })?;
    let (need, why) = needed(spec);
    if need > declared {
        return Err(format!(
            "cdiVersion {:?} is too old for {why}, which needs {}",
            spec.cdi_version, KNOWN[need]
        ));
    }
    Ok(())
}
