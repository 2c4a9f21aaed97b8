//! The real `Netlink`: one rtnetlink socket in each namespace, its messages written and read by
//! `wire`. The container's socket is made from inside its namespace (a socket stays in the
//! namespace it was made in), entered and left again at once: the runtime is single-threaded,
//! and setns applies to the calling thread only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::socket::SockProtocol;

use super::netlink::{Address, Link, Netlink, Side, VfChange, VfSettings};
use super::wire::{self, Body, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, attrs, str_of, u32_of};

// rtnetlink's message types and attributes (linux/rtnetlink.h, if_link.h, if_addr.h).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_VFINFO_LIST: u16 = 22;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_VF_INFO: u16 = 1;
const IFLA_VF_MAC: u16 = 1;
const IFLA_VF_VLAN: u16 = 2;
const RTEXT_FILTER_VF: u32 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
/// struct ifinfomsg and struct ifaddrmsg.
const IFINFOMSG: usize = 16;
const IFADDRMSG: usize = 8;

/// The IFA_F_* flags RTM_NEWADDR takes from userspace; the rest are the kernel's state.
const SETTABLE: u32 = libc::IFA_F_NODAD
    | libc::IFA_F_HOMEADDRESS
    | libc::IFA_F_MANAGETEMPADDR
    | libc::IFA_F_NOPREFIXROUTE
    | libc::IFA_F_MCAUTOJOIN
    | libc::IFA_F_OPTIMISTIC;

pub struct Rtnl {
    host: OwnedFd,
    host_ns: OwnedFd,
    /// The RDMA netlink socket, made when first needed (only with RDMA's modules loaded).
    host_rdma: Option<OwnedFd>,
    container: Option<Container>,
    seq: u32,
}

/// The container's side: a socket in its namespace, and the namespace, kept open so that it
/// outlives an init that dies and the devices in it can still be put back.
struct Container {
    sock: OwnedFd,
    ns: OwnedFd,
    rdma: Option<OwnedFd>,
}

impl Rtnl {
    /// A socket in this process's network namespace only.
    pub fn host() -> io::Result<Rtnl> {
        Ok(Rtnl {
            host: wire::socket(SockProtocol::NetlinkRoute)?,
            host_ns: std::fs::File::open("/proc/thread-self/ns/net")?.into(),
            host_rdma: None,
            container: None,
            seq: 0,
        })
    }

    /// Sockets in this process's network namespace and in `container_ns`.
    pub fn open(container_ns: OwnedFd) -> io::Result<Rtnl> {
        let mut nl = Rtnl::host()?;
        let sock = nl.inside(container_ns.as_fd(), || {
            wire::socket(SockProtocol::NetlinkRoute)
        })?;
        nl.container = Some(Container {
            sock,
            ns: container_ns,
            rdma: None,
        });
        Ok(nl)
    }

    /// `make` run in the network namespace `ns`, and back.
    fn inside<T>(&self, ns: BorrowedFd<'_>, make: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)?;
        let made = make();
        // Left in the container's namespace, the runtime would run the hooks there: never go on.
        nix::sched::setns(&self.host_ns, CloneFlags::CLONE_NEWNET)
            .expect("returning to the runtime's own network namespace");
        made
    }

    fn container(&self) -> io::Result<&Container> {
        self.container
            .as_ref()
            .ok_or_else(|| io::Error::other("no container network namespace to ask"))
    }

    /// The RDMA netlink socket of `side`, made the first time.
    fn rdma_socket(&mut self, side: Side) -> io::Result<BorrowedFd<'_>> {
        if side == Side::Container && self.container()?.rdma.is_none() {
            let made = self.inside(self.container()?.ns.as_fd(), super::rdma::socket)?;
            self.container.as_mut().expect("checked").rdma = Some(made);
        }
        if side == Side::Host && self.host_rdma.is_none() {
            self.host_rdma = Some(super::rdma::socket()?);
        }
        let sock = match side {
            Side::Host => self.host_rdma.as_ref(),
            Side::Container => self.container()?.rdma.as_ref(),
        };
        Ok(sock.expect("just made").as_fd())
    }

    fn request(
        &mut self,
        side: Side,
        kind: u16,
        flags: u16,
        body: &Body,
    ) -> io::Result<wire::Answer> {
        let mut seq = self.seq;
        let sock = match side {
            Side::Host => self.host.as_fd(),
            Side::Container => self.container()?.sock.as_fd(),
        };
        let answer = wire::request(sock, &mut seq, kind, flags, body);
        self.seq = seq;
        answer
    }
}

/// struct ifinfomsg for the interface at `index`, with these flags changed.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG] {
    let mut m = [0u8; IFINFOMSG];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn link_of(kind: u16, p: &[u8]) -> Option<Link> {
    if kind != RTM_NEWLINK || p.len() < IFINFOMSG {
        return None;
    }
    let mut l = Link {
        index: u32_of(&p[4..])?,
        name: String::new(),
        up: u32_of(&p[8..])? & libc::IFF_UP as u32 != 0,
        mac: None,
    };
    for (t, v) in attrs(&p[IFINFOMSG..]) {
        match t {
            IFLA_IFNAME => l.name = str_of(v),
            IFLA_ADDRESS => l.mac = v.try_into().ok(),
            _ => {}
        }
    }
    Some(l)
}

fn ip_of(family: u8, v: &[u8]) -> Option<IpAddr> {
    match family as i32 {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address of the interface at `index`, from an RTM_NEWADDR of a dump.
fn address_of(p: &[u8], index: u32) -> Option<Address> {
    if p.len() < IFADDRMSG || u32_of(&p[4..])? != index {
        return None;
    }
    let mut a = Address {
        family: p[0],
        prefix_len: p[1],
        flags: p[2] as u32,
        scope: p[3],
        local: None,
        address: None,
        broadcast: None,
        label: None,
    };
    for (t, v) in attrs(&p[IFADDRMSG..]) {
        match t {
            IFA_LOCAL => a.local = ip_of(a.family, v),
            IFA_ADDRESS => a.address = ip_of(a.family, v),
            IFA_BROADCAST => {
                if let Some(IpAddr::V4(b)) = ip_of(a.family, v) {
                    a.broadcast = Some(b);
                }
            }
            IFA_LABEL => a.label = Some(str_of(v)),
            IFA_FLAGS => a.flags = u32_of(v).unwrap_or(a.flags),
            _ => {}
        }
    }
    Some(a)
}

/// The settings of VF `vf` among an RTM_NEWLINK's IFLA_VFINFO_LIST.
fn vf_of(p: &[u8], vf: u32) -> Option<VfSettings> {
    let list = attrs(p.get(IFINFOMSG..)?)
        .into_iter()
        .find(|(t, _)| *t == IFLA_VFINFO_LIST)?
        .1;
    attrs(list)
        .into_iter()
        .filter(|(t, _)| *t == IFLA_VF_INFO)
        .find_map(|(_, info)| {
            let a = attrs(info);
            // struct ifla_vf_mac { u32 vf; u8 mac[32]; }, struct ifla_vf_vlan { u32 vf, vlan, qos; }
            let (_, mac) = a
                .iter()
                .find(|(t, v)| *t == IFLA_VF_MAC && u32_of(v) == Some(vf))?;
            let (_, vlan) = a.iter().find(|(t, _)| *t == IFLA_VF_VLAN)?;
            Some(VfSettings {
                mac: mac.get(4..10)?.try_into().ok()?,
                vlan: u32_of(vlan.get(4..)?)? as u16,
                qos: u32_of(vlan.get(8..)?)?,
            })
        })
}

impl Netlink for Rtnl {
    fn link(&mut self, side: Side, name: &str) -> io::Result<Option<Link>> {
        let mut b = Body::new(&ifinfomsg(0, 0, 0));
        b.string(IFLA_IFNAME, name);
        match self.request(side, RTM_GETLINK, 0, &b) {
            Err(e) if wire::errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            r => Ok(r?.iter().find_map(|(k, p)| link_of(*k, p))),
        }
    }

    fn links(&mut self, side: Side) -> io::Result<Vec<Link>> {
        let b = Body::new(&ifinfomsg(0, 0, 0));
        let all = self.request(side, RTM_GETLINK, NLM_F_DUMP, &b)?;
        Ok(all.iter().filter_map(|(k, p)| link_of(*k, p)).collect())
    }

    fn addresses(&mut self, side: Side, index: u32) -> io::Result<Vec<Address>> {
        let b = Body::new(&[0u8; IFADDRMSG]);
        let all = self.request(side, RTM_GETADDR, NLM_F_DUMP, &b)?;
        Ok(all
            .iter()
            .filter_map(|(_, p)| address_of(p, index))
            .collect())
    }

    fn add_address(&mut self, side: Side, index: u32, a: &Address) -> io::Result<()> {
        let flags = a.flags & SETTABLE;
        let mut fixed = [a.family, a.prefix_len, flags as u8, a.scope, 0, 0, 0, 0];
        fixed[4..].copy_from_slice(&index.to_ne_bytes());
        let mut b = Body::new(&fixed);
        if let Some(ip) = &a.local {
            b.attr(IFA_LOCAL, &ip_bytes(ip));
        }
        if let Some(ip) = &a.address {
            b.attr(IFA_ADDRESS, &ip_bytes(ip));
        }
        if let Some(ip) = &a.broadcast {
            b.attr(IFA_BROADCAST, &ip.octets());
        }
        if let Some(l) = &a.label {
            b.string(IFA_LABEL, l);
        }
        b.attr(IFA_FLAGS, &flags.to_ne_bytes());
        self.request(side, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &b)
            .map(drop)
    }

    fn set_up(&mut self, side: Side, index: u32, up: bool) -> io::Result<()> {
        let iff_up = libc::IFF_UP as u32;
        let b = Body::new(&ifinfomsg(index, if up { iff_up } else { 0 }, iff_up));
        self.request(side, RTM_SETLINK, 0, &b).map(drop)
    }

    fn move_link(&mut self, from: Side, index: u32, name: &str) -> io::Result<()> {
        let target = match from {
            Side::Host => self.container()?.ns.as_raw_fd(),
            Side::Container => self.host_ns.as_raw_fd(),
        };
        let mut b = Body::new(&ifinfomsg(index, 0, 0));
        b.attr(IFLA_NET_NS_FD, &(target as u32).to_ne_bytes())
            .string(IFLA_IFNAME, name);
        self.request(from, RTM_SETLINK, 0, &b).map(drop)
    }

    fn vf(&mut self, pf: u32, vf: u32) -> io::Result<Option<VfSettings>> {
        let mut b = Body::new(&ifinfomsg(pf, 0, 0));
        b.attr(IFLA_EXT_MASK, &RTEXT_FILTER_VF.to_ne_bytes());
        let got = self.request(Side::Host, RTM_GETLINK, 0, &b)?;
        Ok(got.iter().find_map(|(_, p)| vf_of(p, vf)))
    }

    fn set_vf(&mut self, pf: u32, vf: u32, to: &VfChange) -> io::Result<()> {
        let mut b = Body::new(&ifinfomsg(pf, 0, 0));
        b.nested(IFLA_VFINFO_LIST, |list| {
            list.nested(IFLA_VF_INFO, |info| {
                if let Some(mac) = to.mac {
                    let mut v = [0u8; 36];
                    v[..4].copy_from_slice(&vf.to_ne_bytes());
                    v[4..10].copy_from_slice(&mac);
                    info.attr(IFLA_VF_MAC, &v);
                }
                if let Some((vlan, qos)) = to.vlan {
                    let mut v = vf.to_ne_bytes().to_vec();
                    v.extend_from_slice(&u32::from(vlan).to_ne_bytes());
                    v.extend_from_slice(&qos.to_ne_bytes());
                    info.attr(IFLA_VF_VLAN, &v);
                }
            });
        });
        self.request(Side::Host, RTM_SETLINK, 0, &b).map(drop)
    }

    fn set_mac(&mut self, side: Side, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut b = Body::new(&ifinfomsg(index, 0, 0));
        b.attr(IFLA_ADDRESS, &mac);
        self.request(side, RTM_SETLINK, 0, &b).map(drop)
    }

    fn move_rdma(&mut self, from: Side, device: &str) -> io::Result<()> {
        let target = match from {
            Side::Host => self.container()?.ns.try_clone()?,
            Side::Container => self.host_ns.try_clone()?,
        };
        let mut seq = self.seq;
        let sock = self.rdma_socket(from)?;
        let moved = super::rdma::index(sock, &mut seq, device).and_then(|index| {
            let index = index.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no RDMA device {device} here"),
                )
            })?;
            super::rdma::set_namespace(sock, &mut seq, index, target.as_fd())
        });
        self.seq = seq;
        moved
    }
}
