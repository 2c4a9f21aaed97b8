//! The runtime's side of the init's setup (docs/design.md draws both sides). Each step expects
//! the one message that the plan says comes next, and refuses any other.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::Prepared;
use crate::container::{ContainerError, io_ctx};
use crate::logger::trace;
use crate::plan::{MapWith, NsKind, Plan};
use crate::state::{Record, Status};
use crate::sync::{Msg, expect, send_msg};

pub(super) fn setup(
    p: &mut Prepared,
    sync: BorrowedFd<'_>,
    plan: &Plan,
) -> Result<(), ContainerError> {
    let send = |m: &Msg| send_msg(sync, m).map_err(io_ctx("sync"));
    send(&Msg::Go)?;
    if plan.namespaces.pid_after_user_join() {
        let step = "forking into its pid namespace";
        let Msg::Forked { pid: init } = expect(sync, step, |m| matches!(m, Msg::Forked { .. }))?
        else {
            unreachable!("expected Forked")
        };
        // The cloned process exits at once: its child, in the new pid namespace and in the
        // cgroup it inherited, is the container's init.
        let cloned = p.record.pid;
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(cloned), None);
        trace!("container init {init}, forked by {cloned} into its pid namespace");
        p.undo.pid = Some(init);
        p.record.pid = init;
        p.record.start_time = super::start_time(init)?;
        send(&Msg::Go)?;
    }
    let pid = p.record.pid;
    if plan.namespaces.is_new(NsKind::User) {
        expect(sync, "asking for its id maps", |m| *m == Msg::MapIds)?;
        trace!("writing the id maps of {pid}");
        write_id_maps(pid, plan)?;
        send(&Msg::IdsMapped)?;
    }
    if plan.moves_into_netns() {
        expect(sync, "making its network namespace", |m| {
            *m == Msg::NetReady
        })?;
        p.undo.net = Some(move_net_devices(pid, plan)?);
        send(&Msg::NetMoved)?;
    }
    expect(sync, "making its namespaces and mounts", |m| {
        *m == Msg::RunHooks
    })?;
    trace!("mounts made: running prestart and createRuntime hooks");
    let done = run_hooks(p, plan)?;
    send(&done)?;
    if p.filter.as_ref().is_some_and(|f| f.listener) {
        hand_over_listener(sync, plan.seccomp.as_ref(), &p.record)?;
        trace!("seccomp listener handed to the agent");
    }
    expect(sync, "finishing its setup", |m| *m == Msg::Ready)?;
    Ok(())
}

/// The listener of a filter with a notify action, which the init sends once it loaded the
/// filter: for the profile's agent.
pub(crate) fn hand_over_listener(
    sync: BorrowedFd<'_>,
    profile: Option<&crate::seccomp::Profile>,
    record: &Record,
) -> Result<(), ContainerError> {
    expect(sync, "loading its seccomp filter", |m| {
        *m == Msg::SeccompListener
    })?;
    let fd = crate::fdpass::recv_fd(sync).map_err(io_ctx("receiving the seccomp listener"))?;
    send_to_agent(
        profile.expect("a listener comes from a profile"),
        record,
        fd,
    )
}

/// prestart and createRuntime hooks, with the record as it is now; the states for the init's
/// own hooks.
fn run_hooks(p: &Prepared, plan: &Plan) -> Result<Msg, ContainerError> {
    p.dir().write(&p.record)?;
    let state = p.record.oci_state(Status::Creating);
    let hooks = &plan.hooks;
    let cwd = Some(plan.bundle.as_path());
    crate::hooks::run_all("prestart", &hooks.prestart, &state, cwd)?;
    crate::hooks::run_all("createRuntime", &hooks.create_runtime, &state, cwd)?;
    Ok(Msg::HooksDone {
        creating: state,
        created: p.record.oci_state(Status::Created),
    })
}

/// linux.netDevices (and RDMA devices, in exclusive mode), into the namespace the init just made.
fn move_net_devices(pid: i32, plan: &Plan) -> Result<crate::netdev::Attached, ContainerError> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).map_err(io_ctx(&path))?;
    let nl = crate::netdev::Rtnl::open(ns.into()).map_err(io_ctx("rtnetlink"))?;
    let rdma = plan.rdma_namespaces();
    let attached = crate::netdev::attach(Box::new(nl), &plan.net_devices, &rdma)?;
    trace!(
        "moved {} interfaces and {} RDMA devices into the container",
        plan.net_devices.len(),
        rdma.len()
    );
    Ok(attached)
}

/// The init's uid and gid maps, written as the plan says (plan::rootless).
fn write_id_maps(pid: i32, plan: &Plan) -> Result<(), ContainerError> {
    let write = |file: &str, text: &str| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(io_ctx(path))
    };
    let (uids, gids) = (&plan.uid_map, &plan.gid_map);
    match plan.map_with {
        MapWith::Root | MapWith::OwnIds => {
            if plan.map_with == MapWith::OwnIds {
                write("setgroups", "deny")?;
            }
            write("uid_map", &crate::plan::id_map_text(uids))?;
            write("gid_map", &crate::plan::id_map_text(gids))
        }
        MapWith::Helpers => {
            helper("newuidmap", pid, uids)?;
            helper("newgidmap", pid, gids)
        }
    }
}

/// newuidmap or newgidmap PID, then each map's three numbers.
fn helper(name: &str, pid: i32, maps: &[crate::plan::IdMap]) -> Result<(), ContainerError> {
    let mut cmd = std::process::Command::new(name);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.container, m.host, m.size].map(|n| n.to_string()));
    }
    let out = cmd.output().map_err(io_ctx(name))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(ContainerError::Io {
        what: format!("{name} {pid}"),
        source: std::io::Error::other(format!("{}: {}", out.status, err.trim())),
    })
}

/// Hands the seccomp notification fd to the agent at listenerPath, with the container's state
/// (runtime-spec "ContainerProcessState"), in one message with the fd attached.
fn send_to_agent(
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
