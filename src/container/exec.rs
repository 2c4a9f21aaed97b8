//! `exec`: a new process in a running container. It is cloned like the init, into the
//! container's cgroup, with the pid and time namespaces entered by this process just for the
//! clone; the child joins the rest, gets the same process attributes and seccomp filter as the
//! container's process, and execs at once.

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::create::{Channels, ForChildren, above, open_cgroup_dir, send_to_agent, write_pid_file};
use super::{ContainerError, io_ctx, pidfd};
use crate::cgroup::{Layout, Placement, V1Dir};
use crate::cli::ExecFlags;
use crate::clone::clone_init;
use crate::init::{InitContext, InitFds};
use crate::plan::{Namespaces, NsKind, Plan, PlanError, RunOptions};
use crate::state::{StateDir, Status};
use crate::sync::{Msg, recv_msg, send_msg};

fn refuse(msg: impl Into<String>) -> ContainerError {
    ContainerError::Plan(PlanError::Options(msg.into()))
}

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

/// Applies runc's exec flags to the process taken from the config or from --process.
fn process_plan(
    plan: &mut Plan,
    f: &ExecFlags,
    command: &[String],
    opts: &RunOptions,
) -> Result<(), ContainerError> {
    if let Some(path) = &f.process {
        let bytes = std::fs::read(path).map_err(io_ctx(format!("--process {}", path.display())))?;
        let bad = |e: String| refuse(format!("--process {}: {e}", path.display()));
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        // As in a config: capability names this build does not know are left out.
        crate::plan::drop_unknown_capabilities(&mut v);
        if let Some(o) = v.as_object_mut() {
            // runc decodes the file into a zero-valued process: without `user`, uid and gid 0.
            o.entry("user")
                .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
            // The flags apply on top of the file, -t too (runc ignores them all with --process).
            if f.tty {
                o.insert("terminal".into(), true.into());
            }
        }
        let p: oci_spec::runtime::Process = serde_path_to_error::deserialize(v).map_err(|e| {
            refuse(format!(
                "--process {}: {}: {}",
                path.display(),
                e.path(),
                e.inner()
            ))
        })?;
        let container = std::mem::replace(
            &mut plan.process,
            crate::plan::plan_process(&p, &plan.rootfs, opts)?,
        );
        // As runc: a process.json that names no LSM label gets the container's.
        let p = &mut plan.process;
        p.apparmor_profile = p.apparmor_profile.take().or(container.apparmor_profile);
        p.selinux_label = p.selinux_label.take().or(container.selinux_label);
    } else {
        if command.is_empty() {
            return Err(refuse("exec needs a command (or --process)"));
        }
        plan.process.args = command.to_vec();
        plan.process.terminal = f.tty;
    }
    let p = &mut plan.process;
    if let Some(cwd) = &f.cwd {
        if !cwd.is_absolute() {
            return Err(refuse(format!(
                "--cwd {}: not an absolute path",
                cwd.display()
            )));
        }
        p.cwd = cwd.clone();
    }
    for e in &f.env {
        let Some((key, _)) = e.split_once('=') else {
            return Err(refuse(format!("--env {e:?}: not KEY=VALUE")));
        };
        p.env
            .retain(|old| old.split_once('=').is_none_or(|(k, _)| k != key));
        p.env.push(e.clone());
    }
    if let Some(u) = &f.user {
        let bad = || refuse(format!("--user {u:?}: not uid[:gid]"));
        let (uid, gid) = u
            .split_once(':')
            .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
        p.uid = uid.parse().map_err(|_| bad())?;
        if let Some(g) = gid {
            p.gid = g.parse().map_err(|_| bad())?;
        }
    }
    if !f.additional_gids.is_empty() {
        p.additional_gids = f.additional_gids.clone();
    }
    p.no_new_privs |= f.no_new_privs;
    // Without --apparmor (or with an empty one) the exec'd process gets the container's profile,
    // as with runc; likewise its SELinux label without --process-label.
    if let Some(a) = crate::plan::apparmor_profile("--apparmor", f.apparmor.as_deref())? {
        p.apparmor_profile = Some(a);
    }
    if let Some(l) = crate::plan::selinux::label("--process-label", f.process_label.as_deref())? {
        p.selinux_label = Some(l);
    }
    for c in &f.cap {
        let cap = caps::Capability::from_str(c)
            .map_err(|_| refuse(format!("--cap {c:?}: unknown capability")))?;
        // Not the inheritable set: an added capability must not survive an execve of a
        // non-root program (CVE-2022-29162). Ambient too where the config made it inheritable,
        // as runc 1.2 does, so that a non-root process keeps it.
        for set in [
            &mut p.caps.bounding,
            &mut p.caps.effective,
            &mut p.caps.permitted,
        ] {
            set.insert(cap);
        }
        if p.caps.inheritable.contains(&cap) {
            p.caps.ambient.insert(cap);
        }
    }
    if p.terminal && opts.detach && opts.console_socket.is_none() {
        return Err(refuse(
            "a terminal for a detached exec needs --console-socket",
        ));
    }
    if !p.terminal && opts.console_socket.is_some() {
        return Err(refuse("--console-socket needs --tty"));
    }
    Ok(())
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

pub fn exec(
    root: &Path,
    id: &str,
    f: &ExecFlags,
    command: &[String],
) -> Result<i32, ContainerError> {
    let record = {
        let dir = StateDir::open(root, id)?;
        let r = dir.read()?;
        match dir.status(&r) {
            // As runc: a created container's init has its namespaces and cgroup ready.
            Status::Running | Status::Created => {}
            Status::Paused if f.ignore_paused => {}
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
        r
    };
    let listen_fds = RunOptions::listen_fds_from_env();
    let opts = RunOptions {
        console_socket: f.console_socket.clone(),
        pid_file: f.pid_file.clone(),
        no_pivot: false,
        // The container's session keyring is already the one it has.
        no_new_keyring: true,
        listen_fds,
        preserve_fds: f.preserve_fds,
        detach: f.detach,
    };
    // The config's own terminal settings are not this process's: checked in process_plan.
    let load_opts = RunOptions {
        console_socket: None,
        detach: false,
        ..opts.clone()
    };
    let mut plan = Plan::load(&record.bundle, id, load_opts)?;
    plan.opts = opts.clone();
    process_plan(&mut plan, f, command, &opts)?;
    // The init's pid is checked against its start time while its namespaces are read.
    let init =
        pidfd(&record).ok_or_else(|| ContainerError::Status("container not running".into()))?;
    // Its init chrooted into the rootfs: so does this process, through the init's root.
    let mut root = match plan.namespaces.is_new(NsKind::Mount) {
        true => None,
        false => Some(above(
            nix::fcntl::open(
                format!("/proc/{}/root", record.pid).as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| io_ctx("the container's root")(e.into()))?,
            opts.first_own_fd(),
        )?),
    };
    plan.namespaces = container_namespaces(record.pid);
    crate::logger::trace!(
        "exec: into {id} (init {}), joining {:?}",
        record.pid,
        plan.namespaces
            .join
            .iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    );
    let placement = placement(&record.cgroup, f.cgroup.as_deref())?;
    let seccomp = match &plan.seccomp {
        Some(p) => crate::seccomp::prepare(p, &plan.annotations)?,
        None => None,
    };
    let Channels {
        console,
        console_relay,
        parent_end,
        child_end,
    } = Channels::open(&plan)?;
    let unified_fd = open_cgroup_dir(placement.unified.as_deref())?;
    if !f.detach {
        let _ = super::forwarded_signals().thread_block();
    }
    let layout = Layout::default();
    let ns_guard = ForChildren::enter(&plan)?;
    let (mut child_end, mut console) = (Some(child_end), console);
    let mut child = || {
        let ctx = InitContext {
            plan: &plan,
            layout: &layout,
            placement: &placement,
            seccomp: seccomp.as_ref(),
            binds: &[],
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
    let kill = |e: ContainerError| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        e
    };
    placement
        .add(pid, into_cgroup)
        .map_err(|e| kill(e.into()))?;
    crate::logger::trace!("exec: cloned {pid} (into its cgroup by clone3: {into_cgroup})");
    let sync = parent_end.as_fd();
    send_msg(sync, &Msg::Go).map_err(|e| kill(io_ctx("sync")(e)))?;
    // Until execve closes the socket: a listener to hand over, or a failure.
    loop {
        match recv_msg(sync).map_err(|e| kill(io_ctx("sync")(e)))? {
            Some(Msg::SeccompListener) => {
                let fd = crate::fdpass::recv_fd(sync)
                    .map_err(|e| kill(io_ctx("receiving the seccomp listener")(e)))?;
                let profile = plan
                    .seccomp
                    .as_ref()
                    .expect("a listener comes from a profile");
                send_to_agent(profile, &record, fd).map_err(kill)?;
            }
            Some(Msg::Failed { msg }) => return Err(kill(ContainerError::Init(msg))),
            Some(other) => {
                return Err(kill(ContainerError::Init(format!(
                    "unexpected message {other:?}"
                ))));
            }
            None => break,
        }
    }
    crate::logger::trace!("exec: {pid} execs {:?}", plan.process.args);
    if let Some(pf) = &plan.opts.pid_file {
        // As runc: a process whose pid cannot be handed over is not left running.
        write_pid_file(pf, pid).map_err(kill)?;
    }
    if f.detach {
        return Ok(0);
    }
    super::relay_and_wait(pid, console_relay)
}
