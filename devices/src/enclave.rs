//! Enclave and confidential-computing devices: `org.chitin.devices.enclave` names them
//! (comma-separated), each granted as the host has it. Their misc minors are given out at boot,
//! so each comes from sysfs and is checked against the host's node.

use oci_spec::runtime::Mount;

use super::{Annotation, DeviceError, Grant, Host, Request};

pub const ANNOTATION: &str = "org.chitin.devices.enclave";

pub const ANNOTATIONS: [Annotation; 1] = [Annotation {
    key: ANNOTATION,
    what: "comma-separated: sgx (/dev/sgx_enclave), sgx-provision (/dev/sgx_provision), sev (/dev/sev), sev-guest (/dev/sev-guest), tdx-guest (/dev/tdx_guest), nitro (/dev/nitro_enclaves), tsm (configfs-tsm's /sys/kernel/config/tsm/report, for attestation reports)",
    unsafe_: true,
}];

/// The names the annotation takes and the misc device each is.
const NODES: [(&str, &str); 6] = [
    ("sgx", "sgx_enclave"),
    ("sgx-provision", "sgx_provision"),
    ("sev", "sev"),
    ("sev-guest", "sev-guest"),
    ("tdx-guest", "tdx_guest"),
    ("nitro", "nitro_enclaves"),
];

/// configfs-tsm's reports, which a container writes its nonce to and reads its quote from.
const TSM_REPORT: &str = "/sys/kernel/config/tsm/report";

pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Option<Grant>, DeviceError> {
    let Some(value) = req.annotations.get(ANNOTATION) else {
        return Ok(None);
    };
    let bad = |reason: String| DeviceError {
        annotation: ANNOTATION.into(),
        reason,
    };
    let mut grant = Grant {
        origin: "chitin's enclave devices".into(),
        ..Grant::default()
    };
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "tsm" {
            grant.mounts.extend(tsm(host).map_err(bad)?);
            continue;
        }
        let Some((_, misc)) = NODES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = NODES.iter().map(|(n, _)| *n).chain(["tsm"]).collect();
            return Err(bad(format!("{name:?} is not one of {}", names.join(", "))));
        };
        if let Some(i) = dev_noexec(req.mounts).filter(|_| name == "sgx") {
            return Err(bad(format!(
                "an SGX enclave is mapped executable from /dev/sgx_enclave, and this container's /dev is mounted noexec (mounts[{i}].options)"
            )));
        }
        let node = host.char_dev("misc", misc).map_err(bad)?;
        let path = format!("/dev/{misc}");
        if !grant
            .devices
            .iter()
            .any(|d| d.path().to_str() == Some(&path))
        {
            grant.char_device(&path, &node);
        }
    }
    Ok(Some(grant))
}

/// The index of the mount that makes the container's /dev noexec, if one does.
fn dev_noexec(mounts: &[Mount]) -> Option<usize> {
    let i = mounts
        .iter()
        .rposition(|m| m.destination().to_str() == Some("/dev"))?;
    let noexec = mounts[i].options().as_ref()?.iter().any(|o| o == "noexec");
    noexec.then_some(i)
}

/// The host's report directory bound into the container, over a tmpfs at /sys/kernel/config
/// (the container's sysfs has only the empty directory configfs mounts on, and the rest of
/// configfs stays the host's). configfs-tsm has no namespaces: containers given it share its
/// report entries with each other and the host.
fn tsm(host: &Host) -> Result<Vec<Mount>, String> {
    let report = host.path(std::path::Path::new(TSM_REPORT));
    if !report.is_dir() {
        return Err(format!(
            "{TSM_REPORT} is not on this host (configfs-tsm: Linux 6.7 and a TDX, SEV-SNP or Arm CCA guest)"
        ));
    }
    let mut over = Mount::default();
    over.set_destination("/sys/kernel/config".into());
    over.set_typ(Some("tmpfs".into()));
    over.set_source(Some("tmpfs".into()));
    over.set_options(Some(
        ["nosuid", "nodev", "noexec", "mode=755", "size=64k"]
            .map(String::from)
            .to_vec(),
    ));
    let mut bind = Mount::default();
    bind.set_destination(TSM_REPORT.into());
    bind.set_typ(Some("bind".into()));
    bind.set_source(Some(TSM_REPORT.into()));
    bind.set_options(Some(
        ["rbind", "nosuid", "nodev", "noexec"]
            .map(String::from)
            .to_vec(),
    ));
    Ok(vec![over, bind])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tree, annotations, nodes, request};

    /// A host with SGX's two misc devices (minors as a 6.x kernel gives them) and configfs-tsm.
    fn tree() -> Tree {
        let t = Tree::new("enclave");
        let root = t.0.clone();
        for (name, minor) in [("sgx_enclave", 125), ("sgx_provision", 126)] {
            let dir = root.join("sys/class/misc").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("dev"), format!("10:{minor}\n")).unwrap();
        }
        std::fs::create_dir_all(root.join("sys/kernel/config/tsm/report")).unwrap();
        t
    }

    fn ask(host: &Host, value: &str, mounts: &[Mount]) -> Result<Option<Grant>, DeviceError> {
        let a = annotations(&[(ANNOTATION, value)]);
        resolve(host, &request(&a, 0, mounts))
    }

    #[test]
    fn each_name_is_its_node_and_rule() {
        let t = tree();
        let host = Host::at(&t.0);
        let g = ask(&host, "sgx,sgx-provision,sgx", &[]).unwrap().unwrap();
        assert_eq!(
            nodes(&g),
            [
                ("/dev/sgx_enclave".into(), 10, 125),
                ("/dev/sgx_provision".into(), 10, 126)
            ]
        );
        assert_eq!(g.device_rules.len(), 2);
        assert_eq!(g.device_rules[1].minor(), Some(126));
        let g = ask(&host, "tsm", &[]).unwrap().unwrap();
        let dests: Vec<_> = g
            .mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(dests, ["/sys/kernel/config", TSM_REPORT]);
        assert_eq!(ask(&Host::at(&t.0), "", &[]).unwrap().unwrap().devices, []);
    }

    #[test]
    fn what_the_host_lacks_or_the_config_forbids_is_refused() {
        let t = tree();
        let host = Host::at(&t.0);
        let e = ask(&host, "sev-guest", &[]).unwrap_err();
        assert_eq!(e.annotation, ANNOTATION);
        assert!(
            e.reason
                .starts_with("no misc device sev-guest on this host"),
            "{}",
            e.reason
        );
        let e = ask(&host, "sgx2", &[]).unwrap_err();
        assert!(
            e.reason
                .starts_with("\"sgx2\" is not one of sgx, sgx-provision"),
            "{}",
            e.reason
        );
        let mut dev = Mount::default();
        dev.set_destination("/dev".into());
        dev.set_options(Some(vec!["nosuid".into(), "noexec".into()]));
        let e = ask(&host, "sgx", &[dev.clone()]).unwrap_err();
        assert!(e.reason.contains("/dev is mounted noexec"), "{}", e.reason);
        // Provisioning alone maps nothing executable.
        assert!(ask(&host, "sgx-provision", &[dev]).is_ok());
        let e = ask(&Host::at(&t.0.join("none")), "tsm", &[]).unwrap_err();
        assert!(
            e.reason
                .starts_with("/sys/kernel/config/tsm/report is not on this host"),
            "{}",
            e.reason
        );
    }
}
