//! chitin-recvtty: the other end of `--console-socket`, for trying and testing terminal mode the
//! way runc's recvtty serves runc. It listens on SOCKET, takes the pty master of the first
//! container (or exec) that connects, and relays it to its own terminal: window size, resizes,
//! raw mode, and the end of a non-terminal stdin as EOF. It exits when the container's side of
//! the terminal closes.
//!
//!     chitin-recvtty [--no-relay] [--pid-file FILE] SOCKET

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use chitin::{fdpass, pty};
use clap::Parser;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[derive(Parser)]
#[command(name = "chitin-recvtty", version)]
struct Args {
    /// Keep the terminal open and discard its output instead of relaying it.
    #[arg(long)]
    no_relay: bool,
    /// Write our pid here once the socket listens.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    socket: PathBuf,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = serve(&args) {
        eprintln!("chitin-recvtty: {e}");
        std::process::exit(1);
    }
}

fn serve(args: &Args) -> std::io::Result<()> {
    let mut winch = SigSet::empty();
    winch.add(Signal::SIGWINCH);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&winch), None)?;
    let sfd = SignalFd::with_flags(&winch, SfdFlags::SFD_CLOEXEC)?;

    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, std::process::id().to_string())?;
    }
    let (conn, _) = listener.accept()?;
    let master = fdpass::recv_fd(conn.as_fd())?;
    drop((conn, listener));
    let _ = std::fs::remove_file(&args.socket);

    if args.no_relay {
        // Drain, so that the container never blocks on a full terminal.
        let mut buf = [0u8; 4096];
        while let Ok(n) = nix::unistd::read(master.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
        }
        return Ok(());
    }
    let mut relay = pty::Relay::new(master);
    while relay.open() {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        fds.extend(relay.poll_fds(true));
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let ready = pty::ready(&fds);
        drop(fds);
        if ready[0] && sfd.read_signal()?.is_some() {
            relay.resize();
        }
        relay.pump(&ready[1..], true);
    }
    Ok(())
}
