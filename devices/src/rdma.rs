//! RDMA (InfiniBand, RoCE, iWARP): `org.chitin.devices.rdma` names RDMA devices (`mlx5_0`) or
//! the network interfaces they serve (a VF's, or the netdev under a soft RoCE device),
//! comma-separated. sysfs gives each device's character nodes: its verbs node
//! (`infiniband_verbs/uverbsN`, whose `ibdev` names the device), its management datagram and
//! subnet-manager nodes where ib_umad is loaded (`infiniband_mad/umadN`, `issmN`), and the
//! connection manager's `rdma_cm` where rdma_ucm is. Verbs pin the memory they register, so the
//! memlock limit is raised as far as the runtime can; `org.chitin.devices.rdma.limit` sets the
//! rdma cgroup's limits for each device. In the RDMA subsystem's exclusive network-namespace
//! mode a device is usable only from its namespace: the runtime moves it into the container's.

use oci_spec::runtime::{LinuxRdma, LinuxRdmaBuilder, PosixRlimitBuilder, PosixRlimitType};

use super::{Action, Annotation, DeviceError, Grant, Host, Request, entries};

pub const ANNOTATION: &str = "org.chitin.devices.rdma";
pub const LIMIT: &str = "org.chitin.devices.rdma.limit";

pub const ANNOTATIONS: [Annotation; 2] = [
    Annotation {
        key: ANNOTATION,
        what: "RDMA devices (mlx5_0) or the network interfaces they serve, comma-separated: each device's /dev/infiniband nodes (uverbs, umad, issm) and rdma_cm, with their rules, and the memlock limit as high as the runtime can set it",
        unsafe_: true,
    },
    Annotation {
        key: LIMIT,
        what: "HANDLES:OBJECTS: the rdma cgroup's hca_handle and hca_object limits for each device",
        unsafe_: false,
    },
];

/// The node classes of a device, by sysfs class and name prefix; the first is required.
const NODES: [(&str, &str); 3] = [
    ("infiniband_verbs", "uverbs"),
    ("infiniband_mad", "umad"),
    ("infiniband_mad", "issm"),
];

pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Vec<Grant>, DeviceError> {
    let refuse = |key: &str| {
        let key = key.to_owned();
        move |reason: String| DeviceError {
            annotation: key.clone(),
            reason,
        }
    };
    let Some(value) = req.annotations.get(ANNOTATION) else {
        if req.annotations.contains_key(LIMIT) {
            return Err(refuse(LIMIT)(format!("needs {ANNOTATION}")));
        }
        return Ok(Vec::new());
    };
    let bad = refuse(ANNOTATION);
    let exclusive = exclusive_namespaces(host).map_err(&bad)?;
    let limit = match req.annotations.get(LIMIT) {
        Some(v) => Some(limits(v).map_err(refuse(LIMIT))?),
        None => None,
    };
    let mut g = Grant {
        origin: "chitin's RDMA devices".into(),
        ..Grant::default()
    };
    let mut seen = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let dev = device(host, name).map_err(&bad)?;
        if seen.contains(&dev) {
            continue;
        }
        for (class, prefix) in NODES {
            let nodes = nodes_of(host, class, prefix, &dev);
            if prefix == "uverbs" && nodes.is_empty() {
                return Err(bad(format!(
                    "{dev} has no verbs node (infiniband_verbs): is ib_uverbs loaded?"
                )));
            }
            for node in nodes {
                let at = format!("infiniband/{node}");
                let n = host.char_dev_at(class, &node, &at).map_err(&bad)?;
                g.char_device(&format!("/dev/{at}"), &n);
            }
        }
        if let Some(l) = limit {
            g.rdma.push((dev.clone(), l));
        }
        if exclusive {
            g.actions.push(Action::RdmaNamespace {
                device: dev.clone(),
                annotation: ANNOTATION.into(),
            });
        }
        seen.push(dev);
    }
    if seen.is_empty() {
        return Err(bad("names no RDMA device".into()));
    }
    if host.sys.join("class/misc/rdma_cm").exists() {
        let n = host
            .char_dev_at("misc", "rdma_cm", "infiniband/rdma_cm")
            .map_err(&bad)?;
        g.char_device("/dev/infiniband/rdma_cm", &n);
    }
    let memlock = host.memlock_ceiling(req.userns);
    let mut memory = Grant {
        origin: "chitin's RDMA devices (the config's own first)".into(),
        fallback: true,
        ..Grant::default()
    };
    memory.rlimits.push(
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitMemlock)
            .hard(memlock)
            .soft(memlock)
            .build()
            .expect("an rlimit of its own type"),
    );
    Ok(vec![g, memory])
}

/// Whether the RDMA subsystem is in exclusive mode, where a device is usable only from the
/// network namespace it belongs to (ib_core's netns_mode is N), so it must move in.
pub(crate) fn exclusive_namespaces(host: &Host) -> Result<bool, String> {
    let mode = host.sys.join("module/ib_core/parameters/netns_mode");
    match std::fs::read_to_string(&mode) {
        Ok(m) => Ok(m.trim() == "N"),
        Err(_) => Err("no RDMA subsystem on this host (ib_core is not loaded)".into()),
    }
}

/// The RDMA device `name` is, or serves: by its PCI function's interfaces, or by the
/// interfaces its ports' GIDs are on (RoCE, soft RoCE).
fn device(host: &Host, name: &str) -> Result<String, String> {
    let class = host.sys.join("class/infiniband");
    if !name.contains('/') && !name.starts_with('.') && class.join(name).is_dir() {
        return Ok(name.to_owned());
    }
    let found = entries(&class).into_iter().find(|dev| {
        let d = class.join(dev);
        d.join("device/net").join(name).exists()
            || entries(&d.join("ports")).iter().any(|p| {
                let ndevs = d.join("ports").join(p).join("gid_attrs/ndevs");
                entries(&ndevs)
                    .iter()
                    .any(|g| std::fs::read_to_string(ndevs.join(g)).is_ok_and(|n| n.trim() == name))
            })
    });
    found.ok_or_else(|| format!("no RDMA device {name}, nor one that serves an interface {name}"))
}

/// The nodes of class `class` named `prefix`N whose `ibdev` is `dev`, in order.
fn nodes_of(host: &Host, class: &str, prefix: &str, dev: &str) -> Vec<String> {
    let dir = host.sys.join("class").join(class);
    let mut v: Vec<String> = entries(&dir)
        .into_iter()
        .filter(|n| {
            n.strip_prefix(prefix)
                .is_some_and(|i| i.parse::<u32>().is_ok())
        })
        .filter(|n| {
            std::fs::read_to_string(dir.join(n).join("ibdev")).is_ok_and(|d| d.trim() == dev)
        })
        .collect();
    v.sort_by_key(|n| n[prefix.len()..].parse::<u32>().unwrap_or(u32::MAX));
    v
}

/// `HANDLES:OBJECTS`, each a count the rdma cgroup takes (its files hold 32-bit numbers).
fn limits(v: &str) -> Result<LinuxRdma, String> {
    let (h, o) = v
        .split_once(':')
        .ok_or_else(|| format!("{v:?} is not HANDLES:OBJECTS"))?;
    let n = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a count"))
    };
    Ok(LinuxRdmaBuilder::default()
        .hca_handles(n(h)?)
        .hca_objects(n(o)?)
        .build()
        .expect("both counts set"))
}

#[cfg(test)]
mod tests;
