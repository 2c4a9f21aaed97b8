//! The checks a spec file passes when it is read, each error naming the JSON path of what it
//! refuses. What is valid CDI but cannot be granted here (intelRdt) is refused only
//! when a device that uses it is asked for.

use super::names;
use super::spec::{ContainerEdits, Spec};

pub fn spec(spec: &Spec) -> Result<(), String> {
    if spec.devices.is_empty() {
        return Err("devices: a CDI spec defines at least one device".into());
    }
    edits(&spec.container_edits, "containerEdits")?;
    for (i, d) in spec.devices.iter().enumerate() {
        let at = format!("devices[{i}]");
        names::device_name(&d.name).map_err(|e| format!("{at}.name: {e}"))?;
        if spec.devices[..i].iter().any(|o| o.name == d.name) {
            return Err(format!("{at}.name: {:?} is defined twice", d.name));
        }
        if d.container_edits.is_empty() {
            return Err(format!("{at}.containerEdits: a device edits something"));
        }
        edits(&d.container_edits, &format!("{at}.containerEdits"))?;
    }
    Ok(())
}

/// KEY=VALUE with a name before the `=`.
fn env(entries: &[String], at: &str) -> Result<(), String> {
    for (i, e) in entries.iter().enumerate() {
        if e.find('=').is_none_or(|n| n == 0) {
            return Err(format!("{at}[{i}]: {e:?} is not NAME=VALUE"));
        }
    }
    Ok(())
}

fn absolute(p: &str, at: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{at}: {p:?} is not an absolute path"));
    }
    Ok(())
}

const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn edits(e: &ContainerEdits, at: &str) -> Result<(), String> {
    env(&e.env, &format!("{at}.env"))?;
    for (i, n) in e.device_nodes.iter().enumerate() {
        let at = format!("{at}.deviceNodes[{i}]");
        absolute(&n.path, &format!("{at}.path"))?;
        if !n.host_path.is_empty() {
            absolute(&n.host_path, &format!("{at}.hostPath"))?;
        }
        if !["", "b", "c", "u", "p"].contains(&n.typ.as_str()) {
            return Err(format!("{at}.type: {:?} is not b, c, u or p", n.typ));
        }
        if !n.permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(format!(
                "{at}.permissions: {:?} is not made of r, w and m",
                n.permissions
            ));
        }
        for (field, v) in [("major", n.major), ("minor", n.minor)] {
            if v < 0 {
                return Err(format!(
                    "{at}.{field}: {v} is negative (a wildcard, not a device)"
                ));
            }
        }
    }
    for (i, h) in e.hooks.iter().enumerate() {
        let at = format!("{at}.hooks[{i}]");
        if !HOOKS.contains(&h.hook_name.as_str()) {
            return Err(format!(
                "{at}.hookName: {:?} is not one of {}",
                h.hook_name,
                HOOKS.join(", ")
            ));
        }
        // The spec says MUST; the reference library does not check it.
        absolute(&h.path, &format!("{at}.path"))?;
        env(&h.env, &format!("{at}.env"))?;
        if h.timeout.is_some_and(|t| t <= 0) {
            return Err(format!("{at}.timeout: a timeout is more than 0 seconds"));
        }
    }
    for (i, m) in e.mounts.iter().enumerate() {
        let at = format!("{at}.mounts[{i}]");
        if m.host_path.is_empty() {
            return Err(format!("{at}.hostPath: a mount has a source"));
        }
        absolute(&m.container_path, &format!("{at}.containerPath"))?;
    }
    for (i, n) in e.net_devices.iter().enumerate() {
        if n.host_interface_name.is_empty() || n.name.is_empty() {
            return Err(format!(
                "{at}.netDevices[{i}]: hostInterfaceName and name are both needed"
            ));
        }
    }
    Ok(())
}
