//! The container init: the cloned child of `chitin create`. It sets up namespaces, rootfs and
//! process attributes in one straight sequence, reports each failure to the parent as a message
//! naming the step, waits at the start barrier and execs the container process.

mod cgroupfs;
mod console;
mod copyup;
mod devices;
mod exec;
pub mod fds;
mod net;
mod rootfs;
pub mod tuning;

use std::convert::Infallible;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::CloneFlags;

use crate::cgroup::{Layout, Placement};
use crate::logger::trace;
use crate::plan::{MapWith, Namespaces, NsKind, Plan, ProcessPlan, RunOptions};
use crate::sync::{Msg, send_msg};

#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct InitError {
    step: String,
    source: io::Error,
}

/// Attaches the name of the step to an error.
pub(crate) trait Step<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, InitError>;
}

impl InitError {
    fn failure(&self) -> crate::sync::Failure {
        crate::sync::Failure::new(&self.step, &self.source)
    }
}

impl<T, E: Into<io::Error>> Step<T> for Result<T, E> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|e| InitError {
            step: step(),
            source: e.into(),
        })
    }
}

pub(crate) fn failure(step: &str, msg: impl Into<String>) -> InitError {
    InitError {
        step: step.to_owned(),
        source: io::Error::other(msg.into()),
    }
}

/// The fds the init inherits from `create`.
pub struct InitFds {
    pub sync: OwnedFd,
    /// The start barrier (create; exec has none).
    pub listener: Option<OwnedFd>,
    /// Where the pty master goes: the --console-socket, or `run`'s relay.
    pub console: Option<OwnedFd>,
    /// The container's root, for an exec into a container that has no mount namespace of its
    /// own: its init chrooted there, and joining namespaces does not.
    pub root: Option<OwnedFd>,
}

pub struct InitContext<'a> {
    pub plan: &'a Plan,
    pub opts: &'a RunOptions,
    pub layout: &'a Layout,
    pub placement: &'a Placement,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// Bind sources the runtime opened as detached trees, by the index of their mount.
    pub binds: &'a [Option<OwnedFd>],
}

impl<'a> InitContext<'a> {
    fn process(&self) -> ProcessContext<'a> {
        ProcessContext {
            id: &self.plan.id,
            process: &self.plan.process,
            opts: self.opts,
            seccomp: self.seccomp,
        }
    }
}

/// What the tail shared by the init and an exec'd process works from.
pub struct ProcessContext<'a> {
    pub id: &'a str,
    pub process: &'a ProcessPlan,
    pub opts: &'a RunOptions,
    pub seccomp: Option<&'a crate::seccomp::Filter>,
}

/// What an exec'd process works from: the namespaces to join, then its process.
pub struct ExecContext<'a> {
    pub join: &'a Namespaces,
    /// The pid and time namespaces are joined here, after the user namespace (an ordinary
    /// user's runtime has no right to join them first), and the process forks into them.
    pub join_pid_late: bool,
    pub process: ProcessContext<'a>,
}

/// Runs the init; never returns.
pub fn run(ctx: &InitContext<'_>, fds: InitFds) -> ! {
    let result = steps(ctx, &fds);
    report(&fds, result)
}

/// Tells the parent which step failed, then leaves (success never returns: it is an execve).
fn report(fds: &InitFds, result: Result<Infallible, InitError>) -> ! {
    let err = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = send_msg(fds.sync.as_fd(), &Msg::Failed(err.failure()));
    // SAFETY: leaving the cloned child without running the parent's atexit handlers.
    unsafe { libc::_exit(1) }
}

/// The runtime's next message, which must be `want`.
fn expect(fds: &InitFds, step: &'static str, want: Msg) -> Result<Msg, InitError> {
    crate::sync::expect(fds.sync.as_fd(), step, |m| {
        std::mem::discriminant(m) == std::mem::discriminant(&want)
    })
    .map_err(|e| match e {
        crate::sync::ExpectError::Gone(_) => failure(step, "the runtime went away"),
        e => failure(step, e.to_string()),
    })
}

/// Signals blocked or ignored by the runtime (Rust ignores SIGPIPE) must not leak into the
/// container: an ignored disposition survives execve.
fn reset_signals() {
    // The kernel's sigaction with SIG_DFL, no flags and an empty mask is all zeros on every ISA,
    // whatever its layout; 64 bytes cover the largest. The raw system call, because libc refuses
    // the signals it keeps for itself (32 and 33 in glibc), which a caller may have ignored and an
    // ignored signal stays ignored across execve.
    let dfl = [0u64; 8];
    let sigset_size = std::mem::size_of::<u64>();
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a zeroed action of sufficient size and no old action.
        unsafe {
            #[cfg(target_arch = "sparc64")]
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                std::ptr::null::<u8>(),
                sigset_size,
            );
            #[cfg(not(target_arch = "sparc64"))]
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                sigset_size,
            );
        }
    }
    // SAFETY: plain libc calls on a local sigset in a single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The first steps of every cloned child, init or exec: default signals; death with the runtime
/// while it sets us up; never dumpable (so never ptraceable by the container, nor its fds taken)
/// before execve (CVE-2016-9962); then the runtime's go, once we are in our cgroups. Had the
/// runtime died before PDEATHSIG was armed, the wait for Go reads EOF.
fn begin(fds: &InitFds) -> Result<(), InitError> {
    reset_signals();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .step(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    nix::sys::prctl::set_dumpable(false).step(|| "prctl(PR_SET_DUMPABLE)".into())?;
    expect(fds, "waiting for the cgroup placement", Msg::Go)?;
    Ok(())
}

fn steps(ctx: &InitContext<'_>, fds: &InitFds) -> Result<Infallible, InitError> {
    let plan = ctx.plan;
    begin(fds)?;
    fds::close_inherited(ctx, fds)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    enter_namespaces(&plan.namespaces, plan.map_with, fds)?;
    trace!("init: in its namespaces (new: {:?})", plan.namespaces.new);
    if plan.namespaces.is_new(NsKind::Net) {
        net::loopback_up()?;
    }
    if plan.moves_into_netns() {
        send_msg(fds.sync.as_fd(), &Msg::NetReady).step(|| "sync".into())?;
        expect(fds, "waiting for linux.netDevices", Msg::NetMoved)?;
    }
    set_names(plan)?;

    let root = rootfs::prepare(ctx)?;
    devices::create(root.as_fd(), plan)?;
    let pty = if plan.process.terminal {
        Some(console::create(root.as_fd(), &plan.process, true)?)
    } else {
        None
    };

    let created = run_hooks(plan, fds)?;

    rootfs::finish(root.as_fd(), plan)?;
    rootfs::pivot(root, plan, ctx.opts.no_pivot)?;
    // The last line from the init: after this its stdio may be the container's terminal.
    trace!(
        "init: {} mounts made, root is {}; waiting for start",
        plan.mounts.len(),
        plan.rootfs.display()
    );

    let prepared = finish(&ctx.process(), fds, pty, exec::Cwd::Make)?;
    send_msg(fds.sync.as_fd(), &Msg::Ready).step(|| "sync".into())?;

    let conn = wait_for_start(fds)?;
    let err = match crate::hooks::run_all(
        "startContainer",
        &plan.hooks.start_container,
        &created,
        Some(std::path::Path::new("/")),
    ) {
        Err(e) => failure("startContainer hooks", e.to_string()),
        Ok(()) => exec::exec(prepared),
    };
    // Only failures get here; on success the CLOEXEC socket closes at execve and `start` sees EOF.
    let _ = nix::sys::socket::send(
        conn.as_raw_fd(),
        &serde_json::to_vec(&err.failure()).expect("a failure serializes"),
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    );
    Err(err)
}

fn set_names(plan: &Plan) -> Result<(), InitError> {
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).step(|| "sethostname".into())?;
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: pointer and length of a live buffer.
        let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        nix::errno::Errno::result(r).step(|| "setdomainname".into())?;
    }
    Ok(())
}

/// The hooks around the mounts: the runtime runs prestart and createRuntime, then this init
/// createContainer. Returns the state startContainer hooks get.
fn run_hooks(plan: &Plan, fds: &InitFds) -> Result<String, InitError> {
    send_msg(fds.sync.as_fd(), &Msg::RunHooks).step(|| "sync".into())?;
    let done = Msg::HooksDone {
        creating: String::new(),
        created: String::new(),
    };
    let Msg::HooksDone { creating, created } =
        expect(fds, "waiting for the createRuntime hooks", done)?
    else {
        unreachable!("expected HooksDone")
    };
    crate::hooks::run_all(
        "createContainer",
        &plan.hooks.create_container,
        &creating,
        Some(&plan.rootfs),
    )
    .map_err(|e| failure("createContainer hooks", e.to_string()))?;
    Ok(created)
}

/// The start barrier: `chitin start` connects to the socket in the state directory.
fn wait_for_start(fds: &InitFds) -> Result<OwnedFd, InitError> {
    let listener = fds.listener.as_ref().expect("create has a start barrier");
    let flags = nix::sys::socket::SockFlag::SOCK_CLOEXEC;
    let fd = loop {
        match nix::sys::socket::accept4(listener.as_raw_fd(), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.step(|| "waiting for start".into())?,
        }
    };
    // SAFETY: accept4 returned a new fd, which nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Runs a process for `exec`: joins the container's namespaces (the parent arranged pid and
/// time), takes a pty from the container's devpts if asked, applies the process attributes and
/// execs at once. The sync socket closes at execve; only failures are reported on it.
pub fn run_exec(ctx: &ExecContext<'_>, fds: InitFds) -> ! {
    let result = exec_steps(ctx, &fds);
    report(&fds, result)
}

fn exec_steps(ctx: &ExecContext<'_>, fds: &InitFds) -> Result<Infallible, InitError> {
    begin(fds)?;
    // Opened while the host's /proc is still ours.
    let mut late = Vec::new();
    for (kind, path) in ctx.join.join.iter().filter(|_| ctx.join_pid_late) {
        if matches!(kind, NsKind::Pid | NsKind::Time) {
            let f = std::fs::File::open(path).step(|| format!("{}", path.display()))?;
            late.push((*kind, path, f));
        }
    }
    // Exec joins by path: no new user namespace, no maps.
    enter_namespaces(ctx.join, MapWith::Root, fds)?;
    if ctx.join_pid_late {
        for (kind, path, f) in &late {
            nix::sched::setns(f.as_fd(), kind.flag())
                .step(|| format!("joining {} namespace {}", kind.spec_name(), path.display()))?;
        }
        fork_into_pid_namespace(fds)?;
    }
    if let Some(root) = &fds.root {
        nix::unistd::fchdir(root.as_fd()).step(|| "entering the container's root".into())?;
        nix::unistd::chroot(".").step(|| "chroot".into())?;
    }
    trace!("exec: joined the container's namespaces");
    let pty = if ctx.process.process.terminal {
        // Joining the mount namespace made its root ours.
        let root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .step(|| "opening /".into())?;
        Some(console::create(root.as_fd(), ctx.process.process, false)?)
    } else {
        None
    };
    Err(exec::exec(finish(
        &ctx.process,
        fds,
        pty,
        exec::Cwd::MustExist,
    )?))
}

/// The tail shared by the init and an exec'd process: the terminal, or a session of its own; the
/// process's attributes, closing every fd it must not inherit among them; and no PDEATHSIG any
/// more, so that it outlives the runtime.
fn finish<'a>(
    ctx: &ProcessContext<'a>,
    fds: &InitFds,
    pty: Option<console::Pty>,
    cwd: exec::Cwd,
) -> Result<exec::Prepared<'a>, InitError> {
    if let Some(pty) = pty {
        console::attach(pty, fds.console.as_ref().map(|c| c.as_fd()))?;
    } else {
        nix::unistd::setsid().step(|| "setsid".into())?;
    }
    let prepared = exec::prepare(ctx, fds.sync.as_fd(), cwd)?;
    nix::sys::prctl::set_pdeathsig(None).step(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    Ok(prepared)
}

fn become_root() -> nix::Result<()> {
    let (g, u) = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
    nix::unistd::setresgid(g, g, g)?;
    nix::unistd::setresuid(u, u, u)
}

/// The pid namespace this process entered applies to its children: it forks, the child goes
/// on, and this copy tells the runtime the child's pid and leaves.
fn fork_into_pid_namespace(fds: &InitFds) -> Result<(), InitError> {
    // SAFETY: this process is single-threaded; the child goes on as the init.
    match unsafe { nix::unistd::fork() }.step(|| "forking into the pid namespace".into())? {
        nix::unistd::ForkResult::Parent { child } => {
            let pid = child.as_raw();
            let sent = send_msg(fds.sync.as_fd(), &Msg::Forked { pid });
            // SAFETY: leaving at once, as a forked copy must: nothing of ours to clean up.
            unsafe { libc::_exit(if sent.is_ok() { 0 } else { 1 }) };
        }
        // No PDEATHSIG: its parent is about to exit. Should the runtime die, the sync socket's
        // EOF ends it. Nothing is said until the runtime has our pid, so that no hook is run
        // with the other's.
        nix::unistd::ForkResult::Child => expect(
            fds,
            "waiting for the new process's pid to be taken",
            Msg::Go,
        )
        .map(drop),
    }
}

/// Joins namespaces given by path, then makes the new ones. A new user namespace was made by the
/// clone itself (so that the pid namespace belongs to it, as mounting /proc requires); it needs
/// its id maps, written by the parent, before anything else. pid and time namespaces were
/// arranged by the parent too, as they apply to children.
fn enter_namespaces(ns: &Namespaces, map_with: MapWith, fds: &InitFds) -> Result<(), InitError> {
    if ns.is_new(NsKind::User) {
        // An ordinary user's runtime (or its setuid helper) writes our maps only while /proc/PID
        // is the user's: dumpable for that moment alone, as runc does.
        let dumpable = map_with != MapWith::Root;
        if dumpable {
            nix::sys::prctl::set_dumpable(true).step(|| "prctl(PR_SET_DUMPABLE)".into())?;
        }
        send_msg(fds.sync.as_fd(), &Msg::MapIds).step(|| "sync".into())?;
        expect(fds, "waiting for the uid/gid mapping", Msg::IdsMapped)?;
        if dumpable {
            nix::sys::prctl::set_dumpable(false).step(|| "prctl(PR_SET_DUMPABLE)".into())?;
        }
        become_root().step(|| "becoming root in the user namespace".into())?;
    }
    // Joining the user namespace first gives the rights to join the namespaces it owns.
    let mut order: Vec<&(NsKind, std::path::PathBuf)> = ns
        .join
        .iter()
        .filter(|(k, _)| !matches!(k, NsKind::Pid | NsKind::Time))
        .collect();
    order.sort_by_key(|(k, _)| *k != NsKind::User);
    // All opened before any is joined: after the mount namespace the paths would be looked up in
    // the container's /proc.
    let files = order
        .iter()
        .map(|(kind, path)| {
            std::fs::File::open(path)
                .step(|| format!("opening {} namespace {}", kind.spec_name(), path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for ((kind, path), f) in order.iter().zip(&files) {
        nix::sched::setns(f.as_fd(), kind.flag())
            .step(|| format!("joining {} namespace {}", kind.spec_name(), path.display()))?;
    }
    if ns.joined(NsKind::User).is_some() {
        // Our ids are the host's, which the joined namespace does not map: what we would make
        // (mount points, /dev) could not be owned. Become its root, as a new namespace's init
        // does once mapped.
        become_root().step(|| "becoming root in the joined user namespace".into())?;
    }
    if ns.pid_after_user_join() {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID).step(|| "unshare(CLONE_NEWPID)".into())?;
        fork_into_pid_namespace(fds)?;
    }
    let flags = ns
        .new
        .iter()
        .filter(|k| !matches!(k, NsKind::User | NsKind::Pid | NsKind::Time))
        .fold(CloneFlags::empty(), |acc, k| acc | k.flag());
    nix::sched::unshare(flags).step(|| format!("unshare({flags:?})"))?;
    Ok(())
}
