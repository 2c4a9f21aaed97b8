//! What moving interfaces asks of rtnetlink, behind a trait: the real client (`Rtnl`) talks to
//! the kernel in two network namespaces, the unit tests' fake records what it was asked.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// Which of the two network namespaces a request is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The runtime's own.
    Host,
    /// The container's.
    Container,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// Its own (Ethernet) address, where it has one.
    pub mac: Option<[u8; 6]>,
}

/// An interface address as RTM_GETADDR gives it, with what RTM_NEWADDR needs to make it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub family: u8,
    pub prefix_len: u8,
    /// RT_SCOPE_*.
    pub scope: u8,
    /// IFA_F_*, all 32 bits (IFA_FLAGS where the kernel gives it).
    pub flags: u32,
    pub local: Option<IpAddr>,
    pub address: Option<IpAddr>,
    pub broadcast: Option<Ipv4Addr>,
    pub label: Option<String>,
}

impl Address {
    /// Configured, not learned (IFA_F_PERMANENT): no lifetime runs out.
    pub fn permanent(&self) -> bool {
        self.flags & libc::IFA_F_PERMANENT != 0
    }

    /// Of global scope (RT_SCOPE_UNIVERSE).
    pub fn global(&self) -> bool {
        self.scope == libc::RT_SCOPE_UNIVERSE
    }

    /// The same address on the interface renamed from `from` to `to`: an IPv4 label is the
    /// interface's name with an optional `:alias`, so it follows the rename.
    pub fn relabelled(&self, from: &str, to: &str) -> Address {
        let label = self.label.as_ref().and_then(|l| {
            let rest = l.strip_prefix(from)?;
            Some(format!("{to}{rest}")).filter(|n| n.len() <= 15)
        });
        Address {
            label,
            ..self.clone()
        }
    }

    /// As `ip address` shows it: the local address, or the peer's, with the prefix length.
    pub fn shown(&self) -> String {
        match self.local.or(self.address) {
            Some(a) => format!("{a}/{}", self.prefix_len),
            None => format!("(none)/{}", self.prefix_len),
        }
    }
}

/// What a physical function sets for one of its virtual functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfSettings {
    pub mac: [u8; 6],
    /// 0: untagged.
    pub vlan: u16,
    pub qos: u32,
}

/// What to set of a VF: its MAC, its VLAN with QoS; None leaves it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfChange {
    pub mac: Option<[u8; 6]>,
    pub vlan: Option<(u16, u32)>,
}

pub trait Netlink {
    /// The interface of that name, if there is one.
    fn link(&mut self, side: Side, name: &str) -> io::Result<Option<Link>>;
    fn links(&mut self, side: Side) -> io::Result<Vec<Link>>;
    fn addresses(&mut self, side: Side, index: u32) -> io::Result<Vec<Address>>;
    fn add_address(&mut self, side: Side, index: u32, address: &Address) -> io::Result<()>;
    fn set_up(&mut self, side: Side, index: u32, up: bool) -> io::Result<()>;
    /// Moves the interface to the other side under `name`, in one request. The kernel moves it
    /// first and renames it there: if the name is taken, it stays moved under its old one.
    fn move_link(&mut self, from: Side, index: u32, name: &str) -> io::Result<()>;
    /// The settings of VF `vf` of the physical function at `pf` (host side), if it has one.
    fn vf(&mut self, pf: u32, vf: u32) -> io::Result<Option<VfSettings>>;
    fn set_vf(&mut self, pf: u32, vf: u32, to: &VfChange) -> io::Result<()>;
    /// The interface's own (effective) MAC address.
    fn set_mac(&mut self, side: Side, index: u32, mac: [u8; 6]) -> io::Result<()>;
    /// Moves the RDMA device of that name to the other side (the RDMA subsystem's exclusive
    /// mode).
    fn move_rdma(&mut self, from: Side, device: &str) -> io::Result<()>;
}
