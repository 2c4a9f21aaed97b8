//! `run` in the foreground: forward signals to the init, relay its terminal, reap it, and return
//! its exit status (128+N when killed by signal N, as runc and shells do).

use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{ContainerError, io_ctx};
use crate::pty::Relay;

/// The signals `run` blocks before cloning, to take them from a signalfd; the faults raised by
/// our own code stay deliverable.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGABRT,
        Signal::SIGTRAP,
    ] {
        set.remove(s);
    }
    set
}

fn exit_code(s: WaitStatus) -> Option<i32> {
    match s {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

pub fn relay_and_wait(pid: i32, console: Option<OwnedFd>) -> Result<i32, ContainerError> {
    let init = Pid::from_raw(pid);
    let sfd = SignalFd::with_flags(&forwarded_signals(), SfdFlags::SFD_CLOEXEC)
        .map_err(|e| io_ctx("signalfd")(e.into()))?;
    let mut relay = match console {
        Some(sock) => Some(Relay::new(
            crate::fdpass::recv_fd(sock.as_fd()).map_err(io_ctx("receiving the pty master"))?,
        )),
        None => None,
    };
    let mut status = None;
    loop {
        // Reap whatever exited, the init last of all.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) if s.pid() == Some(init) => status = exit_code(s).or(status),
                Ok(_) => {}
            }
        }
        let relaying = relay.as_ref().is_some_and(Relay::open);
        if status.is_some() && !relaying {
            break;
        }
        // Input goes in while the init lives; once it is gone, the pty is drained without
        // blocking.
        let input = status.is_none();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(r) = &relay {
            fds.extend(r.poll_fds(input));
        }
        let timeout = if input {
            PollTimeout::NONE
        } else {
            PollTimeout::ZERO
        };
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_ctx("poll")(e.into())),
            Ok(0) => break,
            Ok(_) => {}
        }
        let ready = crate::pty::ready(&fds);
        drop(fds);
        if ready[0] {
            if let Ok(Some(si)) = sfd.read_signal() {
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => relay.iter().for_each(Relay::resize),
                    Ok(sig) => {
                        let _ = nix::sys::signal::kill(init, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if let Some(r) = &mut relay {
            r.pump(&ready[1..], input);
        }
    }
    Ok(status.unwrap_or(255))
}
