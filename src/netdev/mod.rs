//! `linux.netDevices`: host interfaces moved into the container's network namespace by the
//! runtime, once the init has made that namespace (see container::create::setup).
//!
//! Each interface is renamed and moved in one RTM_SETLINK, so no failure leaves a renamed device
//! on the host. The move drops its addresses: its permanent addresses of global scope, of every
//! family, are added again inside (runtime-spec: "MUST preserve"), then it is set up. Should any
//! later step of the create fail, `Attached` moves every device back under its host name, with
//! the permanent addresses it had and its up state: a veth left in a dying namespace would be
//! destroyed with it. Nothing is moved back on delete (the kernel returns physical devices to
//! the initial namespace when the container's dies).

pub mod netlink;
mod rdma;
mod rtnl;
#[cfg(test)]
mod tests;
pub mod vf;
mod wire;

pub use netlink::{Address, Link, Netlink, Side, VfChange, VfSettings};
pub use rtnl::Rtnl;

use crate::plan::NetDevice;

#[derive(Debug, thiserror::Error)]
#[error("{at}: {what}: {source}{undo}")]
pub struct NetDevError {
    /// The field or annotation asked for it: `linux.netDevices["eth1"]`.
    at: String,
    what: String,
    source: std::io::Error,
    /// What failed while putting back what was already done, if anything.
    undo: String,
}

/// Devices moved into a container, which go back to the host on drop unless `keep` is called.
pub struct Attached {
    nl: Box<dyn Netlink>,
    moved: Vec<Moved>,
    /// RDMA devices moved in (exclusive mode), by name.
    rdma: Vec<String>,
}

/// What putting one device back needs: its host name and state, and its index inside.
#[derive(Debug)]
struct Moved {
    host: String,
    addresses: Vec<Address>,
    up: bool,
    /// Its index in the container, found as the one index new there (the kernel keeps the
    /// host's only where it is free: a new namespace has devices of its own, tunl0 or sit0 with
    /// their modules loaded); the host's if the listing failed.
    inside: u32,
}

/// Moves the interfaces of `devices`, then the RDMA devices `rdma` (each with the annotation
/// that asked for it), into the container's network namespace (the one `nl` reaches as
/// Side::Container), in order; on a failure, those moved so far go back first.
pub fn attach(
    nl: Box<dyn Netlink>,
    devices: &[NetDevice],
    rdma: &[(String, String)],
) -> Result<Attached, NetDevError> {
    let mut a = Attached {
        nl,
        moved: Vec::with_capacity(devices.len()),
        rdma: Vec::new(),
    };
    let failed = |a: &mut Attached, at: String, (what, source): Failed| {
        let undo = match a.restore() {
            f if f.is_empty() => String::new(),
            f => format!("; and putting back {}", f.join(", ")),
        };
        NetDevError {
            at,
            what,
            source,
            undo,
        }
    };
    for d in devices {
        if let Err(f) = a.attach_one(d) {
            return Err(failed(&mut a, format!("linux.netDevices[{:?}]", d.host), f));
        }
    }
    for (dev, annotation) in rdma {
        let what =
            || format!("moving the RDMA device {dev} into the container's network namespace");
        match a.nl.move_rdma(Side::Host, dev) {
            Ok(()) => a.rdma.push(dev.clone()),
            Err(e) => {
                let at = format!("annotations[{annotation:?}]");
                return Err(failed(&mut a, at, (what(), e)));
            }
        }
    }
    Ok(a)
}

type Failed = (String, std::io::Error);

/// Which of the container's interfaces is the one that just came: new since `before`, named
/// `named` (a template's name is one it makes), the host's index preferred. None if that is not
/// clear: another interface may have appeared meanwhile.
fn arrived(now: Vec<Link>, before: &[Link], named: &str, host_index: u32) -> Option<Link> {
    let fits = |n: &str| match named.split_once("%d") {
        Some((a, b)) => n
            .strip_prefix(a)
            .and_then(|r| r.strip_suffix(b))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())),
        None => n == named,
    };
    let mut new: Vec<Link> = now
        .into_iter()
        .filter(|l| !before.iter().any(|b| b.index == l.index) && fits(&l.name))
        .collect();
    new.sort_by_key(|l| l.index != host_index);
    match new.len() {
        0 => None,
        _ => Some(new.swap_remove(0)),
    }
}

fn at(what: &str) -> impl FnOnce(std::io::Error) -> Failed + '_ {
    move |e| (what.to_owned(), e)
}

impl Attached {
    fn attach_one(&mut self, d: &NetDevice) -> Result<(), Failed> {
        let nl = &mut self.nl;
        let link = nl
            .link(Side::Host, &d.host)
            .map_err(at("looking it up"))?
            .ok_or_else(|| {
                let gone = std::io::Error::from_raw_os_error(libc::ENODEV);
                ("looking it up".to_owned(), gone)
            })?;
        let addresses: Vec<Address> = nl
            .addresses(Side::Host, link.index)
            .map_err(at("listing its addresses"))?
            .into_iter()
            .filter(Address::permanent)
            .collect();
        let before = nl
            .links(Side::Container)
            .map_err(at("listing the container's interfaces"))?;
        if before.iter().any(|l| l.name == d.name) {
            let e = std::io::Error::from_raw_os_error(libc::EEXIST);
            return Err((format!("naming it {:?} in the container", d.name), e));
        }
        let moving = nl.move_link(Side::Host, link.index, &d.name);
        // The kernel moves first and renames after: a rename that fails leaves the device
        // moved under its host name, and it must come back too.
        let moved = match &moving {
            Ok(()) => true,
            Err(_) => nl.link(Side::Host, &d.host).is_ok_and(|l| l.is_none()),
        };
        let named = match &moving {
            Ok(()) => d.name.as_str(),
            Err(_) => d.host.as_str(),
        };
        let inside = match moved {
            true => nl
                .links(Side::Container)
                .ok()
                .and_then(|now| arrived(now, &before, named, link.index)),
            false => None,
        };
        if moved {
            self.moved.push(Moved {
                host: d.host.clone(),
                addresses: addresses.clone(),
                up: link.up,
                inside: inside.as_ref().map_or(link.index, |l| l.index),
            });
        }
        moving.map_err(at("moving it into the container's network namespace"))?;
        let inside = inside.ok_or_else(|| {
            let gone = std::io::Error::from_raw_os_error(libc::ENODEV);
            ("finding it in the container".to_owned(), gone)
        })?;
        for a in addresses.iter().filter(|a| a.global()) {
            let a = a.relabelled(&d.host, &inside.name);
            nl.add_address(Side::Container, inside.index, &a)
                .map_err(|e| (format!("adding its address {}", a.shown()), e))?;
        }
        nl.set_up(Side::Container, inside.index, true)
            .map_err(at("setting it up"))
    }

    /// Puts every moved device back, the last first; what failed.
    fn restore(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(dev) = self.rdma.pop() {
            if let Err(e) = self.nl.move_rdma(Side::Container, &dev) {
                failed.push(format!("RDMA device {dev}: {e}"));
            }
        }
        while let Some(m) = self.moved.pop() {
            if let Err(e) = self.put_back(&m) {
                failed.push(format!("{}: {e}", m.host));
            }
        }
        failed
    }

    fn put_back(&mut self, m: &Moved) -> std::io::Result<()> {
        let nl = &mut self.nl;
        // The move closes the device: it is down on the host until set up below.
        nl.move_link(Side::Container, m.inside, &m.host)?;
        let Some(link) = nl.link(Side::Host, &m.host)? else {
            return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
        };
        for a in &m.addresses {
            match nl.add_address(Side::Host, link.index, a) {
                // One the kernel has made again itself (IPv6's link-local, once up) is there.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
        }
        if m.up {
            nl.set_up(Side::Host, link.index, true)?;
        }
        Ok(())
    }

    /// The create succeeded: the devices stay in the container.
    pub fn keep(mut self) {
        self.moved.clear();
        self.rdma.clear();
    }
}

/// A later step of the create failed: its own error is the one reported; what could not be put
/// back is said beside it.
impl Drop for Attached {
    fn drop(&mut self) {
        let failed = self.restore();
        if !failed.is_empty() {
            let failed = failed.join(", ");
            crate::logger::warn(&format!("linux.netDevices: putting back {failed}"));
        }
    }
}
