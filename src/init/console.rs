//! The container's terminal: a pty from the container's own devpts, bound over /dev/console, the
//! master sent to the console socket (runc's protocol), the slave made the controlling terminal.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;

use super::{InitError, Step, failure};
use crate::fsutil::{device_target_in_root, fd_path, open_in_root};
use crate::plan::ProcessPlan;

pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// A pty from the container's devpts; for the init, also bound over /dev/console.
pub fn create(root: BorrowedFd<'_>, p: &ProcessPlan, bind_console: bool) -> Result<Pty, InitError> {
    let master = open_in_root(
        root,
        Path::new("/dev/ptmx"),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
    )
    .map_err(|e| {
        failure(
            "terminal",
            format!("opening /dev/ptmx in the container (is devpts mounted at /dev/pts?): {e}"),
        )
    })?;
    nix::pty::unlockpt(&unsafe {
        nix::pty::PtyMaster::from_owned_fd(master.try_clone().step(|| "dup".into())?)
    })
    .step(|| "unlockpt".into())?;
    // TIOCGPTPEER opens the slave from the master itself: no path to race (CVE-2019-16884's kin).
    // SAFETY: ioctl on our own fd; it returns a new fd.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = unsafe {
        OwnedFd::from_raw_fd(nix::errno::Errno::result(fd).step(|| "TIOCGPTPEER".into())?)
    };
    // The user's terminal; its group stays devpts's (gid=5, tty), as runc and login leave it.
    nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(p.uid)), None)
        .step(|| "chown of the pty".into())?;
    if let Some((rows, cols)) = p.console_size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: a valid winsize for TIOCSWINSZ.
        unsafe { set_winsize(slave.as_raw_fd(), &ws) }.step(|| "TIOCSWINSZ".into())?;
    }
    if !bind_console {
        return Ok(Pty { master, slave });
    }
    // /dev/console is a bind of the slave, by fd both ways (CVE-2025-52565).
    let console =
        device_target_in_root(root, Path::new("/dev/console")).step(|| "/dev/console".into())?;
    nix::mount::mount(
        Some(&fd_path(slave.as_fd())),
        &fd_path(console.as_fd()),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .step(|| "binding the pty to /dev/console".into())?;
    Ok(Pty { master, slave })
}

/// Hands the master over, then makes the slave this session's terminal and stdio.
pub fn attach(pty: Pty, sink: Option<BorrowedFd<'_>>) -> Result<(), InitError> {
    let sink = sink.ok_or_else(|| failure("terminal", "no console socket"))?;
    crate::fdpass::send_fd(sink, "/dev/ptmx", pty.master.as_raw_fd())
        .step(|| "sending the pty master".into())?;
    drop(pty.master);
    nix::unistd::setsid().step(|| "setsid".into())?;
    // SAFETY: TIOCSCTTY on our own tty fd.
    let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(r).step(|| "TIOCSCTTY".into())?;
    for target in 0..3 {
        // SAFETY: dup2 onto the stdio numbers.
        let r = unsafe { libc::dup2(pty.slave.as_raw_fd(), target) };
        nix::errno::Errno::result(r).step(|| "dup2 of the pty".into())?;
    }
    Ok(())
}
