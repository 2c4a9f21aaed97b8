//! CDI's names: qualified device names (`vendor.com/class=name`) and the annotations that
//! request them.

use std::collections::BTreeMap;

use crate::DeviceError;

/// chitin's own annotation: CDI device names, comma-separated.
pub const ANNOTATION: &str = "org.chitin.devices.cdi";

/// The prefix of the annotations that Kubernetes device plugins and CDI's own tools write:
/// `cdi.k8s.io/<plugin>_<device>`, each a comma-separated list of names.
pub const K8S_PREFIX: &str = "cdi.k8s.io/";

/// A device asked for, with the annotation that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub kind: String,
    pub name: String,
    pub annotation: String,
}

impl Requested {
    pub fn qualified(&self) -> String {
        format!("{}={}", self.kind, self.name)
    }
}

/// The devices the annotations ask for, in the annotations' order, each once.
pub fn requested(annotations: &BTreeMap<String, String>) -> Result<Vec<Requested>, DeviceError> {
    let mut out: Vec<Requested> = Vec::new();
    for (key, value) in annotations {
        let ours = key == ANNOTATION;
        if !ours && !key.starts_with(K8S_PREFIX) {
            continue;
        }
        let bad = |reason: String| DeviceError {
            annotation: key.clone(),
            reason,
        };
        if !ours {
            annotation_key(&key[K8S_PREFIX.len()..]).map_err(bad)?;
        }
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (kind, device) = qualified(name).map_err(|e| bad(format!("{name:?}: {e}")))?;
            if !out.iter().any(|r| r.kind == kind && r.name == device) {
                out.push(Requested {
                    kind: kind.into(),
                    name: device.into(),
                    annotation: key.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// `vendor.com/class=name` as (`vendor.com/class`, `name`).
pub fn qualified(s: &str) -> Result<(&str, &str), String> {
    let (kind, name) = s
        .split_once('=')
        .ok_or("a CDI device name is vendor.com/class=name")?;
    kind_name(kind)?;
    device_name(name)?;
    Ok((kind, name))
}

/// A spec's `kind`: `vendor.com/class`.
pub fn kind_name(kind: &str) -> Result<(), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind {kind:?} is not vendor.com/class"))?;
    for (what, s) in [("vendor", vendor), ("class", class)] {
        if !token(s, |c| c.is_ascii_alphabetic(), "-_.") {
            return Err(format!(
                "{what} {s:?} is not a letter, then letters, digits or -_., ending in a letter or digit"
            ));
        }
    }
    Ok(())
}

/// A device's name within its kind: letters and digits, with `-_.:` inside.
pub fn device_name(name: &str) -> Result<(), String> {
    if !token(name, |c| c.is_ascii_alphanumeric(), "-_.:") {
        return Err(format!(
            "device name {name:?} is not letters and digits with -_.: inside"
        ));
    }
    Ok(())
}

/// The part of a `cdi.k8s.io/` key after the prefix: up to 63 characters, letters and digits
/// at both ends, `-_.` inside.
fn annotation_key(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("the name after cdi.k8s.io/ is longer than 63 characters".into());
    }
    if !token(name, |c| c.is_ascii_alphanumeric(), "-_.") {
        return Err(format!(
            "{name:?} after cdi.k8s.io/ is not letters and digits with -_. inside"
        ));
    }
    Ok(())
}

/// `first` holds for the first character, the last is a letter or digit, and the others are
/// letters, digits or in `inside`.
fn token(s: &str, first: fn(char) -> bool, inside: &str) -> bool {
    s.chars().next().is_some_and(first)
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || inside.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::annotations as a;

    #[test]
    fn names_come_from_both_annotations_each_once() {
        let r = requested(&a(&[
            (
                "cdi.k8s.io/gpu-plugin_dev0",
                "nvidia.com/gpu=0,nvidia.com/gpu=1",
            ),
            (ANNOTATION, "nvidia.com/gpu=1, vendor.example/fpga=a:b"),
            ("io.other", "x=y"),
        ]))
        .unwrap();
        let names: Vec<_> = r
            .iter()
            .map(|r| (r.qualified(), r.annotation.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("nvidia.com/gpu=0".to_string(), "cdi.k8s.io/gpu-plugin_dev0"),
                ("nvidia.com/gpu=1".to_string(), "cdi.k8s.io/gpu-plugin_dev0"),
                ("vendor.example/fpga=a:b".to_string(), ANNOTATION),
            ]
        );
    }

    #[test]
    fn a_bad_name_or_key_names_its_annotation() {
        let e = requested(&a(&[(ANNOTATION, "nvidia.com/gpu")])).unwrap_err();
        assert_eq!(e.annotation, ANNOTATION);
        assert!(
            e.reason.contains("is vendor.com/class=name"),
            "{}",
            e.reason
        );
        let e = requested(&a(&[(ANNOTATION, "nvidia.com/gpu=-0")])).unwrap_err();
        assert!(e.reason.contains("device name \"-0\""), "{}", e.reason);
        let e = requested(&a(&[(ANNOTATION, "9vendor/gpu=0")])).unwrap_err();
        assert!(e.reason.contains("vendor \"9vendor\""), "{}", e.reason);
        let e = requested(&a(&[("cdi.k8s.io/_x", "nvidia.com/gpu=0")])).unwrap_err();
        assert_eq!(e.annotation, "cdi.k8s.io/_x");
        assert!(e.reason.contains("after cdi.k8s.io/"), "{}", e.reason);
    }
}
