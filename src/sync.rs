//! The messages between `chitin create` and the init it cloned, over a SOCK_SEQPACKET socketpair
//! (one message per datagram, and EOF when the other side is gone).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Parent → init: the init is in its cgroups; go on.
    Go,
    /// Init → parent: the init forked into the pid namespace it made after joining a user
    /// namespace; this child (by its pid here) is the init now, and the sender exits.
    Forked {
        pid: i32,
    },
    /// Init → parent: write my uid_map and gid_map.
    MapIds,
    IdsMapped,
    /// Init → parent: my network namespace is made; move linux.netDevices into it.
    NetReady,
    /// Parent → init: the devices are in.
    NetMoved,
    /// Init → parent: namespaces and mounts are ready; run prestart and createRuntime hooks.
    RunHooks,
    /// Parent → init: hooks done; the states for createContainer ("creating") and
    /// startContainer ("created") hooks.
    HooksDone {
        creating: String,
        created: String,
    },
    /// Init → parent: the seccomp notification fd follows (SCM_RIGHTS) for the agent.
    SeccompListener,
    /// Init → parent: set up; waiting at the start barrier.
    Ready,
    /// Init → parent: a step failed.
    Failed(Failure),
}

/// A step of the init that failed: its name, the errno where the kernel gave one, and what else
/// there is to say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub step: String,
    pub errno: Option<i32>,
    pub detail: String,
}

impl Failure {
    pub fn new(step: &str, e: &io::Error) -> Failure {
        Failure {
            step: step.to_owned(),
            errno: e.raw_os_error(),
            detail: match e.raw_os_error() {
                Some(_) => String::new(),
                None => e.to_string(),
            },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errno {
            Some(errno) => write!(f, "{}: {}", self.step, io::Error::from_raw_os_error(errno)),
            None => write!(f, "{}: {}", self.step, self.detail),
        }
    }
}

/// What went wrong waiting for a message.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("{0}")]
    Failed(Failure),
    #[error("exited while {0}")]
    Gone(&'static str),
    #[error("sent {got:?} while {step}")]
    Unexpected { got: Box<Msg>, step: &'static str },
    #[error("sync while {step}: {source}")]
    Io {
        step: &'static str,
        source: io::Error,
    },
}

/// The next message, at `step` of the protocol, which must be one that `wanted` accepts: the
/// other side's failure, its exit or any other message is an error.
pub fn expect(
    fd: BorrowedFd<'_>,
    step: &'static str,
    wanted: impl Fn(&Msg) -> bool,
) -> Result<Msg, ExpectError> {
    match recv_msg(fd) {
        Err(source) => Err(ExpectError::Io { step, source }),
        Ok(None) => Err(ExpectError::Gone(step)),
        Ok(Some(Msg::Failed(f))) => Err(ExpectError::Failed(f)),
        Ok(Some(m)) if wanted(&m) => Ok(m),
        Ok(Some(got)) => Err(ExpectError::Unexpected {
            got: Box::new(got),
            step,
        }),
    }
}

pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

pub fn send_msg(fd: BorrowedFd<'_>, msg: &Msg) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).expect("message serializes");
    send(fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)?;
    Ok(())
}

/// Receives one message; `Ok(None)` when the other side closed the socket.
pub fn recv_msg(fd: BorrowedFd<'_>) -> io::Result<Option<Msg>> {
    let buf = recv_datagram(fd)?;
    if buf.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(io::Error::other)
}

/// One datagram, whole (empty at EOF). Its size is asked first (MSG_PEEK | MSG_TRUNC gives a
/// datagram's whole length): a state with large annotations, or a netlink dump's part, does not
/// fit a fixed buffer, and a datagram socket cuts what does not fit.
pub fn recv_datagram(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let recv_with = |buf: &mut [u8], flags: MsgFlags| loop {
        match recv(fd.as_raw_fd(), buf, flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r,
        }
    };
    let size = recv_with(&mut [0u8; 1], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
    let mut buf = vec![0u8; size.max(1)];
    let n = recv_with(&mut buf, MsgFlags::empty())?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn each_step_takes_only_its_message() {
        let (a, b) = pair().unwrap();
        send_msg(a.as_fd(), &Msg::Ready).unwrap();
        let e = expect(b.as_fd(), "asking for its id maps", |m| *m == Msg::MapIds).unwrap_err();
        assert_eq!(e.to_string(), "sent Ready while asking for its id maps");
        send_msg(a.as_fd(), &Msg::MapIds).unwrap();
        assert_eq!(
            expect(b.as_fd(), "maps", |m| *m == Msg::MapIds).unwrap(),
            Msg::MapIds
        );
        drop(a);
        let e = expect(b.as_fd(), "finishing its setup", |_| true).unwrap_err();
        assert_eq!(e.to_string(), "exited while finishing its setup");
    }

    #[test]
    fn a_failure_keeps_its_errno() {
        let (a, b) = pair().unwrap();
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        send_msg(
            a.as_fd(),
            &Msg::Failed(Failure::new("mounting /dev", &enospc)),
        )
        .unwrap();
        let Err(ExpectError::Failed(f)) = expect(b.as_fd(), "setup", |_| true) else {
            panic!("a failure")
        };
        assert_eq!(f.errno, Some(libc::ENOSPC));
        assert_eq!(f.to_string(), format!("mounting /dev: {enospc}"));
        let other = Failure::new("hooks", &io::Error::other("exit status 1"));
        assert_eq!(
            (other.errno, other.to_string()),
            (None, "hooks: exit status 1".into())
        );
    }
}
