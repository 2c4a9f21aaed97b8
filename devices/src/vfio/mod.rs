//! VFIO for DPDK and the like: `org.chitin.devices.vfio` names PCI functions (comma-separated
//! addresses) bound to vfio-pci. Each one's IOMMU group must be the container's to use whole:
//! every member bound to vfio-pci, unbound, or a PCI bridge, and the group viable and not open
//! elsewhere. The container gets the VFIO container node and the group nodes with their rules,
//! `PCIDEVICE_<RESOURCE>` as the SR-IOV device plugin sets it, and, unless its config has its
//! own, a hugetlbfs mount at /dev/hugepages and an unlimited memlock rlimit (DMA pins memory).

mod group;

use oci_spec::runtime::{LinuxHugepageLimit, Mount, PosixRlimitBuilder, PosixRlimitType};

use super::{Annotation, DeviceError, Grant, Host, Request};

pub(crate) use group::driver;
pub use group::{Kernel, Status, Vfio};

pub const ANNOTATION: &str = "org.chitin.devices.vfio";
pub const RESOURCE: &str = "org.chitin.devices.vfio.resource";
pub const HUGEPAGES: &str = "org.chitin.devices.vfio.hugepages";
pub const NUMA: &str = "org.chitin.devices.vfio.numa";

/// The resource name `PCIDEVICE_` is made of when the config names none.
const DEFAULT_RESOURCE: &str = "chitin.dev/vfio";

pub const ANNOTATIONS: [Annotation; 4] = [
    Annotation {
        key: ANNOTATION,
        what: "PCI addresses (0000:03:02.1), comma-separated, of functions bound to vfio-pci: /dev/vfio/vfio and each IOMMU group's node, with their rules; PCIDEVICE_<RESOURCE>; a hugetlbfs mount at /dev/hugepages and an unlimited memlock rlimit unless the config has its own",
        unsafe_: true,
    },
    Annotation {
        key: RESOURCE,
        what: "the resource name for PCIDEVICE_<RESOURCE> (default chitin.dev/vfio: PCIDEVICE_CHITIN_DEV_VFIO)",
        unsafe_: false,
    },
    Annotation {
        key: HUGEPAGES,
        what: "PAGESIZE:LIMIT (2MB:1073741824): the hugetlbfs mount's page size and the container's hugepage limit in bytes",
        unsafe_: false,
    },
    Annotation {
        key: NUMA,
        what: "\"true\": the container's cpus and mems are those of the devices' NUMA node (replacing the config's)",
        unsafe_: false,
    },
];

fn refuse(key: &str) -> impl Fn(String) -> DeviceError + '_ {
    move |reason| DeviceError {
        annotation: key.into(),
        reason,
    }
}

/// PCI functions for VFIO, by the annotation that named them, and the resource their
/// `PCIDEVICE_` variable is named for.
pub struct Asked {
    pub annotation: &'static str,
    pub addrs: Vec<String>,
    pub resource: String,
}

/// The functions `org.chitin.devices.vfio` names, and `sriov`'s (the SR-IOV provider's virtual
/// functions that are bound to vfio-pci).
pub fn resolve(
    host: &Host,
    req: &Request<'_>,
    sriov: Option<Asked>,
) -> Result<Vec<Grant>, DeviceError> {
    let mut asked: Vec<Asked> = own(req)?.into_iter().chain(sriov).collect();
    if asked.is_empty() {
        for key in [RESOURCE, HUGEPAGES, NUMA] {
            if req.annotations.contains_key(key) {
                return Err(refuse(key)(format!("needs {ANNOTATION}")));
            }
        }
        return Ok(Vec::new());
    }
    let mut devices = Grant {
        origin: "chitin's VFIO devices".into(),
        ..Grant::default()
    };
    let mut groups: Vec<String> = Vec::new();
    for a in &mut asked {
        let bad = refuse(a.annotation);
        for addr in &a.addrs {
            let g = group::of(host, addr).map_err(&bad)?;
            if !groups.contains(&g) {
                let node = format!("vfio/{g}");
                let group_node = host.char_dev_at("vfio", &g, &node).map_err(&bad)?;
                viable(host, &node, &g, addr).map_err(&bad)?;
                devices.char_device(&format!("/dev/{node}"), &group_node);
                groups.push(g);
            }
        }
        let var = env_name(&a.resource).map_err(refuse(resource_key(a.annotation)))?;
        devices
            .env
            .push(format!("PCIDEVICE_{var}={}", a.addrs.join(",")));
    }
    // The VFIO container, which every group is used through.
    let container = host
        .char_dev_at("misc", "vfio", "vfio/vfio")
        .map_err(refuse(asked[0].annotation))?;
    devices.char_device("/dev/vfio/vfio", &container);
    let addrs: Vec<&str> = asked
        .iter()
        .flat_map(|a| a.addrs.iter().map(String::as_str))
        .collect();
    devices.cpuset = numa(host, req, &addrs)?;
    let mut memory = Grant {
        origin: "chitin's VFIO devices (the config's own first)".into(),
        fallback: true,
        ..Grant::default()
    };
    let (page, limit) = hugepages(host, req).map_err(refuse(HUGEPAGES))?;
    memory.mounts.push(hugetlbfs(&page));
    let page = page.clone();
    if let Some(limit) = limit {
        let mut l = LinuxHugepageLimit::default();
        l.set_page_size(page);
        l.set_limit(limit as i64);
        memory.hugepage_limits.push(l);
    }
    let most = host.memlock_ceiling(req.userns);
    let memlock = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitMemlock)
        .hard(most)
        .soft(most)
        .build()
        .expect("an rlimit of its own type");
    memory.rlimits.push(memlock);
    Ok(vec![devices, memory])
}

/// The addresses `org.chitin.devices.vfio` names, checked to be PCI addresses.
fn own(req: &Request<'_>) -> Result<Option<Asked>, DeviceError> {
    let Some(value) = req.annotations.get(ANNOTATION) else {
        return Ok(None);
    };
    let bad = refuse(ANNOTATION);
    let addrs: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addrs.is_empty() {
        return Err(bad("names no PCI address".into()));
    }
    for a in &addrs {
        pci_address(a).map_err(&bad)?;
    }
    let resource = req
        .annotations
        .get(RESOURCE)
        .map_or(DEFAULT_RESOURCE, String::as_str);
    Ok(Some(Asked {
        annotation: ANNOTATION,
        addrs,
        resource: resource.to_owned(),
    }))
}

/// The annotation that names the resource of `annotation`'s functions.
fn resource_key(annotation: &str) -> &'static str {
    match annotation {
        crate::sriov::ANNOTATION => crate::sriov::RESOURCE,
        _ => RESOURCE,
    }
}

/// Refuses a group the VFIO driver does not hold viable, or that is open elsewhere.
fn viable(host: &Host, node: &str, g: &str, addr: &str) -> Result<(), String> {
    match host.vfio.status(&host.dev.join(node)) {
        Ok(Status::Viable) => Ok(()),
        Ok(Status::NotViable) => Err(format!(
            "IOMMU group {g} of {addr} is not viable: a member is bound to a host driver"
        )),
        Ok(Status::InUse) => Err(format!(
            "IOMMU group {g} of {addr} is in use (open elsewhere)"
        )),
        Err(e) => Err(format!("IOMMU group {g} of {addr}: {e}")),
    }
}

/// With `org.chitin.devices.vfio.numa`, the cpus and the node of the devices' NUMA node.
fn numa(
    host: &Host,
    req: &Request<'_>,
    addrs: &[&str],
) -> Result<Option<(String, String)>, DeviceError> {
    if !crate::flag(req, NUMA)? {
        return Ok(None);
    }
    numa_node(host, addrs).map(Some).map_err(refuse(NUMA))
}

/// The cpus and the number of the one NUMA node that `addrs` are on.
fn numa_node(host: &Host, addrs: &[&str]) -> Result<(String, String), String> {
    let mut node: Option<(i64, &str)> = None;
    for addr in addrs {
        let file = host
            .sys
            .join("bus/pci/devices")
            .join(addr)
            .join("numa_node");
        let n: i64 = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("{}: no NUMA node number", file.display()))?;
        if n < 0 {
            return Err(format!(
                "{addr} is on no NUMA node (numa_node is {n}): nothing to pin to"
            ));
        }
        match node {
            Some((m, other)) if m != n => {
                return Err(format!(
                    "{other} is on NUMA node {m} and {addr} on {n}: one node cannot hold both"
                ));
            }
            _ => node = Some((n, addr)),
        }
    }
    let n = node.expect("at least one address").0;
    let list = host
        .sys
        .join(format!("devices/system/node/node{n}/cpulist"));
    let cpus = std::fs::read_to_string(&list).map_err(|e| format!("{}: {e}", list.display()))?;
    if cpus.trim().is_empty() {
        // A node of memory alone (CXL, HBM): pinning to it would leave no cpu.
        return Err(format!("NUMA node {n} has no cpus"));
    }
    Ok((cpus.trim().to_owned(), n.to_string()))
}

/// `DDDD:BB:SS.F` in hex, as sysfs names PCI functions.
pub(crate) fn pci_address(a: &str) -> Result<(), String> {
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let ok = a.split_once('.').is_some_and(|(dbs, f)| {
        let parts: Vec<&str> = dbs.split(':').collect();
        parts.len() == 3
            && hex(parts[0], 4)
            && hex(parts[1], 2)
            && hex(parts[2], 2)
            && f.len() == 1
            && f.chars().all(|c| ('0'..='7').contains(&c))
    });
    if !ok {
        return Err(format!("{a:?} is not a PCI address (0000:03:02.1)"));
    }
    Ok(())
}

/// The SR-IOV device plugin's name for a resource's variable: upper case, `.` and `/` as `_`.
fn env_name(resource: &str) -> Result<String, String> {
    if resource.is_empty()
        || !resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./_-".contains(c))
    {
        return Err(format!(
            "{resource:?} is not a resource name (intel.com/sriov_dpdk)"
        ));
    }
    Ok(resource.to_ascii_uppercase().replace(['.', '/', '-'], "_"))
}

/// The page size (as hugepageLimits names it: 2MB, 1GB) and the limit asked for; without the
/// annotation, the host's default huge page size and no limit.
fn hugepages(host: &Host, req: &Request<'_>) -> Result<(String, Option<u64>), String> {
    let (page, limit) = match req.annotations.get(HUGEPAGES) {
        Some(v) => {
            let (p, l) = v
                .split_once(':')
                .ok_or_else(|| format!("{v:?} is not PAGESIZE:LIMIT"))?;
            let l = l
                .parse::<u64>()
                .ok()
                .filter(|l| *l <= i64::MAX as u64)
                .ok_or_else(|| format!("{l:?} is not a number of bytes"))?;
            (p.to_owned(), Some(l))
        }
        None => (
            host.default_hugepage_size()
                .ok_or("this host has no huge pages (hugetlbfs)")?,
            None,
        ),
    };
    let kb = page_kb(&page).ok_or_else(|| format!("page size {page:?} is not like 2MB or 1GB"))?;
    if !host
        .sys
        .join(format!("kernel/mm/hugepages/hugepages-{kb}kB"))
        .is_dir()
    {
        return Err(format!("this host has no {page} huge pages"));
    }
    Ok((page, limit))
}

fn page_kb(page: &str) -> Option<u64> {
    let (n, unit) = page.split_at(page.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "KB" => n,
        "MB" => n << 10,
        "GB" => n << 20,
        _ => return None,
    })
}

fn hugetlbfs(page: &str) -> Mount {
    let size = page.trim_end_matches('B');
    let mut m = Mount::default();
    m.set_destination("/dev/hugepages".into());
    m.set_typ(Some("hugetlbfs".into()));
    m.set_source(Some("hugetlbfs".into()));
    m.set_options(Some(vec![
        "nosuid".into(),
        "nodev".into(),
        format!("pagesize={size}"),
    ]));
    m
}

#[cfg(test)]
mod tests;
