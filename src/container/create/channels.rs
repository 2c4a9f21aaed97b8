//! What the clone needs around it: the sockets to the init, the fds it inherits (above the range
//! handed to the container), the bind sources opened beforehand, and the pid and time namespaces
//! this process enters just for the clone.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};

use crate::container::{ContainerError, io_ctx};
use crate::plan::{Namespaces, NsKind, Plan, RunOptions, TimeOffset};
use crate::state::{START_SOCKET, StateDir};

/// Moves an fd to a number above the range handed to the container, so that --preserve-fds
/// never passes one of ours along.
pub(crate) fn above(fd: OwnedFd, min: u32) -> Result<OwnedFd, ContainerError> {
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
pub(crate) struct Channels {
    pub console: Option<OwnedFd>,
    pub console_relay: Option<OwnedFd>,
    /// --pidfd-socket, connected before anything is made; the runtime's alone.
    pub pidfd_socket: Option<OwnedFd>,
    pub parent_end: OwnedFd,
    pub child_end: OwnedFd,
}

impl Channels {
    pub(crate) fn open(opts: &RunOptions, terminal: bool) -> Result<Channels, ContainerError> {
        let min_fd = opts.first_own_fd();
        let (console, console_relay) = match (&opts.console_socket, terminal) {
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
        let pidfd_socket = match &opts.pidfd_socket {
            Some(path) => Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(path)
                    .map_err(io_ctx(format!("--pidfd-socket {}", path.display())))?,
            )),
            None => None,
        };
        let (parent_end, child_end) = crate::sync::pair().map_err(io_ctx("socketpair"))?;
        Ok(Channels {
            console,
            console_relay,
            pidfd_socket,
            parent_end,
            child_end: above(child_end, min_fd)?,
        })
    }
}

/// The cgroup2 directory to clone into (CLONE_INTO_CGROUP takes an fd of it).
pub(crate) fn open_cgroup_dir(dir: Option<&Path>) -> Result<Option<OwnedFd>, ContainerError> {
    let Some(d) = dir else { return Ok(None) };
    let flags =
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    nix::fcntl::open(d, flags, nix::sys::stat::Mode::empty())
        .map(Some)
        .map_err(|e| io_ctx(format!("opening {}", d.display()))(e.into()))
}

/// The start barrier: a listening socket in the state directory (see container::start).
pub(super) fn start_barrier(dir: &StateDir) -> Result<OwnedFd, ContainerError> {
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
pub(crate) struct ChildNamespaces {
    restore: Vec<(OwnedFd, nix::sched::CloneFlags)>,
}

impl ChildNamespaces {
    pub(crate) fn enter(
        ns: &Namespaces,
        time_offsets: &[TimeOffset],
    ) -> Result<ChildNamespaces, ContainerError> {
        let mut restore = Vec::new();
        for kind in [NsKind::Pid, NsKind::Time] {
            let joined = ns.joined(kind);
            let new_time = kind == NsKind::Time && ns.is_new(NsKind::Time);
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
                let offsets: String = time_offsets
                    .iter()
                    .map(|o| format!("{} {} {}\n", o.clock, o.secs, o.nanos))
                    .collect();
                if !offsets.is_empty() {
                    std::fs::write("/proc/self/timens_offsets", offsets)
                        .map_err(io_ctx("writing timens_offsets"))?;
                }
            }
        }
        Ok(ChildNamespaces { restore })
    }
}

impl Drop for ChildNamespaces {
    fn drop(&mut self) {
        for (fd, flag) in self.restore.drain(..) {
            let _ = nix::sched::setns(fd.as_fd(), flag);
        }
    }
}

/// Mounts the runtime makes, as detached trees that the init attaches by fd:
/// - idmapped mounts, which only a detached mount can become (super::idmapped);
/// - for a container in a user namespace, bind sources opened here, with the caller's
///   credentials and in its mount namespace, before the user namespace applies (a 0700
///   directory on the way is fine).
///
/// A bind's tree is made a slave of its source (private with an rprivate root), as a bind in the
/// container's own copy of the mounts would be. Other binds are None: without a user namespace
/// (the init has the caller's rights), where the source is inside the rootfs (resolved there when
/// its turn comes), where the container shares a mount namespace, for an ordinary user, and on
/// kernels without open_tree or mount_setattr (before 5.12): those bind by path.
pub(super) fn open_bind_sources(
    plan: &Plan,
    min_fd: u32,
) -> Result<Vec<Option<OwnedFd>>, ContainerError> {
    use nix::mount::MsFlags;
    let propagation = match plan.rootfs_propagation.contains(MsFlags::MS_PRIVATE) {
        true => MsFlags::MS_PRIVATE,
        false => MsFlags::MS_SLAVE,
    };
    let ns = &plan.namespaces;
    let userns = ns.is_new(NsKind::User) || ns.joined(NsKind::User).is_some();
    // An ordinary user may not clone a mount of its mount namespace: its init binds by path,
    // with the user's rights, as the rootless runtimes do.
    let by_fd = ns.is_new(NsKind::Mount) && userns && !crate::rootless::unprivileged();
    let mut namespaces = super::idmapped::Namespaces::default();
    let mut out = Vec::with_capacity(plan.mounts.len());
    for (i, m) in plan.mounts.iter().enumerate() {
        let tree = match (&m.idmap, &m.source) {
            (Some(idmap), _) => super::idmapped::make(i, m, idmap, &mut namespaces)?,
            (None, Some(src)) if m.is_bind() && by_fd && !src.starts_with(&plan.rootfs) => {
                let recursive = m.options.flags.contains(MsFlags::MS_REC);
                match crate::fsutil::clone_tree(None, src, recursive) {
                    Ok(t) => t,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                        out.push(None);
                        continue;
                    }
                    Err(e) => {
                        return Err(io_ctx(format!("mounts[{i}].source {}", src.display()))(e));
                    }
                }
            }
            _ => {
                out.push(None);
                continue;
            }
        };
        if !m.is_bind() {
            out.push(Some(above(tree, min_fd)?));
            continue;
        }
        let what = || format!("mounts[{i}] ({})", m.dest.display());
        match crate::fsutil::set_propagation(tree.as_fd(), propagation.bits(), true) {
            // Above the preserved fds: the init clears close-on-exec below.
            Ok(()) => out.push(Some(above(tree, min_fd)?)),
            Err(nix::errno::Errno::ENOSYS) => out.push(None),
            Err(e) => return Err(io_ctx(what())(e.into())),
        }
    }
    Ok(out)
}
