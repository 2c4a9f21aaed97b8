//! `create`: apply a plan. The order is the one in docs/design.md; each side effect is undone
//! if a later step fails, so a failed create leaves no state dir, cgroup, mount or process.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::SystemTime;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};

use super::{ContainerError, io_ctx};
use crate::cgroup::{Layout, Placement};
use crate::clone::clone_init;
use crate::init::{InitContext, InitFds};
use crate::logger::trace;
use crate::plan::{NsKind, Plan};
use crate::state::{Record, START_SOCKET, StateDir, Status, proc_stat};
use crate::sync::{Msg, recv_msg, send_msg};

pub struct Created {
    pub dir: StateDir,
    pub record: Record,
    /// For `run` with a terminal and no console socket: where the init sends the pty master.
    pub console_relay: Option<OwnedFd>,
}

/// Undoes what create did so far, in reverse, unless disarmed.
struct Undo {
    dir: Option<StateDir>,
    placement: Option<Placement>,
    pid: Option<i32>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(p) = self.placement.take() {
            let _ = p.remove();
        }
        if let Some(d) = self.dir.take() {
            let _ = d.remove();
        }
    }
}

/// Moves an fd to a number above the range handed to the container, so that --preserve-fds
/// never passes one of ours along.
pub(super) fn above(fd: OwnedFd, min: u32) -> Result<OwnedFd, ContainerError> {
    if (fd.as_raw_fd() as u32) >= min {
        return Ok(fd);
    }
    let n = nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min as RawFd),
    )
    .map_err(|e| io_ctx("dup")(e.into()))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// The sockets between the runtime and the process it clones: the sync pair and, with a
/// terminal, where the pty master goes (the --console-socket, or a pair for the foreground
/// relay). The child's ends sit above the fds handed to the container.
pub(super) struct Channels {
    pub console: Option<OwnedFd>,
    pub console_relay: Option<OwnedFd>,
    pub parent_end: OwnedFd,
    pub child_end: OwnedFd,
}

impl Channels {
    pub(super) fn open(plan: &Plan) -> Result<Channels, ContainerError> {
        let min_fd = plan.opts.first_own_fd();
        let (console, console_relay) = match (&plan.opts.console_socket, plan.process.terminal) {
            (Some(path), _) => {
                let s = std::os::unix::net::UnixStream::connect(path)
                    .map_err(io_ctx(format!("console socket {}", path.display())))?;
                (Some(above(OwnedFd::from(s), min_fd)?), None)
            }
            (None, true) => {
                let (a, b) = crate::sync::pair().map_err(io_ctx("socketpair"))?;
                (Some(above(b, min_fd)?), Some(a))
            }
            (None, false) => (None, None),
        };
        let (parent_end, child_end) = crate::sync::pair().map_err(io_ctx("socketpair"))?;
        Ok(Channels {
            console,
            console_relay,
            parent_end,
            child_end: above(child_end, min_fd)?,
        })
    }
}

/// The cgroup2 directory to clone into (CLONE_INTO_CGROUP takes an fd of it).
pub(super) fn open_cgroup_dir(dir: Option<&Path>) -> Result<Option<OwnedFd>, ContainerError> {
    let Some(d) = dir else { return Ok(None) };
    let flags =
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    nix::fcntl::open(d, flags, nix::sys::stat::Mode::empty())
        .map(Some)
        .map_err(|e| io_ctx(format!("opening {}", d.display()))(e.into()))
}

/// The start barrier: a listening socket in the state directory (see container::start).
fn start_barrier(dir: &StateDir) -> Result<OwnedFd, ContainerError> {
    let nix_err = |what: &'static str| move |e: nix::errno::Errno| io_ctx(what)(e.into());
    let listener = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(nix_err("socket"))?;
    let addr =
        UnixAddr::new(&dir.fd_path(START_SOCKET)).map_err(nix_err("start socket address"))?;
    bind(listener.as_raw_fd(), &addr).map_err(nix_err("binding the start socket"))?;
    listen(&listener, Backlog::new(1).expect("valid backlog")).map_err(nix_err("listen"))?;
    Ok(listener)
}

/// The pid and time namespaces apply to children: the parent enters them (or makes a time
/// namespace and writes its offsets) just for the clone, then returns to its own.
pub(super) struct ForChildren {
    restore: Vec<(OwnedFd, nix::sched::CloneFlags)>,
}

impl ForChildren {
    pub(super) fn enter(plan: &Plan) -> Result<ForChildren, ContainerError> {
        let mut restore = Vec::new();
        for kind in [NsKind::Pid, NsKind::Time] {
            let joined = plan.namespaces.joined(kind);
            let new_time = kind == NsKind::Time && plan.namespaces.is_new(NsKind::Time);
            if joined.is_none() && !new_time {
                continue;
            }
            let own = if kind == NsKind::Pid {
                "/proc/self/ns/pid"
            } else {
                "/proc/self/ns/time"
            };
            let own = std::fs::File::open(own).map_err(io_ctx(own))?;
            restore.push((OwnedFd::from(own), kind.flag()));
            if let Some(path) = joined {
                let f = std::fs::File::open(path).map_err(io_ctx(format!(
                    "{} namespace {}",
                    kind.spec_name(),
                    path.display()
                )))?;
                nix::sched::setns(f.as_fd(), kind.flag())
                    .map_err(|e| io_ctx(format!("joining {}", path.display()))(e.into()))?;
            } else {
                nix::sched::unshare(kind.flag())
                    .map_err(|e| io_ctx("unshare(CLONE_NEWTIME)")(e.into()))?;
                let offsets: String = plan
                    .time_offsets
                    .iter()
                    .map(|o| format!("{} {} {}\n", o.clock, o.secs, o.nanos))
                    .collect();
                if !offsets.is_empty() {
                    std::fs::write("/proc/self/timens_offsets", offsets)
                        .map_err(io_ctx("writing timens_offsets"))?;
                }
            }
        }
        Ok(ForChildren { restore })
    }
}

impl Drop for ForChildren {
    fn drop(&mut self) {
        for (fd, flag) in self.restore.drain(..) {
            let _ = nix::sched::setns(fd.as_fd(), flag);
        }
    }
}

fn write_id_map(pid: i32, file: &str, maps: &[crate::plan::IdMap]) -> Result<(), ContainerError> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, crate::plan::id_map_text(maps)).map_err(io_ctx(path))
}

pub fn create(root: &Path, plan: &Plan, layout: &Layout) -> Result<Created, ContainerError> {
    let writes = layout.check(plan.resources.as_ref(), &plan.device_rules)?;
    // Compiled here, in the parent: the child only loads it.
    let seccomp = match &plan.seccomp {
        Some(p) => crate::seccomp::prepare(p, &plan.annotations)?,
        None => None,
    };
    let placement = layout.place(&plan.cgroups_path, plan.cgroups_path_default);
    placement.check_reuse()?;
    let mut undo = Undo {
        dir: Some(StateDir::create(root, &plan.id)?),
        placement: None,
        pid: None,
    };
    let dir = undo.dir.as_ref().expect("just set");
    let mut record = Record {
        id: plan.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: plan.bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: crate::timefmt::rfc3339_nano(SystemTime::now()),
        annotations: plan.annotations.clone(),
        cgroup: Placement::default(),
        resources: plan.resources.clone(),
        poststart: plan.hooks.poststart.clone(),
        poststop: plan.hooks.poststop.clone(),
        // Joined counts as shared, as in runc.
        shares_pid_ns: !plan.namespaces.is_new(NsKind::Pid),
    };
    // The record, with the cgroup to be made, comes first: `delete -f` can then clean up after
    // a create killed at any later point.
    record.cgroup = placement;
    dir.write(&record)?;
    let min_fd = plan.opts.first_own_fd();
    let listener = above(start_barrier(dir)?, min_fd)?;

    undo.placement = Some(record.cgroup.clone());
    layout.make(&record.cgroup)?;
    // Limits are in place before the init exists: it never runs unrestricted.
    crate::cgroup::resources::apply(&record.cgroup, &writes)?;
    record.cgroup.apply_device_rules(&plan.device_rules)?;

    let Channels {
        console,
        console_relay,
        parent_end,
        child_end,
    } = Channels::open(plan)?;
    let unified_fd = open_cgroup_dir(record.cgroup.unified.as_deref())?;
    let binds = open_bind_sources(plan)?;
    let clone_flags = [NsKind::User, NsKind::Pid]
        .into_iter()
        .filter(|k| plan.namespaces.is_new(*k))
        .filter(|k| *k != NsKind::Pid || !plan.namespaces.pid_after_user_join())
        .fold(0u64, |acc, k| acc | k.flag().bits() as u64);
    let ns_guard = ForChildren::enter(plan)?;
    let mut child_end = Some(child_end);
    let mut listener = Some(listener);
    let mut console = console;
    let placement = record.cgroup.clone();
    let lock_fd = dir.lock_fd();
    let mut init = || {
        // SAFETY: in the child, closing its copy of the state lock's fd; nothing else uses it.
        unsafe { libc::close(lock_fd) };
        let ctx = InitContext {
            plan,
            layout,
            placement: &placement,
            seccomp: seccomp.as_ref(),
            binds: &binds,
        };
        let fds = InitFds {
            sync: child_end.take().expect("once"),
            listener: listener.take(),
            console: console.take(),
            root: None,
        };
        crate::init::run(&ctx, fds)
    };
    let (mut pid, into_cgroup) = clone_init(
        clone_flags,
        unified_fd.as_ref().map(|f| f.as_raw_fd()),
        &mut init,
    )
    .map_err(io_ctx("clone"))?;
    drop(ns_guard);
    undo.pid = Some(pid);
    // The parent keeps none of the init's ends: EOF on the sync socket must mean the init is gone.
    drop((child_end, listener, console));
    drop((unified_fd, binds));
    trace!("cloned the container init {pid} (into its cgroup by clone3: {into_cgroup})");

    record.cgroup.add(pid, into_cgroup)?;
    if let Some(adj) = plan.process.oom_score_adj {
        let proc = crate::fsutil::open_proc(Path::new("/proc")).map_err(io_ctx("/proc"))?;
        crate::fsutil::write_proc(
            proc.as_fd(),
            Path::new(&format!("{pid}/oom_score_adj")),
            &adj.to_string(),
        )
        .map_err(io_ctx("process.oomScoreAdj"))?;
    }
    record.pid = pid;
    record.start_time = start_time(pid)?;

    let sync = parent_end.as_fd();
    send_msg(sync, &Msg::Go).map_err(io_ctx("sync"))?;
    loop {
        match recv_msg(sync).map_err(io_ctx("sync"))? {
            Some(Msg::Forked { pid: init }) => {
                // The cloned process exits at once: its child, in the new pid namespace and in
                // the cgroup it inherited, is the container's init.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                trace!("container init {init}, forked by {pid} into its pid namespace");
                pid = init;
                undo.pid = Some(pid);
                record.pid = pid;
                record.start_time = start_time(pid)?;
                send_msg(sync, &Msg::Go).map_err(io_ctx("sync"))?;
            }
            Some(Msg::MapIds) => {
                trace!("writing the id maps of {pid}");
                write_id_map(pid, "uid_map", &plan.uid_map)?;
                write_id_map(pid, "gid_map", &plan.gid_map)?;
                send_msg(sync, &Msg::IdsMapped).map_err(io_ctx("sync"))?;
            }
            Some(Msg::RunHooks) => {
                trace!("mounts made: running prestart and createRuntime hooks");
                dir.write(&record)?;
                let state = record.oci_state(Status::Creating);
                let hooks = &plan.hooks;
                crate::hooks::run_all("prestart", &hooks.prestart, &state, Some(&plan.bundle))?;
                crate::hooks::run_all(
                    "createRuntime",
                    &hooks.create_runtime,
                    &state,
                    Some(&plan.bundle),
                )?;
                send_msg(
                    sync,
                    &Msg::HooksDone {
                        creating: state,
                        created: record.oci_state(Status::Created),
                    },
                )
                .map_err(io_ctx("sync"))?;
            }
            Some(Msg::SeccompListener) => {
                let fd = crate::fdpass::recv_fd(sync)
                    .map_err(io_ctx("receiving the seccomp listener"))?;
                let profile = plan
                    .seccomp
                    .as_ref()
                    .expect("a listener comes from a profile");
                send_to_agent(profile, &record, fd)?;
                trace!("seccomp listener handed to the agent");
            }
            Some(Msg::Ready) => break,
            Some(Msg::Failed { msg }) => return Err(ContainerError::Init(msg)),
            Some(other) => {
                return Err(ContainerError::Init(format!(
                    "unexpected message {other:?}"
                )));
            }
            None => return Err(ContainerError::Init("exited during setup".into())),
        }
    }
    dir.write(&record)?;
    if let Some(pf) = &plan.opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    trace!("created {}: init {pid} waits for start", plan.id);
    undo.pid = None;
    undo.placement = None;
    let dir = undo.dir.take().expect("state dir");
    Ok(Created {
        dir,
        record,
        console_relay,
    })
}

/// For a container in a user namespace, bind sources opened here, with the caller's credentials
/// and in its mount namespace, before the user namespace applies (a 0700 directory on the way is
/// fine): detached trees that the init attaches by fd. Each is made a slave of its source
/// (private with an rprivate root), as a bind in the container's own copy of the mounts would
/// be. None without a user namespace (the init has the caller's rights), where the source is
/// inside the rootfs (resolved there when its turn comes), where the container shares a mount
/// namespace, and on kernels without open_tree or mount_setattr (before 5.12): those bind by path.
fn open_bind_sources(plan: &Plan) -> Result<Vec<Option<OwnedFd>>, ContainerError> {
    use nix::mount::MsFlags;
    let propagation = match plan.rootfs_propagation.contains(MsFlags::MS_PRIVATE) {
        true => MsFlags::MS_PRIVATE,
        false => MsFlags::MS_SLAVE,
    };
    let ns = &plan.namespaces;
    let userns = ns.is_new(NsKind::User) || ns.joined(NsKind::User).is_some();
    let by_fd = ns.is_new(NsKind::Mount) && userns;
    let mut out = Vec::with_capacity(plan.mounts.len());
    for (i, m) in plan.mounts.iter().enumerate() {
        let src = match &m.source {
            Some(src) if m.is_bind() && by_fd && !src.starts_with(&plan.rootfs) => src,
            _ => {
                out.push(None);
                continue;
            }
        };
        let what = || format!("mounts[{i}].source {}", src.display());
        let recursive = m.options.flags.contains(MsFlags::MS_REC);
        let tree = match crate::fsutil::clone_tree(None, src, recursive) {
            Ok(t) => t,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                out.push(None);
                continue;
            }
            Err(e) => return Err(io_ctx(what())(e)),
        };
        match crate::fsutil::set_propagation(tree.as_fd(), propagation.bits(), true) {
            // Above the preserved fds: the init clears close-on-exec below.
            Ok(()) => out.push(Some(above(tree, plan.opts.first_own_fd())?)),
            Err(nix::errno::Errno::ENOSYS) => out.push(None),
            Err(e) => return Err(io_ctx(what())(e.into())),
        }
    }
    Ok(out)
}

/// The init's start time: with its pid, what tells it from a later process of the same pid.
fn start_time(pid: i32) -> Result<u64, ContainerError> {
    proc_stat(pid).map(|(t, _)| t).ok_or_else(|| {
        io_ctx(format!("reading /proc/{pid}/stat of the container init"))(std::io::Error::other(
            "no start time",
        ))
    })
}

/// Hands the seccomp notification fd to the agent at listenerPath, with the container's state
/// (runtime-spec "ContainerProcessState"), in one message with the fd attached.
pub(super) fn send_to_agent(
    p: &crate::seccomp::Profile,
    r: &Record,
    fd: OwnedFd,
) -> Result<(), ContainerError> {
    let path = p.listener_path.as_ref().expect("checked by the planner");
    // runc's words, which tests of seccomp agents look for.
    let what = || {
        format!(
            "failed to connect with seccomp agent specified in the seccomp profile ({})",
            path.display()
        )
    };
    let sock = std::os::unix::net::UnixStream::connect(path).map_err(io_ctx(what()))?;
    let state: serde_json::Value =
        serde_json::from_str(&r.oci_state(Status::Creating)).expect("state is JSON");
    let msg = serde_json::json!({
        "ociVersion": crate::plan::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": r.pid,
        "metadata": p.listener_metadata,
        "state": state,
    });
    crate::fdpass::send_fd(sock.as_fd(), &msg.to_string(), fd.as_raw_fd()).map_err(io_ctx(what()))
}

/// The pid file is written whole or not at all: clients poll for it.
pub(super) fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(io_ctx(format!("pid file {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_ctx(format!("pid file {}", path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unreadable_start_time_is_an_error() {
        // Above any pid_max: no such process. A start time of 0 would make it look stopped.
        let e = super::start_time(i32::MAX).unwrap_err().to_string();
        assert!(e.contains("/proc/2147483647/stat"), "{e}");
    }
}
