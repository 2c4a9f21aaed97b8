//! SR-IOV virtual functions: `org.chitin.devices.sriov` names VFs by PCI address
//! (`0000:3b:02.1`) or by physical function and index (`ens1f0:3`), each with an optional
//! `;name=IFNAME` for its interface in the container, `;mac=MAC` and `;vlan=ID` set on the PF's
//! side as the SR-IOV CNI sets them (the MAC on the VF's own interface too), comma-separated.
//! sysfs resolves them: the
//! PF's `device/virtfnN` link gives a VF's address, a VF has a `physfn` link, and its `net/`
//! directory its interface. A VF on a kernel network driver becomes a `linux.netDevices` entry,
//! moved in by the runtime; one bound to vfio-pci goes the VFIO way (DPDK), with
//! `PCIDEVICE_<RESOURCE>` as the SR-IOV device plugin sets it.

use std::path::Path;

use oci_spec::runtime::LinuxNetDevice;

use super::{Action, Annotation, DeviceError, Grant, Host, Request, entries};
use crate::vfio::{Asked, driver, pci_address};

pub const ANNOTATION: &str = "org.chitin.devices.sriov";
pub const RESOURCE: &str = "org.chitin.devices.sriov.resource";

/// The resource name of VFIO-bound VFs' `PCIDEVICE_` variable when the config names none.
const DEFAULT_RESOURCE: &str = "chitin.dev/sriov";

pub const ANNOTATIONS: [Annotation; 2] = [
    Annotation {
        key: ANNOTATION,
        what: "SR-IOV virtual functions, comma-separated, by PCI address (0000:3b:02.1) or PF and index (ens1f0:3), each with optional ;name=IFNAME, ;mac=MAC and ;vlan=ID (set on the PF's side): a VF's interface moved into the container (linux.netDevices), or, bound to vfio-pci, VFIO as org.chitin.devices.vfio gives it",
        unsafe_: true,
    },
    Annotation {
        key: RESOURCE,
        what: "the resource name for the PCIDEVICE_<RESOURCE> of VFs bound to vfio-pci (default chitin.dev/sriov: PCIDEVICE_CHITIN_DEV_SRIOV)",
        unsafe_: false,
    },
];

/// What the VFs resolve to: the interfaces to move in (with the PF-side settings), and the
/// VFIO functions.
#[derive(Default)]
pub struct Resolved {
    pub net: Option<Grant>,
    pub vfio: Option<Asked>,
}

/// One VF as asked for.
struct Ask<'a> {
    vf: &'a str,
    name: Option<&'a str>,
    mac: Option<[u8; 6]>,
    vlan: Option<u16>,
}

pub fn resolve(host: &Host, req: &Request<'_>) -> Result<Resolved, DeviceError> {
    let bad = |reason: String| DeviceError {
        annotation: ANNOTATION.into(),
        reason,
    };
    let Some(value) = req.annotations.get(ANNOTATION) else {
        if req.annotations.contains_key(RESOURCE) {
            return Err(DeviceError {
                annotation: RESOURCE.into(),
                reason: format!("needs {ANNOTATION}"),
            });
        }
        return Ok(Resolved::default());
    };
    let mut net = Grant {
        origin: "chitin's SR-IOV virtual functions".into(),
        ..Grant::default()
    };
    let mut vfio = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let ask = request(item).map_err(bad)?;
        let addr = address(host, ask.vf).map_err(bad)?;
        let dev = host.sys.join("bus/pci/devices").join(&addr);
        let iface = match driver(&dev).as_deref() {
            Some("vfio-pci") if ask.name.is_some() => {
                return Err(bad(format!(
                    "{item}: {addr} is bound to vfio-pci and has no interface to name"
                )));
            }
            Some("vfio-pci") => {
                vfio.push(addr.clone());
                None
            }
            Some(_) => {
                let iface = interface(&dev, &addr).map_err(bad)?;
                let mut d = LinuxNetDevice::default();
                d.set_name(ask.name.map(String::from));
                net.net_devices.push((iface.clone(), d));
                // In exclusive mode the VF's RDMA devices follow its interface.
                let rdma = entries(&dev.join("infiniband"));
                if !rdma.is_empty() && crate::rdma::exclusive_namespaces(host).unwrap_or(false) {
                    let follow = rdma.into_iter().map(|device| Action::RdmaNamespace {
                        device,
                        annotation: ANNOTATION.into(),
                    });
                    net.actions.extend(follow);
                }
                Some(iface)
            }
            None => return Err(bad(format!("{item}: {addr} is bound to no driver"))),
        };
        if ask.mac.is_some() || ask.vlan.is_some() {
            let (pf, index) = parent(host, &addr).map_err(bad)?;
            net.actions.push(Action::ConfigureVf {
                pf,
                vf: index,
                mac: ask.mac,
                vlan: ask.vlan,
                iface,
            });
        }
    }
    if net.net_devices.is_empty() && vfio.is_empty() {
        return Err(bad("names no virtual function".into()));
    }
    let resource = req
        .annotations
        .get(RESOURCE)
        .map_or(DEFAULT_RESOURCE, String::as_str);
    if vfio.is_empty() && req.annotations.contains_key(RESOURCE) {
        return Err(DeviceError {
            annotation: RESOURCE.into(),
            reason: "names the PCIDEVICE_ variable of VFs on vfio-pci, and none is".into(),
        });
    }
    Ok(Resolved {
        net: Some(net).filter(|g| !g.net_devices.is_empty() || !g.actions.is_empty()),
        vfio: (!vfio.is_empty()).then(|| Asked {
            annotation: ANNOTATION,
            addrs: vfio,
            resource: resource.to_owned(),
        }),
    })
}

/// `VF[;name=IFNAME][;mac=MAC][;vlan=ID]`.
fn request(item: &str) -> Result<Ask<'_>, String> {
    let mut parts = item.split(';').map(str::trim);
    let mut ask = Ask {
        vf: parts.next().unwrap_or_default(),
        name: None,
        mac: None,
        vlan: None,
    };
    for opt in parts {
        let bad = |why: String| format!("{item}: {why}");
        match opt.split_once('=') {
            Some(("name", n)) if !n.is_empty() => ask.name = Some(n),
            Some(("mac", m)) => ask.mac = Some(mac(m).map_err(bad)?),
            Some(("vlan", v)) => {
                let id = v.parse::<u16>().ok().filter(|v| *v <= 4094);
                ask.vlan =
                    Some(id.ok_or_else(|| bad(format!("{v:?} is not a VLAN id (0 to 4094)")))?);
            }
            _ => {
                return Err(bad(format!(
                    "{opt:?} is not an option (name=IFNAME, mac=MAC, vlan=ID)"
                )));
            }
        }
    }
    Ok(ask)
}

/// A unicast Ethernet address, `02:00:00:00:00:01`.
fn mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{text:?} is not a unicast MAC address (02:00:00:00:00:01)");
    let octets: Vec<u8> = text
        .split(':')
        .map(|o| {
            (o.len() == 2)
                .then(|| u8::from_str_radix(o, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let m: [u8; 6] = octets.try_into().map_err(|_| bad())?;
    if m[0] & 1 != 0 || m == [0; 6] {
        return Err(bad());
    }
    Ok(m)
}

/// The physical function of VF `addr`, by its interface's name, and the VF's index there.
fn parent(host: &Host, addr: &str) -> Result<(String, u32), String> {
    let dev = host.sys.join("bus/pci/devices").join(addr);
    let pf = std::fs::canonicalize(dev.join("physfn"))
        .map_err(|e| format!("{addr}: its physfn: {e}"))?;
    let index = entries(&pf)
        .iter()
        .filter_map(|n| n.strip_prefix("virtfn")?.parse::<u32>().ok())
        .find(|i| {
            std::fs::read_link(pf.join(format!("virtfn{i}")))
                .is_ok_and(|l| l.file_name().is_some_and(|n| n == addr))
        })
        .ok_or_else(|| format!("{addr}: no virtfn of its physical function links to it"))?;
    match entries(&pf.join("net")).as_slice() {
        [one] => Ok((one.clone(), index)),
        _ => Err(format!(
            "{addr}: its physical function has no one interface in this namespace to set it from"
        )),
    }
}

/// The PCI address of a VF named by its address or as `PF:INDEX`.
fn address(host: &Host, vf: &str) -> Result<String, String> {
    if pci_address(vf).is_ok() {
        let dev = host.sys.join("bus/pci/devices").join(vf);
        if !dev.exists() {
            return Err(format!("{vf}: no such PCI function on this host"));
        }
        if !dev.join("physfn").exists() {
            return Err(format!(
                "{vf} is not an SR-IOV virtual function (it has no physfn)"
            ));
        }
        return Ok(vf.to_owned());
    }
    let (pf, index) = vf
        .rsplit_once(':')
        .filter(|(pf, i)| !pf.is_empty() && !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!("{vf:?} is neither a PCI address (0000:3b:02.1) nor PF:INDEX (ens1f0:3)")
        })?;
    let device = host.sys.join("class/net").join(pf).join("device");
    if !device.exists() {
        return Err(format!("{vf}: no network interface {pf} on this host"));
    }
    let Ok(total) = std::fs::read_to_string(device.join("sriov_totalvfs")) else {
        return Err(format!("{vf}: {pf} is not an SR-IOV physical function"));
    };
    let link = std::fs::read_link(device.join(format!("virtfn{index}"))).map_err(|_| {
        let enabled = std::fs::read_to_string(device.join("sriov_numvfs")).unwrap_or_default();
        format!(
            "{vf}: {pf} has no virtual function {index} ({} of {} enabled in sriov_numvfs)",
            enabled.trim(),
            total.trim()
        )
    })?;
    link.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .ok_or_else(|| format!("{vf}: virtfn{index} links to {}", link.display()))
}

/// The VF's one interface in the host's network namespace. sysfs shows a network device only
/// to the namespace it is in, so a VF whose interface another container holds has none here.
fn interface(dev: &Path, addr: &str) -> Result<String, String> {
    let names = entries(&dev.join("net"));
    match names.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "{addr} has no network interface in the host's namespace: in use by another container?"
        )),
        _ => Err(format!(
            "{addr} has several interfaces ({}): name one in linux.netDevices instead",
            names.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
