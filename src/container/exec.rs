//! `exec`: a new process in a running container. It is cloned like the init, into the
//! container's cgroup, with the pid and time namespaces entered by this process just for the
//! clone; the child joins the rest, gets the same process attributes and seccomp filter as the
//! container's process, and execs at once.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::create::channels::{Channels, ChildNamespaces, above, open_cgroup_dir};
use super::create::{hand_over_listener, write_pid_file};
use super::{ContainerError, io_ctx, pidfd};
use crate::cgroup::{Placement, V1Dir};
use crate::clone::clone_init;
use crate::init::{ExecContext, InitFds, ProcessContext};
use crate::plan::exec::{ExecPlan, ExecRequest};
use crate::plan::{Config, Namespaces, NsKind, PlanError};
use crate::state::{CONFIG_FILE, Record, StateDir, Status};

fn refuse(msg: impl Into<String>) -> ContainerError {
    ContainerError::Plan(PlanError::Options(msg.into()))
}
use crate::sync::{ExpectError, Msg, expect, send_msg};

/// The container's namespaces that differ from ours, to be joined through /proc/<pid>/ns.
fn container_namespaces(pid: i32) -> Namespaces {
    let name = |k: NsKind| match k {
        NsKind::Mount => "mnt",
        NsKind::Net => "net",
        k => k.spec_name(),
    };
    let mut ns = Namespaces::default();
    for k in [
        NsKind::User,
        NsKind::Mount,
        NsKind::Uts,
        NsKind::Ipc,
        NsKind::Net,
        NsKind::Cgroup,
        NsKind::Pid,
        NsKind::Time,
    ] {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", name(k)));
        let ours = format!("/proc/self/ns/{}", name(k));
        match (std::fs::read_link(&theirs), std::fs::read_link(&ours)) {
            (Ok(a), Ok(b)) if a != b => ns.join.push((k, theirs)),
            _ => {}
        }
    }
    ns
}

/// The container's cgroup, or its sub-cgroup given with --cgroup.
fn placement(base: &Placement, sub: Option<&Path>) -> Result<Placement, ContainerError> {
    let Some(sub) = sub else {
        return Ok(base.clone());
    };
    let rel = crate::fsutil::relative(sub);
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        // runc's words.
        return Err(refuse(format!(
            "--cgroup: {} is not a sub cgroup path",
            sub.display()
        )));
    }
    let join = |d: &Path| -> Result<PathBuf, ContainerError> {
        let p = d.join(&rel);
        if p.is_dir() {
            Ok(p)
        } else {
            Err(refuse(format!("--cgroup: {} does not exist", p.display())))
        }
    };
    Ok(Placement {
        v1: base
            .v1
            .iter()
            .map(|d| {
                Ok(V1Dir {
                    controllers: d.controllers.clone(),
                    path: join(&d.path)?,
                })
            })
            .collect::<Result<_, ContainerError>>()?,
        unified: base.unified.as_deref().map(join).transpose()?,
        ..Placement::default()
    })
}

/// The record and saved config of a container that an exec may enter.
fn enterable(
    root: &Path,
    id: &str,
    ignore_paused: bool,
) -> Result<(Record, Config), ContainerError> {
    let dir = StateDir::open(root, id)?;
    let r = dir.read()?;
    match dir.status(&r) {
        // As runc: a created container's init has its namespaces and cgroup ready.
        Status::Running | Status::Created => {}
        Status::Paused if ignore_paused => {}
        Status::Paused => {
            return Err(ContainerError::Status(
                "cannot exec in a paused container (use --ignore-paused)".into(),
            ));
        }
        s => {
            return Err(ContainerError::Status(format!(
                "cannot exec in a container that is {}",
                s.as_str()
            )));
        }
    }
    if r.version < 1 {
        // A state directory of a build from before the config was saved: nothing to plan from.
        return Err(ContainerError::Status(format!(
            "container {id} was created by an earlier chitin (state format {}), which kept no config to exec from: recreate it",
            r.version
        )));
    }
    let config = Config::read_saved(&dir.path.join(CONFIG_FILE))?;
    Ok((r, config))
}

/// The init's root, for a container without a mount namespace of its own: its init chrooted
/// there, and joining namespaces does not.
fn init_root(plan: &ExecPlan, record: &Record) -> Result<Option<OwnedFd>, ContainerError> {
    if plan.own_mount_ns {
        return Ok(None);
    }
    let fd = nix::fcntl::open(
        format!("/proc/{}/root", record.pid).as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io_ctx("the container's root")(e.into()))?;
    above(fd, plan.opts.first_own_fd()).map(Some)
}

pub fn exec(root: &Path, id: &str, req: &ExecRequest) -> Result<i32, ContainerError> {
    let (record, config) = enterable(root, id, req.ignore_paused)?;
    let plan = ExecPlan::new(&config, &record.rootfs, req, &crate::plan::host::RealHost)?;
    // The init's pid is checked against its start time while its namespaces are read.
    let init =
        pidfd(&record).ok_or_else(|| ContainerError::Status("container not running".into()))?;
    let mut root = init_root(&plan, &record)?;
    let join = container_namespaces(record.pid);
    crate::logger::trace!(
        "exec: into {id} (init {}), joining {:?}",
        record.pid,
        join.join.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let placement = placement(&record.cgroup, req.cgroup.as_deref())?;
    if let Some(m) = &plan.process.tuning.affinity.initial {
        // Ours, which the clone inherits until it is in the container's cgroup (this thread's).
        crate::init::tuning::set_affinity(m)
            .map_err(|e| io_ctx("process.execCPUAffinity.initial")(e.into()))?;
    }
    let seccomp = crate::seccomp::prepare(
        plan.seccomp.as_ref(),
        plan.seccomp_beneath.as_ref(),
        &plan.annotations,
    )?;
    let opts = &plan.opts;
    let Channels {
        console,
        console_relay,
        pidfd_socket,
        parent_end,
        child_end,
    } = Channels::open(opts, plan.process.terminal)?;
    // With execCPUAffinity.initial the process starts outside the cgroup, on those CPUs, and is
    // moved in after (as runc does): cloned straight into it, it would start on the cpuset's.
    let unified_fd = match plan.process.tuning.affinity.initial {
        Some(_) => None,
        None => open_cgroup_dir(placement.unified.as_deref())?,
    };
    if !opts.detach {
        let _ = super::forwarded_signals().thread_block();
    }
    // An ordinary user may join the pid namespace only once in the container's user namespace,
    // which this process must not join: the child joins both and forks (a subreaper here, so
    // that the forked process is still ours to wait for).
    let join_pid_late = crate::rootless::unprivileged() && join.joined(NsKind::User).is_some();
    if join_pid_late {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let ns_guard = match join_pid_late {
        false => Some(ChildNamespaces::enter(&join, &[])?),
        true => None,
    };
    let (mut child_end, mut console) = (Some(child_end), console);
    let mut child = || {
        let ctx = ExecContext {
            join: &join,
            join_pid_late,
            process: ProcessContext {
                id,
                process: &plan.process,
                opts,
                seccomp: seccomp.as_ref(),
            },
        };
        let fds = InitFds {
            sync: child_end.take().expect("once"),
            listener: None,
            console: console.take(),
            root: root.take(),
        };
        crate::init::run_exec(&ctx, fds)
    };
    let cloned = clone_init(0, unified_fd.as_ref().map(|f| f.as_raw_fd()), &mut child);
    drop(ns_guard);
    let (pid, into_cgroup) = cloned.map_err(io_ctx("clone"))?;
    drop((child_end, console, unified_fd, init, root));
    let kill = killing(pid);
    placement
        .add(pid, into_cgroup)
        .map_err(|e| kill(e.into()))?;
    let pid = match join_pid_late {
        true => forked(parent_end.as_fd(), pid).map_err(kill)?,
        false => pid,
    };
    let kill = killing(pid);
    if let Some(r) = &record.intel_rdt {
        r.add(pid).map_err(|e| kill(e.into()))?;
    }
    crate::logger::trace!("exec: cloned {pid} (into its cgroup by clone3: {into_cgroup})");
    until_exec(parent_end.as_fd(), &plan, &record, seccomp.as_ref()).map_err(kill)?;
    crate::logger::trace!("exec: {pid} execs {:?}", plan.process.args);
    if let Some(pf) = &opts.pid_file {
        // As runc: a process whose pid cannot be handed over is not left running.
        write_pid_file(pf, pid).map_err(kill)?;
    }
    if let Some(sock) = &pidfd_socket {
        super::send_pidfd(sock, pid, "exec").map_err(kill)?;
    }
    if opts.detach {
        return Ok(0);
    }
    super::relay_and_wait(pid, console_relay)
}

/// The pid of the process the clone forked into the container's pid namespace (once the clone
/// is in its cgroups, which the fork inherits); the clone is reaped.
fn forked(sync: BorrowedFd<'_>, cloned: i32) -> Result<i32, ContainerError> {
    send_msg(sync, &Msg::Go).map_err(io_ctx("sync"))?;
    let forked = |m: &Msg| matches!(m, Msg::Forked { .. });
    let Msg::Forked { pid } = expect(sync, "forking into the pid namespace", forked)? else {
        unreachable!("expected Forked")
    };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(cloned), None);
    Ok(pid)
}

/// An error after the clone also ends the process: none is left half set up.
fn killing(pid: i32) -> impl Fn(ContainerError) -> ContainerError + Copy {
    move |e| {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        e
    }
}

/// Go; the seccomp listener to hand over, if the filter has one; then EOF, which is execve
/// closing the socket.
fn until_exec(
    sync: BorrowedFd<'_>,
    plan: &ExecPlan,
    record: &Record,
    filter: Option<&crate::seccomp::Filter>,
) -> Result<(), ContainerError> {
    send_msg(sync, &Msg::Go).map_err(io_ctx("sync"))?;
    if filter.is_some_and(|f| f.listener) {
        hand_over_listener(sync, plan.seccomp.as_ref(), record)?;
    }
    match expect(sync, "execing", |_| false) {
        Err(ExpectError::Gone(_)) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(_) => unreachable!("no message is wanted"),
    }
}
