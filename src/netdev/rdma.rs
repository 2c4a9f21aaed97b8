//! The two requests of the RDMA subsystem's netlink family (NETLINK_RDMA, the nldev client) that
//! moving a device between network namespaces needs, in exclusive mode: the index of a device
//! by its name (a dump: RDMA_NLDEV_CMD_GET answers one device by index only), and
//! RDMA_NLDEV_CMD_SET with RDMA_NLDEV_NET_NS_FD. Small enough to write out: netlink-packet-route
//! has no RDMA messages.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{MsgFlags, SockFlag, SockProtocol, SockType};

/// RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, op).
const fn nldev(op: u16) -> u16 {
    (5 << 10) + op
}
const CMD_GET: u16 = nldev(1);
const CMD_SET: u16 = nldev(2);
const ATTR_DEV_INDEX: u16 = 1;
const ATTR_DEV_NAME: u16 = 2;
const ATTR_NET_NS_FD: u16 = 68;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;

pub fn socket() -> io::Result<OwnedFd> {
    let proto = SockProtocol::NetlinkRDMA;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        proto,
    );
    sock.map_err(|e| match e {
        nix::errno::Errno::EPROTONOSUPPORT => {
            io::Error::other("the kernel has no RDMA netlink (ib_core is not loaded)")
        }
        e => e.into(),
    })
}

/// One request: its header (flags, sequence number), then its attributes.
fn message(kind: u16, flags: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; HEADER];
    for (t, v) in attrs {
        let len = 4 + v.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&t.to_ne_bytes());
        m.extend_from_slice(v);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// The attributes of a message's payload, by type.
fn attrs(mut p: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while p.len() >= 4 {
        let len = u16::from_ne_bytes([p[0], p[1]]) as usize;
        let kind = u16::from_ne_bytes([p[2], p[3]]) & 0x3fff;
        let Some(value) = p.get(4..len.max(4)) else {
            break;
        };
        out.push((kind, value));
        p = p.get(len.max(4).next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

/// Sends `req` and reads the answers up to the ACK or NLMSG_DONE: each message's payload.
fn transact(sock: BorrowedFd<'_>, req: &[u8], seq: u32) -> io::Result<Vec<Vec<u8>>> {
    nix::sys::socket::send(sock.as_raw_fd(), req, MsgFlags::empty())?;
    let mut out = Vec::new();
    let short = || io::Error::other("RDMA netlink: a message shorter than its header says");
    loop {
        let datagram = super::rtnl::recv(sock)?;
        let mut rest = &datagram[..];
        while !rest.is_empty() {
            let head = rest.get(..HEADER).ok_or_else(short)?;
            let len = u32::from_ne_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes([head[4], head[5]]);
            let this_seq = u32::from_ne_bytes(head[8..12].try_into().expect("4 bytes"));
            let payload = rest.get(HEADER..len.max(HEADER)).ok_or_else(short)?;
            rest = rest
                .get(len.max(HEADER).next_multiple_of(4)..)
                .unwrap_or_default();
            if this_seq != seq {
                continue;
            }
            match kind {
                NLMSG_DONE => match payload
                    .get(..4)
                    .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
                {
                    Some(c) if c != 0 => return Err(io::Error::from_raw_os_error(c.abs())),
                    _ => return Ok(out),
                },
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map_or(0, |c| i32::from_ne_bytes(c.try_into().expect("4 bytes")));
                    return match code {
                        0 => Ok(out),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    };
                }
                _ => out.push(payload.to_vec()),
            }
        }
    }
}

/// The index of the RDMA device `name` in the socket's network namespace.
pub fn index(sock: BorrowedFd<'_>, name: &str, seq: u32) -> io::Result<Option<u32>> {
    let dump = (libc::NLM_F_ROOT | libc::NLM_F_MATCH) as u16;
    let replies = transact(sock, &message(CMD_GET, dump, seq, &[]), seq)?;
    for r in &replies {
        let a = attrs(r);
        let named = a.iter().any(|(t, v)| {
            *t == ATTR_DEV_NAME && v.split(|b| *b == 0).next() == Some(name.as_bytes())
        });
        let index = a.iter().find(|(t, _)| *t == ATTR_DEV_INDEX);
        if let (true, Some((_, v))) = (named, index) {
            let v: [u8; 4] = v.get(..4).and_then(|v| v.try_into().ok()).ok_or_else(|| {
                io::Error::other("RDMA netlink: a device index of the wrong size")
            })?;
            return Ok(Some(u32::from_ne_bytes(v)));
        }
    }
    Ok(None)
}

/// Moves the device at `index` into the network namespace `ns`.
pub fn set_namespace(
    sock: BorrowedFd<'_>,
    index: u32,
    ns: BorrowedFd<'_>,
    seq: u32,
) -> io::Result<()> {
    let fd = ns.as_raw_fd() as u32;
    let attrs = [
        (ATTR_DEV_INDEX, &index.to_ne_bytes()[..]),
        (ATTR_NET_NS_FD, &fd.to_ne_bytes()[..]),
    ];
    let ack = libc::NLM_F_ACK as u16;
    transact(sock, &message(CMD_SET, ack, seq, &attrs), seq).map(drop)
}

#[cfg(test)]
mod tests {
    /// The bytes of the move request, as the kernel's nldev_set_doit reads them.
    #[test]
    fn a_move_request_is_laid_out_as_the_kernel_reads_it() {
        let m = super::message(
            super::CMD_SET,
            libc::NLM_F_ACK as u16,
            7,
            &[(1, &9u32.to_ne_bytes()), (68, &4u32.to_ne_bytes())],
        );
        assert_eq!(m.len(), 16 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 5 * 1024 + 2);
        assert_eq!(
            u16::from_ne_bytes([m[6], m[7]]),
            (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16
        );
        let a = super::attrs(&m[16..]);
        assert_eq!(
            a,
            [(1, &9u32.to_ne_bytes()[..]), (68, &4u32.to_ne_bytes()[..])]
        );
        // A name, padded to four bytes, parses back whole.
        let named = super::message(0, 0, 0, &[(2, b"rxe0\0")]);
        assert_eq!(named.len(), 16 + 12);
        assert_eq!(super::attrs(&named[16..]), [(2, &b"rxe0\0"[..])]);
    }
}
