//! The TPM: `org.chitin.tpm.measure` asks for the container to be measured into a PCR before it
//! starts (an action); `org.chitin.tpm.device` passes the kernel's resource manager, /dev/tpmrm0,
//! into the container.

use super::{Action, Annotation, DeviceError, Grant, Host, Request, flag};

pub const MEASURE: &str = "org.chitin.tpm.measure";
pub const DEVICE: &str = "org.chitin.tpm.device";
pub const ROOTFS: &str = "org.chitin.tpm.rootfs";

/// The PCR a measurement goes to by default: the debug PCR, which no boot component uses, and
/// which systemd and the UAPI PCR registry leave alone.
pub const DEFAULT_PCR: u32 = 16;

/// The PCRs a container may be measured into: those the platform does not extend at boot (0-15
/// belong to firmware, boot loader and OS, 17-22 to the dynamic root of trust): 16, the debug
/// PCR, and 23, the application's.
const PCRS: [u32; 2] = [16, 23];

pub const ANNOTATIONS: [Annotation; 3] = [
    Annotation {
        key: MEASURE,
        what: "\"true\" or a PCR number (16, the default, or 23): before start, extend the PCR with the digest of the container's effective config and image, logged under --root",
        unsafe_: false,
    },
    Annotation {
        key: ROOTFS,
        what: "\"true\", with org.chitin.tpm.measure: the measurement covers a digest of the rootfs tree (names, kinds, modes, owners, contents, link targets), taken at start",
        unsafe_: false,
    },
    Annotation {
        key: DEVICE,
        what: "\"true\": the host's TPM resource manager /dev/tpmrm0 in the container",
        unsafe_: true,
    },
];

/// The PCR `org.chitin.tpm.measure` names, if any.
fn pcr(req: &Request<'_>) -> Result<Option<u32>, DeviceError> {
    let bad = |reason: String| DeviceError {
        annotation: MEASURE.into(),
        reason,
    };
    match req.annotations.get(MEASURE).map(String::as_str) {
        None | Some("false") => Ok(None),
        Some("true") => Ok(Some(DEFAULT_PCR)),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if PCRS.contains(&n) => Ok(Some(n)),
            Ok(n) => Err(bad(format!(
                "PCR {n} is not one for containers: 16 (the default) or 23"
            ))),
            Err(_) => Err(bad(format!("{v:?} is not true, false or a PCR number"))),
        },
    }
}

pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Option<Grant>, DeviceError> {
    let measure = pcr(req)?;
    let device = flag(req, DEVICE)?;
    let rootfs = flag(req, ROOTFS)?;
    if rootfs && measure.is_none() {
        return Err(DeviceError {
            annotation: ROOTFS.into(),
            reason: format!("needs {MEASURE}"),
        });
    }
    if measure.is_none() && !device {
        return Ok(None);
    }
    let mut grant = Grant {
        origin: "chitin's TPM provider".into(),
        ..Grant::default()
    };
    if let Some(pcr) = measure {
        grant.actions.push(Action::Measure { pcr });
    }
    if rootfs {
        grant.actions.push(Action::MeasureRootfs);
    }
    if device {
        let node = host
            .char_dev("tpmrm", "tpmrm0")
            .map_err(|reason| DeviceError {
                annotation: DEVICE.into(),
                reason,
            })?;
        grant.char_device("/dev/tpmrm0", &node);
    }
    Ok(Some(grant))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testing::{Tree, annotations as req, request};

    /// A host with the kernel's TPM resource manager.
    fn fake_host(name: &str) -> (Host, Tree) {
        let t = Tree::new(name);
        let dir = t.0.join("sys/class/tpmrm/tpmrm0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dev"), "253:65536\n").unwrap();
        (Host::at(&t.0), t)
    }

    #[test]
    fn measure_takes_true_or_the_pcr() {
        let (host, _tree) = fake_host("tpm-measure");
        let grant = |a: &BTreeMap<String, String>| resolve(&host, &request(a, 0, &[]));
        assert_eq!(grant(&req(&[])).unwrap(), None);
        assert_eq!(grant(&req(&[(MEASURE, "false")])).unwrap(), None);
        let g = grant(&req(&[(MEASURE, "true")])).unwrap().unwrap();
        assert_eq!(g.actions, [Action::Measure { pcr: 16 }]);
        assert!(g.devices.is_empty());
        let g = grant(&req(&[(MEASURE, "23")])).unwrap().unwrap();
        assert_eq!(g.actions, [Action::Measure { pcr: 23 }]);
        let e = grant(&req(&[(MEASURE, "7")])).unwrap_err().to_string();
        assert_eq!(
            e,
            "annotations[\"org.chitin.tpm.measure\"]: PCR 7 is not one for containers: 16 (the default) or 23"
        );
        let e = grant(&req(&[(MEASURE, "yes")])).unwrap_err().to_string();
        assert!(
            e.contains("\"yes\" is not true, false or a PCR number"),
            "{e}"
        );
    }

    #[test]
    fn the_device_comes_with_its_rule_or_names_what_is_missing() {
        let (host, tree) = fake_host("tpm-device");
        let a = req(&[(DEVICE, "true")]);
        let g = resolve(&host, &request(&a, 0, &[])).unwrap().unwrap();
        let d = &g.devices[0];
        assert_eq!(
            (d.path().to_str(), d.major(), d.minor()),
            (Some("/dev/tpmrm0"), 253, 65536)
        );
        let r = &g.device_rules[0];
        assert_eq!(
            (r.allow(), r.major(), r.minor(), r.access().as_deref()),
            (true, Some(253), Some(65536), Some("rw"))
        );
        let none = Host::at(&tree.0.join("nothing"));
        let e = resolve(&none, &request(&a, 0, &[])).unwrap_err();
        assert_eq!(e.annotation, DEVICE);
        assert!(
            e.reason.starts_with("no tpmrm device tpmrm0 on this host"),
            "{}",
            e.reason
        );
    }
}
