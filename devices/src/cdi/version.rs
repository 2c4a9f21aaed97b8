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

/// The least version whose fields `spec` uses, with the first field that needs it. The
/// reference library computes 0.3.0 at least, yet takes a spec that declares 0.1.0 or 0.2.0 and
/// needs nothing newer: so does chitin.
fn needed(spec: &Spec) -> (usize, String) {
    let mut need = (0, String::new());
    let mut at_least = |v: &str, why: String| {
        let i = index(v).expect("a known version");
        if i > need.0 {
            need = (i, why);
        }
    };
    edits_need(&spec.container_edits, "containerEdits", &mut at_least);
    for (i, d) in spec.devices.iter().enumerate() {
        edits_need(
            &d.container_edits,
            &format!("devices[{i}].containerEdits"),
            &mut at_least,
        );
        if d.name.starts_with(|c: char| c.is_ascii_digit()) {
            at_least(
                "0.5.0",
                format!("devices[{i}].name, which starts with a digit"),
            );
        }
        if !d.annotations.is_empty() {
            at_least("0.6.0", format!("devices[{i}].annotations"));
        }
    }
    if !spec.annotations.is_empty() {
        at_least("0.6.0", "annotations".into());
    }
    if spec
        .kind
        .split_once('/')
        .is_some_and(|(_, class)| class.contains('.'))
    {
        at_least("0.6.0", "kind, whose class has a dot".into());
    }
    need
}

fn edits_need(e: &ContainerEdits, at: &str, at_least: &mut impl FnMut(&str, String)) {
    if let Some(i) = e.mounts.iter().position(|m| !m.typ.is_empty()) {
        at_least("0.4.0", format!("{at}.mounts[{i}].type"));
    }
    if let Some(i) = e.device_nodes.iter().position(|d| !d.host_path.is_empty()) {
        at_least("0.5.0", format!("{at}.deviceNodes[{i}].hostPath"));
    }
    if e.intel_rdt.is_some() {
        at_least("0.7.0", format!("{at}.intelRdt"));
    }
    if !e.additional_gids.is_empty() {
        at_least("0.7.0", format!("{at}.additionalGids"));
    }
    if !e.net_devices.is_empty() {
        at_least("1.1.0", format!("{at}.netDevices"));
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
