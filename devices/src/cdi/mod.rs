//! CDI (container-device-interface spec 1.1): the devices that `org.chitin.devices.cdi` and
//! `cdi.k8s.io/*` annotations name, granted from the spec files of the host's CDI directories.
//! Each requested device is one grant, after its spec's own edits (once per spec, as in the
//! reference library); each spec file used is measured with the container.

mod edits;
mod names;
mod registry;
mod spec;
mod trust;
mod validate;
mod version;

use super::{Action, Annotation, DeviceError, Grant, Host, Request};
use registry::Registry;

pub use names::{ANNOTATION, K8S_PREFIX};

pub const ANNOTATIONS: [Annotation; 2] = [
    Annotation {
        key: ANNOTATION,
        what: "CDI device names (vendor.com/class=name), comma-separated: each device's edits from the CDI spec files in --cdi-spec-dirs",
        unsafe_: true,
    },
    Annotation {
        // A prefix: every key below it is read, as features lists prefixes.
        key: K8S_PREFIX,
        what: "any annotation below this prefix: CDI device names, comma-separated, as device plugins write them; the same as org.chitin.devices.cdi",
        unsafe_: true,
    },
];

pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Vec<Grant>, DeviceError> {
    let wanted = names::requested(req.annotations)?;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let registry = Registry::load(&host.cdi_dirs);
    let mut grants = Vec::new();
    let mut specs_used: Vec<usize> = Vec::new();
    for w in &wanted {
        let bad = |reason: String| DeviceError {
            annotation: w.annotation.clone(),
            reason,
        };
        let found = registry.find(&w.qualified()).map_err(bad)?;
        let file = &registry.files[found.file];
        let at = |field: String| edits::At {
            file: &file.path,
            field,
        };
        if !specs_used.contains(&found.file) {
            specs_used.push(found.file);
            let mut g = edits::grant(
                host,
                req,
                &file.spec.container_edits,
                at("containerEdits".into()),
            )
            .map_err(bad)?;
            g.origin = format!("CDI {} ({})", file.spec.kind, file.path.display());
            g.actions.push(Action::Digest {
                file: file.path.display().to_string(),
                sha256: file.sha256.clone(),
            });
            grants.push(g);
        }
        let device = &file.spec.devices[found.device];
        let field = format!("devices[{}].containerEdits", found.device);
        let mut g = edits::grant(host, req, &device.container_edits, at(field)).map_err(bad)?;
        g.origin = format!("CDI {} ({})", w.qualified(), file.path.display());
        grants.push(g);
    }
    Ok(grants)
}

#[cfg(test)]
mod tests;
