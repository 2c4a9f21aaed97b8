//! The two requests of the RDMA subsystem's netlink family (NETLINK_RDMA, the nldev client) that
//! moving a device between network namespaces needs, in exclusive mode: the index of a device
//! by its name (a dump: RDMA_NLDEV_CMD_GET answers one device by index only), and
//! RDMA_NLDEV_CMD_SET with RDMA_NLDEV_NET_NS_FD.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::SockProtocol;

use super::wire::{self, Body, NLM_F_DUMP, attrs, str_of, u32_of};

/// RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, op) (rdma/rdma_netlink.h).
const fn nldev(op: u16) -> u16 {
    (5 << 10) + op
}
const CMD_GET: u16 = nldev(1);
const CMD_SET: u16 = nldev(2);
const ATTR_DEV_INDEX: u16 = 1;
const ATTR_DEV_NAME: u16 = 2;
const ATTR_NET_NS_FD: u16 = 68;

pub fn socket() -> io::Result<OwnedFd> {
    wire::socket(SockProtocol::NetlinkRDMA).map_err(|e| match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT) => {
            io::Error::other("the kernel has no RDMA netlink (ib_core is not loaded)")
        }
        _ => e,
    })
}

/// The index of the RDMA device `name` in the socket's network namespace.
pub fn index(sock: BorrowedFd<'_>, seq: &mut u32, name: &str) -> io::Result<Option<u32>> {
    let replies = wire::request(sock, seq, CMD_GET, NLM_F_DUMP, &Body::new(&[]))?;
    Ok(replies.iter().find_map(|(_, p)| {
        let a = attrs(p);
        let named = a
            .iter()
            .any(|(t, v)| *t == ATTR_DEV_NAME && str_of(v) == name);
        let index = a.iter().find(|(t, _)| *t == ATTR_DEV_INDEX)?;
        named.then(|| u32_of(index.1)).flatten()
    }))
}

/// Moves the device at `index` into the network namespace `ns`.
pub fn set_namespace(
    sock: BorrowedFd<'_>,
    seq: &mut u32,
    index: u32,
    ns: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut b = Body::new(&[]);
    b.attr(ATTR_DEV_INDEX, &index.to_ne_bytes())
        .attr(ATTR_NET_NS_FD, &(ns.as_raw_fd() as u32).to_ne_bytes());
    wire::request(sock, seq, CMD_SET, 0, &b).map(drop)
}
