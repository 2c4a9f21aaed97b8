//! `linux.netDevices`: host interfaces moved into the container's network namespace by the
//! runtime, once the init has made that namespace (see container::create::setup).
//!
//! Each interface is renamed and moved in one RTM_NEWLINK, so no failure leaves a renamed device
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

pub use netlink::{Address, Link, Netlink, Side, VfSettings};
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
    /// Its index in the container: the host's until found there (the kernel keeps an index
    /// across namespaces where it is free, as it is in a new namespace).
    inside: u32,
}

/// Moves the interfaces of `devices`, then the RDMA devices `rdma`, into the container's network
/// namespace (the one `nl` reaches as Side::Container), in order; on a failure, those moved so
/// far go back first.
pub fn attach(
    nl: Box<dyn Netlink>,
    devices: &[NetDevice],
    rdma: &[String],
) -> Result<Attached, NetDevError> {
    let mut a = Attached {
        nl,
        moved: Vec::with_capacity(devices.len()),
        rdma: Vec::new(),
    };
    let failed = |a: &mut Attached, at: String, (what, source): Failed| {
        let undo = a.restore();
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
    for dev in rdma {
        let what =
            || format!("moving the RDMA device {dev} into the container's network namespace");
        match a.nl.move_rdma(Side::Host, dev) {
            Ok(()) => a.rdma.push(dev.clone()),
            Err(e) => {
                let at = "annotations[\"org.chitin.devices.rdma\"]".to_owned();
                return Err(failed(&mut a, at, (what(), e)));
            }
        }
    }
    Ok(a)
}

type Failed = (String, std::io::Error);

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
        // moved, and it must come back too.
        let gone = moving.is_err() && nl.link(Side::Host, &d.host).is_ok_and(|l| l.is_none());
        if moving.is_ok() || gone {
            self.moved.push(Moved {
                host: d.host.clone(),
                addresses: addresses.clone(),
                up: link.up,
                inside: link.index,
            });
        }
        moving.map_err(at("moving it into the container's network namespace"))?;
        let inside = nl
            .links(Side::Container)
            .map_err(at("finding it in the container"))?
            .into_iter()
            .find(|l| !before.iter().any(|b| b.index == l.index))
            .ok_or_else(|| {
                let gone = std::io::Error::from_raw_os_error(libc::ENODEV);
                ("finding it in the container".to_owned(), gone)
            })?;
        self.moved.last_mut().expect("just pushed").inside = inside.index;
        for a in addresses.iter().filter(|a| a.global()) {
            let a = a.relabelled(&d.host, &inside.name);
            nl.add_address(Side::Container, inside.index, &a)
                .map_err(|e| (format!("adding its address {}", a.shown()), e))?;
        }
        nl.set_up(Side::Container, inside.index, true)
            .map_err(at("setting it up"))
    }

    /// Puts every moved device back, the last first; what failed, as a suffix of the error.
    fn restore(&mut self) -> String {
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
        match failed.is_empty() {
            true => String::new(),
            false => format!("; and putting back {}", failed.join(", ")),
        }
    }

    fn put_back(&mut self, m: &Moved) -> std::io::Result<()> {
        let nl = &mut self.nl;
        nl.set_up(Side::Container, m.inside, false)?;
        nl.move_link(Side::Container, m.inside, &m.host)?;
        let Some(link) = nl.link(Side::Host, &m.host)? else {
            return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
        };
        for a in &m.addresses {
            match nl.add_address(Side::Host, link.index, a) {
                // IPv6's link-local address comes back by itself.
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

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}
