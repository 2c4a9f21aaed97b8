//! The NUMA node of the PCI devices a container was given, read from the effective config (the
//! device providers have run) and sysfs through `Host`: a VFIO group's functions, and the
//! network interfaces handed over (SR-IOV VFs, through netDevices).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::plan::host::Host;

/// The one node every such device is on; None when none has a node (a machine without NUMA,
/// or no device). Devices on different nodes are an error: no node is near them all.
pub fn devices_node(spec: &Spec, host: &dyn Host) -> Result<Option<usize>, String> {
    let linux = spec.linux().as_ref();
    let mut functions: Vec<(String, PathBuf)> = Vec::new();
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let Ok(rel) = d.path().strip_prefix("/dev/vfio") else {
            continue;
        };
        let Some(group) = rel.to_str().filter(|g| g.parse::<u32>().is_ok()) else {
            continue;
        };
        let dir = Path::new("/sys/kernel/iommu_groups")
            .join(group)
            .join("devices");
        for addr in host
            .list_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
        {
            let file = Path::new("/sys/bus/pci/devices")
                .join(&addr)
                .join("numa_node");
            functions.push((addr, file));
        }
    }
    for name in linux
        .and_then(|l| l.net_devices().as_ref())
        .into_iter()
        .flat_map(|m| m.keys())
    {
        let file = Path::new("/sys/class/net")
            .join(name)
            .join("device/numa_node");
        functions.push((name.clone(), file));
    }
    let mut nodes: BTreeSet<(usize, String)> = BTreeSet::new();
    for (what, file) in functions {
        // A virtual interface has no device: it is on no node.
        let Ok(text) = host.read_file(&file) else {
            continue;
        };
        let n: i64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{}: {:?} is not a node", file.display(), text.trim()))?;
        if let Ok(n) = usize::try_from(n) {
            nodes.insert((n, what));
        }
    }
    let mut distinct = nodes
        .iter()
        .map(|(n, _)| *n)
        .collect::<BTreeSet<_>>()
        .into_iter();
    match (distinct.next(), distinct.next()) {
        (Some(a), Some(b)) => {
            let on = |n: usize| {
                let w: Vec<&str> = nodes
                    .iter()
                    .filter(|(m, _)| *m == n)
                    .map(|(_, w)| w.as_str())
                    .collect();
                w.join(", ")
            };
            Err(format!(
                "the devices are on NUMA node {a} ({}) and {b} ({}): no node is near them all",
                on(a),
                on(b)
            ))
        }
        (a, _) => Ok(a),
    }
}
