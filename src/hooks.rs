//! Running OCI hooks: the state JSON on stdin, the hook's own args and env, and its timeout.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::plan::Hook;

#[derive(Debug, thiserror::Error)]
#[error("{phase} hook {path}: {reason}")]
pub struct HookError {
    pub phase: &'static str,
    pub path: String,
    pub reason: String,
}

/// Runs the hooks of one phase in order, in `cwd` where runc has it: the bundle in `create` and
/// `run` (runc works from there), the rootfs or "/" for the container's phases; `None` leaves
/// the caller's (`start`, `delete`).
pub fn run_all(
    phase: &'static str,
    hooks: &[Hook],
    state: &str,
    cwd: Option<&Path>,
) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    // A hook may exit without reading its stdin: the write then fails with EPIPE, which must
    // not kill us by SIGPIPE (the init, which runs createContainer hooks, has the default
    // action). What the caller had is put back.
    // SAFETY: signal(2) with SIG_IGN, then the old handler; single-threaded where it matters.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let r = hooks.iter().try_for_each(|h| run(phase, h, state, cwd));
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, old) };
    r
}

fn run(phase: &'static str, hook: &Hook, state: &str, cwd: Option<&Path>) -> Result<(), HookError> {
    let fail = |reason: String| HookError {
        phase,
        path: hook.path.display().to_string(),
        reason,
    };
    let mut child = command(hook, cwd)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    // The state goes in as the hook takes it, within its timeout: a hook that does not read a
    // state larger than a pipe holds must not block us.
    let mut input = child.stdin.take().map(|p| Input::new(OwnedFd::from(p)));
    // Its output is read while it runs: a hook that writes more than a pipe holds would block
    // for ever on a full pipe that nobody reads. The tail is kept for the error message.
    let mut outputs = [
        Output::new(child.stdout.take().map(OwnedFd::from)),
        Output::new(child.stderr.take().map(OwnedFd::from)),
    ];
    let deadline = hook.timeout.map(|t| Instant::now() + t);
    let status = loop {
        if input.as_mut().is_some_and(|i| i.feed(state.as_bytes())) {
            input = None;
        }
        outputs.iter_mut().for_each(Output::drain);
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout.unwrap_or_default().as_secs()
            )));
        }
        let mut fds: Vec<PollFd> = outputs
            .iter()
            .filter_map(|o| o.pipe.as_ref())
            .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
            .chain(
                input
                    .iter()
                    .map(|i| PollFd::new(i.pipe.as_fd(), PollFlags::POLLOUT)),
            )
            .collect();
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        } else {
            let _ = poll(&mut fds, PollTimeout::from(2u8));
        }
    };
    outputs.iter_mut().for_each(Output::drain);
    match status.success() {
        true => Ok(()),
        false => Err(fail(failed(status, outputs))),
    }
}

/// The hook's command: its argv (args[0] is argv[0]), only its own environment, and pipes.
fn command(hook: &Hook, cwd: Option<&Path>) -> Command {
    let mut cmd = Command::new(&hook.path);
    if let Some((argv0, rest)) = hook.args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.env_clear()
        .envs(hook.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// How a hook failed, with the tail of its stderr (or else stdout).
fn failed(status: std::process::ExitStatus, [stdout, stderr]: [Output; 2]) -> String {
    let mut out = String::from_utf8_lossy(&stderr.tail).into_owned();
    if out.trim().is_empty() {
        out = String::from_utf8_lossy(&stdout.tail).into_owned();
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    match out.trim() {
        "" => how,
        out => format!("{how}: {out}"),
    }
}

/// The hook's stdin, written without blocking.
struct Input {
    pipe: std::fs::File,
    sent: usize,
}

impl Input {
    fn new(fd: OwnedFd) -> Self {
        let _ = nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        Input {
            pipe: std::fs::File::from(fd),
            sent: 0,
        }
    }

    /// Writes what the pipe takes; true once all is sent or the hook closed its stdin (EPIPE:
    /// a hook need not read it).
    fn feed(&mut self, data: &[u8]) -> bool {
        while self.sent < data.len() {
            match self.pipe.write(&data[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        true
    }
}

/// One of a hook's output pipes, read without blocking; the last bytes are kept.
struct Output {
    pipe: Option<std::fs::File>,
    tail: Vec<u8>,
}

const TAIL: usize = 4096;

impl Output {
    fn new(pipe: Option<OwnedFd>) -> Self {
        let pipe = pipe.map(std::fs::File::from);
        if let Some(p) = &pipe {
            let _ = nix::fcntl::fcntl(
                p.as_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
        }
        Output {
            pipe,
            tail: Vec::new(),
        }
    }

    /// Reads what is there; at EOF or an error the pipe is dropped.
    fn drain(&mut self) {
        let mut buf = [0u8; 16384];
        while let Some(p) = self.pipe.as_mut() {
            match p.read(&mut buf) {
                Ok(0) => self.pipe = None,
                Ok(n) => {
                    self.tail.extend_from_slice(&buf[..n]);
                    let excess = self.tail.len().saturating_sub(TAIL);
                    self.tail.drain(..excess);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => self.pipe = None,
            }
        }
    }
}
