//! The container lifecycle on the runtime's side: create (clone the init and drive its setup),
//! start (open the barrier), and destroy (poststop hooks, cgroup, state).

mod create;
mod exec;
mod relay;
mod start;

pub use create::{Created, create};
pub use exec::exec;
pub use relay::{forwarded_signals, relay_and_wait};
pub use start::start;

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use crate::cgroup::CgroupError;
use crate::hooks::HookError;
use crate::plan::PlanError;
use crate::state::{Record, StateDir, StateError, Status};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Tpm(#[from] crate::tpm::TpmError),
    #[error(transparent)]
    NetDev(#[from] crate::netdev::NetDevError),
    #[error(transparent)]
    Rdt(#[from] crate::resctrl::RdtError),
    #[error("container init: {0}")]
    Init(#[from] crate::sync::ExpectError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Status(String),
}

pub(crate) fn io_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// Sends a pidfd of `pid` (a child of ours, not yet reaped: the pid is still its) to the
/// --pidfd-socket, named as runc names it.
pub(crate) fn send_pidfd(
    sock: &std::os::fd::OwnedFd,
    pid: i32,
    name: &str,
) -> Result<(), ContainerError> {
    use std::os::fd::AsFd;
    // SAFETY: pidfd_open returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(io_ctx("pidfd_open")(io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd that we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    crate::fdpass::send_fd(sock.as_fd(), name, std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map_err(io_ctx("--pidfd-socket"))
}

/// A pidfd for the container's init, if it is still the process the state names.
pub fn pidfd(r: &Record) -> Option<std::os::fd::OwnedFd> {
    if r.pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, r.pid, 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a fresh fd that we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    // Checked after opening: from here on the fd pins this very process.
    match crate::state::proc_stat(r.pid) {
        Some((start, _)) if start == r.start_time => Some(fd),
        _ => None,
    }
}

fn pidfd_send_signal(fd: std::os::fd::BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends `sig` to the init, through a pidfd so that a reused pid is never hit.
/// `sig` is a number: the real-time signals have no `Signal`.
pub fn signal_init(r: &Record, sig: i32) -> Result<(), ContainerError> {
    let Some(fd) = pidfd(r) else {
        return Err(ContainerError::Status("container not running".into()));
    };
    pidfd_send_signal(fd.as_fd(), sig).map_err(io_ctx("sending the signal"))
}

/// Kills everything in the container and waits for the init to be gone.
pub fn kill_all(r: &Record) -> Result<(), ContainerError> {
    let fd = pidfd(r);
    if let Some(fd) = &fd {
        let _ = pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
    }
    r.cgroup.kill_all();
    if let Some(fd) = fd {
        // A pidfd polls readable once the process has exited.
        let mut pfd = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(
            &mut pfd,
            nix::poll::PollTimeout::try_from(Duration::from_secs(10))
                .unwrap_or(nix::poll::PollTimeout::MAX),
        );
    }
    Ok(())
}

/// Removes a stopped container: poststop hooks (failures are warnings, as the spec says; run in
/// `hooks_cwd`, as `start`'s), the cgroup, the state directory.
pub fn destroy(dir: StateDir, r: &Record, hooks_cwd: Option<&Path>) -> Result<(), ContainerError> {
    if !r.poststop.is_empty() {
        if let Err(e) = crate::hooks::run_all(
            "poststop",
            &r.poststop,
            &r.oci_state(Status::Stopped),
            hooks_cwd,
        ) {
            crate::logger::warn(&e.to_string());
        }
    }
    if !r.vfs.is_empty() {
        // As poststop hooks: a VF whose PF is gone (unplugged) does not keep the state.
        let restored = crate::netdev::Rtnl::host()
            .map_err(|e| e.to_string())
            .and_then(|mut nl| crate::netdev::vf::restore(&mut nl, &r.vfs));
        if let Err(e) = restored {
            crate::logger::warn(&format!("putting back the SR-IOV settings of {e}"));
        }
    }
    r.cgroup.remove()?;
    if let Some(g) = &r.intel_rdt {
        g.remove()?;
    }
    dir.remove()?;
    Ok(())
}
