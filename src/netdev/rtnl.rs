//! The real `Netlink`: one rtnetlink socket in each namespace, the messages built and read by
//! netlink-packet-route. The container's socket is made from inside its namespace (a socket
//! stays in the namespace it was made in), entered and left again at once: the runtime is
//! single-threaded, and setns applies to the calling thread only.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use netlink_packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage, LinkVfInfo, VfInfo, VfInfoMac,
    VfInfoVlan,
};
use nix::sched::CloneFlags;
use nix::sys::socket::{MsgFlags, SockFlag, SockProtocol, SockType};

use super::netlink::{Address, Link, Netlink, Side, VfChange, VfSettings};

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
            host: socket()?,
            host_ns: std::fs::File::open("/proc/thread-self/ns/net")?.into(),
            host_rdma: None,
            container: None,
            seq: 0,
        })
    }

    /// Sockets in this process's network namespace and in `container_ns`.
    pub fn open(container_ns: OwnedFd) -> io::Result<Rtnl> {
        let mut nl = Rtnl::host()?;
        let sock = nl.inside(container_ns.as_fd(), socket)?;
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

    fn container(&self) -> io::Result<&Container> {
        self.container
            .as_ref()
            .ok_or_else(|| io::Error::other("no container network namespace to ask"))
    }

    /// Sends one request and reads its answer: the messages of a dump (up to NLMSG_DONE), or
    /// those before the ACK (which NLM_F_ACK asks for, so that every request has an end).
    fn request(
        &mut self,
        side: Side,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        // NLM_F_DUMP shares a bit with NLM_F_EXCL: only the whole of it is a dump.
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        // A dump that the table changed under (NLM_F_DUMP_INTR) is asked again.
        for _ in 0..3 {
            if let Some(answer) = self.once(side, msg.clone(), flags, dump)? {
                return Ok(answer);
            }
        }
        Err(io::Error::other("netlink: a dump interrupted three times"))
    }

    /// One request and its answer; None when a dump was interrupted.
    fn once(
        &mut self,
        side: Side,
        msg: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> io::Result<Option<Vec<RouteNetlinkMessage>>> {
        self.seq += 1;
        let sock = match side {
            Side::Host => self.host.as_fd(),
            Side::Container => self.container()?.sock.as_fd(),
        };
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        nix::sys::socket::send(sock.as_raw_fd(), &buf, MsgFlags::empty())?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let datagram = recv(sock)?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::other(format!("netlink: {e}")))?;
                let len = (m.header.length as usize).next_multiple_of(4);
                rest = rest.get(len.max(1)..).unwrap_or_default();
                if m.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
                match m.payload {
                    NetlinkPayload::Done(d) if d.code != 0 => {
                        return Err(io::Error::from_raw_os_error(d.code.abs()));
                    }
                    NetlinkPayload::Done(_) => return Ok((!interrupted).then_some(out)),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(_) => return Err(refusal(&e, m.header.flags)),
                        None => return Ok(Some(out)),
                    },
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }
}

/// The kernel's errno, with the reason it gives in an extended ACK ("The interface netns is
/// immutable" says more than EINVAL); the kind is the errno's, for callers that match on it.
fn refusal(e: &ErrorMessage, flags: u16) -> io::Error {
    let errno = e.raw_code().abs();
    let plain = io::Error::from_raw_os_error(errno);
    match extack_message(&e.header, flags) {
        Some(why) => io::Error::new(plain.kind(), Refused { errno, why }),
        None => plain,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{why}: {}", io::Error::from_raw_os_error(*.errno))]
struct Refused {
    errno: i32,
    why: String,
}

/// The errno of a refusal, with a reason or without.
fn errno_of(e: &io::Error) -> Option<i32> {
    let refused = e.get_ref().and_then(|r| r.downcast_ref::<Refused>());
    e.raw_os_error().or(refused.map(|r| r.errno))
}

/// NLMSGERR_ATTR_MSG of an error's TLVs, which follow the request it quotes: its header only
/// when capped, else the whole request (whose length is its header's first word).
fn extack_message(quoted: &[u8], flags: u16) -> Option<String> {
    const CAPPED: u16 = 0x100;
    const ACK_TLVS: u16 = 0x200;
    const ATTR_MSG: u16 = 1;
    if flags & ACK_TLVS == 0 {
        return None;
    }
    let mut at = match flags & CAPPED {
        0 => u32::from_ne_bytes(quoted.get(..4)?.try_into().ok()?) as usize,
        _ => 16,
    };
    while let Some(head) = quoted.get(at..at + 4) {
        let len = u16::from_ne_bytes([head[0], head[1]]) as usize;
        let kind = u16::from_ne_bytes([head[2], head[3]]);
        let value = quoted.get(at + 4..at + len.max(4))?;
        if kind == ATTR_MSG {
            let text = value.split(|b| *b == 0).next()?;
            return Some(
                String::from_utf8_lossy(text)
                    .trim_end_matches('.')
                    .to_owned(),
            );
        }
        at += len.max(4).next_multiple_of(4);
    }
    None
}

/// A route socket that asks for extended ACKs.
fn socket() -> io::Result<OwnedFd> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let on: libc::c_int = 1;
    // SAFETY: an int option of the size given. Kernels before 4.12 refuse it: errors stay bare.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_EXT_ACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

/// One datagram, whole: its size is asked first (MSG_PEEK | MSG_TRUNC), as a dump's parts can
/// be larger than a page.
pub(super) fn recv(sock: std::os::fd::BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let recv_with = |buf: &mut [u8], flags: MsgFlags| loop {
        match nix::sys::socket::recv(sock.as_raw_fd(), buf, flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r,
        }
    };
    let size = recv_with(&mut [0u8; 1], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
    let mut buf = vec![0u8; size];
    let n = recv_with(&mut buf, MsgFlags::empty())?;
    buf.truncate(n);
    Ok(buf)
}

fn link_of(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        mac: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Address(a) => l.mac = a.try_into().ok(),
            _ => {}
        }
    }
    l
}

fn address_of(m: AddressMessage) -> Address {
    let mut a = Address {
        family: m.header.family.into(),
        prefix_len: m.header.prefix_len,
        scope: m.header.scope.into(),
        flags: m.header.flags.bits() as u32,
        local: None,
        address: None,
        broadcast: None,
        label: None,
    };
    for attr in m.attributes {
        match attr {
            AddressAttribute::Local(ip) => a.local = Some(ip),
            AddressAttribute::Address(ip) => a.address = Some(ip),
            AddressAttribute::Broadcast(ip) => a.broadcast = Some(ip),
            AddressAttribute::Label(l) => a.label = Some(l),
            AddressAttribute::Flags(f) => a.flags = f.bits(),
            _ => {}
        }
    }
    a
}

fn link_message(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

impl Netlink for Rtnl {
    fn link(&mut self, side: Side, name: &str) -> io::Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(side, RouteNetlinkMessage::GetLink(m), 0) {
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            r => Ok(r?.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })),
        }
    }

    fn links(&mut self, side: Side) -> io::Result<Vec<Link>> {
        let all = self.request(
            side,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(all
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })
            .collect())
    }

    fn addresses(&mut self, side: Side, index: u32) -> io::Result<Vec<Address>> {
        let all = self.request(
            side,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(all
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    Some(address_of(a))
                }
                _ => None,
            })
            .collect())
    }

    fn add_address(&mut self, side: Side, index: u32, a: &Address) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = a.family.into();
        m.header.prefix_len = a.prefix_len;
        m.header.scope = a.scope.into();
        m.header.index = index;
        let flags = a.flags & SETTABLE;
        m.header.flags = AddressHeaderFlags::from_bits_retain(flags as u8);
        let attrs = &mut m.attributes;
        attrs.extend(a.local.map(AddressAttribute::Local));
        attrs.extend(a.address.map(AddressAttribute::Address));
        attrs.extend(a.broadcast.map(AddressAttribute::Broadcast));
        attrs.extend(a.label.clone().map(AddressAttribute::Label));
        attrs.push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
        let new = RouteNetlinkMessage::NewAddress(m);
        self.request(side, new, NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    fn set_up(&mut self, side: Side, index: u32, up: bool) -> io::Result<()> {
        let mut m = link_message(index);
        m.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Up;
        self.request(side, RouteNetlinkMessage::SetLink(m), 0)
            .map(drop)
    }

    fn move_link(&mut self, from: Side, index: u32, name: &str) -> io::Result<()> {
        let target = match from {
            Side::Host => self.container()?.ns.as_raw_fd(),
            Side::Container => self.host_ns.as_raw_fd(),
        };
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::NetNsFd(target));
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.request(from, RouteNetlinkMessage::SetLink(m), 0)
            .map(drop)
    }

    fn vf(&mut self, pf: u32, vf: u32) -> io::Result<Option<VfSettings>> {
        let mut m = link_message(pf);
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
        let got = self.request(Side::Host, RouteNetlinkMessage::GetLink(m), 0)?;
        let infos = got.into_iter().flat_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes,
            _ => Vec::new(),
        });
        for a in infos {
            let LinkAttribute::VfInfoList(list) = a else {
                continue;
            };
            for LinkVfInfo(info) in list {
                let mac = info.iter().find_map(|i| match i {
                    VfInfo::Mac(m) if m.vf_id == vf => Some(m.mac),
                    _ => None,
                });
                let vlan = info.iter().find_map(|i| match i {
                    VfInfo::Vlan(v) if v.vf_id == vf => Some((v.vlan_id as u16, v.qos)),
                    _ => None,
                });
                if let (Some(mac), Some((vlan, qos))) = (mac, vlan) {
                    let mut six = [0u8; 6];
                    six.copy_from_slice(&mac[..6]);
                    return Ok(Some(VfSettings {
                        mac: six,
                        vlan,
                        qos,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn set_vf(&mut self, pf: u32, vf: u32, to: &VfChange) -> io::Result<()> {
        let mut m = link_message(pf);
        let mut info = LinkVfInfo(Vec::new());
        let mac = to.mac.map(|mac| VfInfo::Mac(VfInfoMac::new(vf, &mac)));
        info.0.extend(mac);
        let vlan = to
            .vlan
            .map(|(id, qos)| VfInfo::Vlan(VfInfoVlan::new(vf, id.into(), qos)));
        info.0.extend(vlan);
        m.attributes.push(LinkAttribute::VfInfoList(vec![info]));
        self.request(Side::Host, RouteNetlinkMessage::SetLink(m), 0)
            .map(drop)
    }

    fn set_mac(&mut self, side: Side, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(side, RouteNetlinkMessage::SetLink(m), 0)
            .map(drop)
    }

    fn move_rdma(&mut self, from: Side, device: &str) -> io::Result<()> {
        self.seq += 2;
        let seq = self.seq;
        let target = match from {
            Side::Host => self.container()?.ns.try_clone()?,
            Side::Container => self.host_ns.try_clone()?,
        };
        let sock = self.rdma_socket(from)?;
        let index = super::rdma::index(sock, device, seq - 1)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no RDMA device {device} here"),
            )
        })?;
        super::rdma::set_namespace(sock, index, target.as_fd(), seq)
    }
}
