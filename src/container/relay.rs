//! `run` in the foreground: forward signals to the init, relay its terminal, reap it, and return
//! its exit status (128+N when killed by signal N, as runc and shells do).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{ContainerError, io_ctx};

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

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctls with a valid winsize; failures (not a tty) are ignored.
    unsafe {
        if get_winsize(from.as_raw_fd(), &mut ws).is_ok() {
            let _ = set_winsize(to.as_raw_fd(), &ws);
        }
    }
}

/// Puts our terminal in raw mode while relaying, and back when done. TCGETS/TCSETS directly:
/// libc's tcgetattr is a versioned symbol on some ISAs (sparc64) that static glibc cannot link,
/// and the flags and c_cc come first in both the kernel's and libc's struct termios.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: a zeroed termios is a valid buffer for TCGETS.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: TCGETS fills the buffer; it fails harmlessly on a non-terminal.
        if unsafe { libc::ioctl(fd, libc::TCGETS, &mut saved) } < 0 {
            return RawMode(None);
        }
        let mut raw = saved;
        raw.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        raw.c_oflag &= !libc::OPOST;
        raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
        raw.c_cflag = (raw.c_cflag & !(libc::CSIZE | libc::PARENB)) | libc::CS8;
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: TCSETS with the settings just read and changed.
        unsafe { libc::ioctl(fd, libc::TCSETS, &raw) };
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores what TCGETS returned.
            unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TCSETS, t) };
        }
    }
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
    let master = match console {
        Some(sock) => {
            Some(crate::sync::recv_fd(sock.as_fd()).map_err(io_ctx("receiving the pty master"))?)
        }
        None => None,
    };
    let _raw = master.as_ref().map(|m| {
        copy_winsize(std::io::stdin().as_fd(), m.as_fd());
        RawMode::enter()
    });
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = [0u8; 8192];
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
        if status.is_some() && !master_open {
            break;
        }
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let (true, Some(m)) = (master_open, &master) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && status.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the init is gone, drain the pty without blocking.
        let timeout = if status.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_ctx("poll")(e.into())),
            Ok(0) => break,
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(si)) = sfd.read_signal() {
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => {
                        if let Some(m) = &master {
                            copy_winsize(std::io::stdin().as_fd(), m.as_fd());
                        }
                    }
                    Ok(sig) => {
                        let _ = nix::sys::signal::kill(init, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        let mut idx = 1;
        if let (true, Some(m)) = (master_open, &master) {
            if ready[idx] {
                match nix::unistd::read(m.as_fd(), &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                    Ok(n) => {
                        let mut out = std::io::stdout();
                        let _ = out.write_all(&buf[..n]).and_then(|_| out.flush());
                    }
                    Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(_) => master_open = false,
                }
            }
            idx += 1;
        }
        if stdin_open && status.is_none() && ready.get(idx).copied().unwrap_or(false) {
            match std::io::stdin().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if let Some(m) = &master {
                        let _ = nix::unistd::write(m, &buf[..n]);
                    }
                }
            }
        }
    }
    Ok(status.unwrap_or(255))
}
