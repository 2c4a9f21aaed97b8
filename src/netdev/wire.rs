//! Netlink on the wire, as much as chitin's requests need: a message is a 16-byte header, a
//! family's fixed header and attributes (length, type, value, each padded to 4 bytes); an answer
//! is the messages of a dump up to NLMSG_DONE, or those before the ACK, or an error with the
//! kernel's reason in its extended ACK. Both rtnetlink and the RDMA family are spoken through it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{MsgFlags, SockFlag, SockProtocol, SockType};

const HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
/// NLM_F_ROOT | NLM_F_MATCH. It shares a bit with NLM_F_EXCL: only the whole of it is a dump.
pub const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// On an error: the request it quotes is its header only; extended-ACK attributes follow.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
/// The nested-attribute flag of an attribute's type.
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink socket of `proto` that asks for extended ACKs (kernels before 4.12 refuse that:
/// their errors stay bare).
pub fn socket(proto: SockProtocol) -> io::Result<OwnedFd> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        proto,
    )?;
    let on: libc::c_int = 1;
    // SAFETY: an int option of the size given.
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

/// The messages answering a request: each one's type and payload.
pub type Answer = Vec<(u16, Vec<u8>)>;

/// A request's body: the family's fixed header, then attributes.
pub struct Body(Vec<u8>);

impl Body {
    pub fn new(fixed: &[u8]) -> Body {
        Body(fixed.to_vec())
    }

    pub fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Body {
        self.0
            .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    /// A string attribute, NUL-terminated as the kernel's nla_strscpy wants.
    pub fn string(&mut self, kind: u16, s: &str) -> &mut Body {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// An attribute holding the attributes `inner` adds.
    pub fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut Body)) -> &mut Body {
        let mut b = Body(Vec::new());
        inner(&mut b);
        self.attr(kind | NLA_F_NESTED, &b.0)
    }
}

/// The attributes of `p` (a payload after its fixed header), by type.
pub fn attrs(mut p: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while p.len() >= 4 {
        let len = u16::from_ne_bytes([p[0], p[1]]) as usize;
        let kind = u16::from_ne_bytes([p[2], p[3]]) & !(NLA_F_NESTED | 0x4000);
        let Some(value) = p.get(4..len.max(4)) else {
            break;
        };
        out.push((kind, value));
        p = p.get(len.max(4).next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

/// A value's first four bytes as a u32.
pub fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// A string attribute's text, up to its NUL.
pub fn str_of(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

/// The request `kind` with `body`, and its answer: the payloads of the messages before the ACK
/// or NLMSG_DONE, each with its type. A dump the kernel's table changed under (NLM_F_DUMP_INTR)
/// is asked again.
pub fn request(
    sock: BorrowedFd<'_>,
    seq: &mut u32,
    kind: u16,
    flags: u16,
    body: &Body,
) -> io::Result<Answer> {
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    for _ in 0..3 {
        *seq += 1;
        if let Some(answer) = once(
            sock,
            *seq,
            kind,
            flags | if dump { 0 } else { NLM_F_ACK },
            body,
        )? {
            return Ok(answer);
        }
    }
    Err(io::Error::other("netlink: a dump interrupted three times"))
}

fn once(
    sock: BorrowedFd<'_>,
    seq: u32,
    kind: u16,
    flags: u16,
    body: &Body,
) -> io::Result<Option<Answer>> {
    let mut m = Vec::with_capacity(HEADER + body.0.len());
    m.extend_from_slice(&((HEADER + body.0.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body.0);
    nix::sys::socket::send(sock.as_raw_fd(), &m, MsgFlags::empty())?;
    let short = || io::Error::other("netlink: a message shorter than its header says");
    let mut out = Vec::new();
    let mut interrupted = false;
    loop {
        let datagram = crate::sync::recv_datagram(sock)?;
        if datagram.is_empty() {
            return Err(io::Error::other("netlink: an empty answer"));
        }
        let mut rest = &datagram[..];
        while !rest.is_empty() {
            let head = rest.get(..HEADER).ok_or_else(short)?;
            let len = u32_of(head).expect("a header") as usize;
            let kind = u16::from_ne_bytes([head[4], head[5]]);
            let mflags = u16::from_ne_bytes([head[6], head[7]]);
            let this = u32_of(&head[8..]).expect("a header");
            let payload = rest.get(HEADER..len.max(HEADER)).ok_or_else(short)?;
            rest = rest
                .get(len.max(HEADER).next_multiple_of(4)..)
                .unwrap_or_default();
            if this != seq {
                continue;
            }
            interrupted |= mflags & NLM_F_DUMP_INTR != 0;
            let code = || u32_of(payload).map_or(0, |c| c as i32);
            match kind {
                NLMSG_DONE if code() != 0 => {
                    return Err(io::Error::from_raw_os_error(code().abs()));
                }
                NLMSG_DONE => return Ok((!interrupted).then_some(out)),
                NLMSG_ERROR if code() == 0 => return Ok(Some(out)),
                NLMSG_ERROR => return Err(refusal(code().abs(), &payload[4..], mflags)),
                _ => out.push((kind, payload.to_vec())),
            }
        }
    }
}

/// The kernel's errno, with the reason it gives in an extended ACK ("The interface netns is
/// immutable" says more than EINVAL); the kind is the errno's, for callers that match on it.
fn refusal(errno: i32, quoted: &[u8], flags: u16) -> io::Error {
    let plain = io::Error::from_raw_os_error(errno);
    match extack_message(quoted, flags) {
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
pub fn errno_of(e: &io::Error) -> Option<i32> {
    let refused = e.get_ref().and_then(|r| r.downcast_ref::<Refused>());
    e.raw_os_error().or(refused.map(|r| r.errno))
}

/// NLMSGERR_ATTR_MSG of an error's TLVs, which follow the request it quotes: its header only
/// when capped, else the whole request (whose length is its header's first word).
fn extack_message(quoted: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let at = match flags & NLM_F_CAPPED {
        0 => u32_of(quoted)? as usize,
        _ => HEADER,
    };
    attrs(quoted.get(at..)?)
        .into_iter()
        .find(|(k, _)| *k == NLMSGERR_ATTR_MSG)
        .map(|(_, v)| str_of(v).trim_end_matches('.').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attributes are padded to four bytes and parse back whole, nested ones too.
    #[test]
    fn bodies_are_laid_out_as_the_kernel_reads_them() {
        let mut b = Body::new(&[0u8; 16]);
        b.attr(1, &9u32.to_ne_bytes())
            .string(3, "eth1")
            .nested(22, |n| {
                n.attr(1, &[7u8; 5]);
            });
        assert_eq!(b.0.len(), 16 + 8 + 12 + 16);
        let a = attrs(&b.0[16..]);
        assert_eq!(a[0], (1, &9u32.to_ne_bytes()[..]));
        assert_eq!((a[1].0, str_of(a[1].1)), (3, "eth1".to_owned()));
        assert_eq!(a[2].0, 22);
        assert_eq!(attrs(a[2].1), [(1, &[7u8; 5][..])]);
    }

    #[test]
    fn an_extended_ack_s_reason_is_read() {
        let mut quoted = vec![0u8; 16];
        let mut tlv = Body::new(&[]);
        tlv.string(NLMSGERR_ATTR_MSG, "The interface netns is immutable");
        quoted.extend_from_slice(&tlv.0);
        let e = refusal(libc::EINVAL, &quoted, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        assert_eq!(
            e.to_string(),
            "The interface netns is immutable: Invalid argument (os error 22)"
        );
        assert_eq!(errno_of(&e), Some(libc::EINVAL));
        assert_eq!(
            refusal(libc::ENODEV, &quoted, 0).raw_os_error(),
            Some(libc::ENODEV)
        );
    }
}
