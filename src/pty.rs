//! Relaying a container's terminal to ours: the pty master's output to our stdout, our stdin to
//! the master, our window size onto it, our terminal in raw mode meanwhile, and the end of a
//! non-terminal stdin passed on as the terminal's EOF character. Used by `run` and `exec` in the
//! foreground, and by the chitin-recvtty helper.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags};

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    // SAFETY: a zeroed winsize is a valid buffer.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctls with a valid winsize; failures (not a tty) are ignored.
    unsafe {
        if get_winsize(from.as_raw_fd(), &mut ws).is_ok() {
            let _ = set_winsize(to.as_raw_fd(), &ws);
        }
    }
}

/// TCGETS directly: libc's tcgetattr is a versioned symbol on some ISAs (sparc64) that static
/// glibc cannot link, and the flags and c_cc come first in both the kernel's and libc's termios.
fn termios(fd: BorrowedFd<'_>) -> Option<libc::termios> {
    // SAFETY: a zeroed termios is a valid buffer for TCGETS.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS fills the buffer; it fails harmlessly on a non-terminal.
    (unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS, &mut t) } == 0).then_some(t)
}

/// Our terminal in raw mode while relaying, and back when done.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Some(saved) = termios(stdin.as_fd()) else {
            return RawMode(None);
        };
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
        unsafe { libc::ioctl(stdin.as_raw_fd(), libc::TCSETS, &raw) };
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

/// Which of the polled fds have events, in order.
pub fn ready(fds: &[PollFd<'_>]) -> Vec<bool> {
    fds.iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect()
}

pub struct Relay {
    master: OwnedFd,
    _raw: RawMode,
    stdin_open: bool,
    master_open: bool,
    /// The last byte sent to the master did not end a line.
    line_pending: bool,
    buf: Box<[u8; 8192]>,
}

impl Relay {
    /// Starts relaying: our window size goes onto the master, our terminal into raw mode.
    pub fn new(master: OwnedFd) -> Relay {
        copy_winsize(std::io::stdin().as_fd(), master.as_fd());
        Relay {
            master,
            _raw: RawMode::enter(),
            stdin_open: true,
            master_open: true,
            line_pending: false,
            buf: Box::new([0; 8192]),
        }
    }

    /// True until the container's side of the terminal is closed (all its holders exited).
    pub fn open(&self) -> bool {
        self.master_open
    }

    /// After SIGWINCH.
    pub fn resize(&self) {
        copy_winsize(std::io::stdin().as_fd(), self.master.as_fd());
    }

    /// What to poll: the master while open, and our stdin while open and `input` is wanted.
    pub fn poll_fds(&self, input: bool) -> Vec<PollFd<'_>> {
        let mut fds = Vec::with_capacity(2);
        if self.master_open {
            fds.push(PollFd::new(self.master.as_fd(), PollFlags::POLLIN));
        }
        if self.stdin_open && input {
            // SAFETY: fd 0 stays open for the life of the process.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        fds
    }

    /// Moves what `poll_fds` found ready; `ready` is their revents, in order.
    pub fn pump(&mut self, ready: &[bool], input: bool) {
        let mut i = 0;
        if self.master_open {
            if ready[i] {
                self.copy_out();
            }
            i += 1;
        }
        if self.stdin_open && input && ready.get(i).copied().unwrap_or(false) {
            self.copy_in();
        }
    }

    fn copy_out(&mut self) {
        match nix::unistd::read(self.master.as_fd(), &mut self.buf[..]) {
            // EIO: every slave fd is closed.
            Ok(0) | Err(nix::errno::Errno::EIO) => self.master_open = false,
            Ok(n) => {
                let mut out = std::io::stdout();
                let _ = out.write_all(&self.buf[..n]).and_then(|_| out.flush());
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => self.master_open = false,
        }
    }

    fn copy_in(&mut self) {
        match std::io::stdin().read(&mut self.buf[..]) {
            Ok(0) | Err(_) => {
                self.stdin_open = false;
                self.send_eof();
            }
            Ok(n) => {
                self.line_pending = self.buf[n - 1] != b'\n';
                let _ = nix::unistd::write(&self.master, &self.buf[..n]);
            }
        }
    }

    /// Our stdin ended (it is not a terminal, or it would not end): the container reads EOF, as
    /// from a user typing the EOF character at the start of a line.
    fn send_eof(&mut self) {
        // In canonical mode the line discipline makes VEOF the end of input. A line editor
        // (ash's, readline) turns that off and reads ^D itself; VEOF's slot then means nothing,
        // and on sparc it is VMIN's (ash read the 1 there as ^A, and never ended).
        let eof = match termios(self.master.as_fd()) {
            Some(t) if t.c_lflag & libc::ICANON != 0 => t.c_cc[libc::VEOF],
            _ => 4,
        };
        // A first EOF character only ends a partial line.
        let times = if self.line_pending { 2 } else { 1 };
        for _ in 0..times {
            let _ = nix::unistd::write(&self.master, &[eof]);
        }
        self.line_pending = false;
    }
}
