//! `create`: apply a plan. The order is the one in docs/design.md; each side effect is undone
//! if a later step fails, so a failed create leaves no state dir, cgroup, mount or process.

pub(crate) mod channels;
mod idmapped;
mod setup;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::SystemTime;

use super::{ContainerError, io_ctx};
use crate::cgroup::resources::Write;
use crate::cgroup::systemd::props::Property;
use crate::cgroup::{CgroupError, Layout, Placement};
use crate::clone::clone_init;
use crate::init::{InitContext, InitFds};
use crate::logger::trace;
use crate::plan::{Config, NsKind, Plan, RunOptions};
use crate::seccomp::Filter;
use crate::state::{Record, STATE_VERSION, StateDir, proc_stat};
use channels::{Channels, ChildNamespaces, above, open_bind_sources, open_cgroup_dir};
pub(crate) use setup::hand_over_listener;

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
    /// Host interfaces moved in, which go back on drop.
    net: Option<crate::netdev::Attached>,
    /// SR-IOV VFs' settings made, which go back on drop.
    vfs: Option<crate::netdev::vf::Configured>,
    /// The resctrl group, removed on drop where chitin made it.
    rdt: Option<crate::resctrl::RdtGroup>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        drop(self.net.take());
        drop(self.vfs.take());
        if let Some(pid) = self.pid.take() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(p) = self.placement.take() {
            let _ = p.remove();
        }
        if let Some(r) = self.rdt.take() {
            let _ = r.remove();
        }
        if let Some(d) = self.dir.take() {
            let _ = d.remove();
        }
    }
}

/// Creates the container of `plan`: prepare, launch (the clone), the init's setup, finish.
pub fn create(
    root: &Path,
    config: &Config,
    plan: &Plan,
    opts: &RunOptions,
    layout: &Layout,
) -> Result<Created, ContainerError> {
    let mut prepared = prepare(root, config, plan, opts, layout)?;
    let launched = launch(&mut prepared, plan, opts, layout)?;
    setup::setup(&mut prepared, launched.sync.as_fd(), plan)?;
    finish(prepared, launched, opts)
}

/// What exists before the init: the state directory (locked) with the record and the saved
/// config, the start barrier, the cgroup with its limits, and the compiled filter.
struct Prepared {
    undo: Undo,
    record: Record,
    filter: Option<Filter>,
    listener: Option<OwnedFd>,
    /// The mounts made beforehand, by the index of their mount (channels::open_bind_sources).
    binds: Vec<Option<OwnedFd>>,
    /// The systemd driver's unit properties; its limits are applied once the scope exists.
    unit: Option<(Vec<Property>, Vec<Write>)>,
}

impl Prepared {
    fn dir(&self) -> &StateDir {
        self.undo
            .dir
            .as_ref()
            .expect("the state directory until finish")
    }
}

/// Everything up to the init, checked first: a create that fails here has made nothing it
/// does not undo.
fn prepare(
    root: &Path,
    config: &Config,
    plan: &Plan,
    opts: &RunOptions,
    layout: &Layout,
) -> Result<Prepared, ContainerError> {
    let writes = layout.check(plan.resources.as_ref(), &plan.device_rules)?;
    // Compiled here, in the parent: the child only loads it.
    let filter = crate::seccomp::prepare(
        plan.seccomp.as_ref(),
        plan.seccomp_beneath.as_ref(),
        &plan.annotations,
    )?;
    // Before the first side effect: a filesystem the kernel cannot idmap leaves nothing behind.
    let binds = open_bind_sources(plan, opts.first_own_fd())?;
    let mut placement = layout.place(&plan.cgroup);
    if crate::rootless::is() {
        let dropped = placement.keep_delegated();
        if !dropped.is_empty() {
            crate::logger::warn(&format!(
                "rootless: no delegated cgroup for {} (the caller cannot write there): the \
                 container runs without a cgroup of its own in those hierarchies",
                dropped.join(", ")
            ));
        }
    }
    placement.check_reuse()?;
    let unit_props = match &plan.cgroup.unit {
        Some(_) => {
            Some(crate::cgroup::systemd::unit_properties(plan, layout).map_err(CgroupError::from)?)
        }
        None => None,
    };
    let mut undo = Undo {
        dir: Some(StateDir::create(root, &plan.id)?),
        placement: None,
        pid: None,
        net: None,
        vfs: None,
        rdt: None,
    };
    let dir = undo.dir.as_ref().expect("just set");
    // The record, with the cgroup to be made, comes first: `delete -f` can then clean up after
    // a create killed at any later point.
    let mut record = record(config, plan, placement);
    dir.write(&record)?;
    dir.write_config(&config.saved(plan))?;
    let listener = above(channels::start_barrier(dir)?, opts.first_own_fd())?;
    undo.placement = Some(record.cgroup.clone());
    let unit = match unit_props {
        Some(props) => Some((props, writes)),
        None => {
            layout.make(&record.cgroup)?;
            // Limits are in place before the init exists: it never runs unrestricted.
            limit(&record.cgroup, &writes, plan)?;
            None
        }
    };
    if let Some(r) = &plan.intel_rdt {
        // In the record already: `delete -f` removes what a killed create made.
        undo.rdt = Some(r.group.clone());
        r.group.make(&r.schemata)?;
    }
    undo.vfs = configure_vfs(plan, &mut record, dir)?;
    Ok(Prepared {
        undo,
        record,
        filter,
        listener: Some(listener),
        binds,
        unit,
    })
}

fn limit(placement: &Placement, writes: &[Write], plan: &Plan) -> Result<(), CgroupError> {
    if crate::rootless::is() {
        return limit_rootless(placement, writes);
    }
    crate::cgroup::resources::apply(placement, writes)?;
    placement.apply_device_rules(&plan.device_rules)
}

/// Rootless mode: the limits the delegated hierarchies can take, and a warning naming the others,
/// as runc warns; no device rules (a cgroup v2 device program needs the host's CAP_SYS_ADMIN).
fn limit_rootless(placement: &Placement, writes: &[Write]) -> Result<(), CgroupError> {
    let (kept, lost): (Vec<Write>, Vec<Write>) =
        writes.iter().cloned().partition(|w| match w.controller {
            "" => placement.unified.is_some(),
            c => placement.controller(c).is_some(),
        });
    if !lost.is_empty() {
        let files: Vec<&str> = lost.iter().map(|w| w.file.as_str()).collect();
        crate::logger::warn(&format!(
            "rootless: limits not applied, their controllers are not delegated: {}",
            files.join(", ")
        ));
    }
    crate::cgroup::resources::apply(placement, &kept)
}

/// The systemd driver: the init waits at the barrier while systemd makes its scope, chitin its
/// cgroup in the other hierarchies, and both apply the limits (cgroup::systemd says why here).
fn enter_scope(
    p: &mut Prepared,
    pid: i32,
    plan: &Plan,
    layout: &Layout,
) -> Result<(), ContainerError> {
    let (props, writes) = p.unit.take().expect("a systemd placement");
    let started = layout.start_scope(&mut p.record.cgroup, pid, props);
    // Whatever systemd made, delete (and the undo) stop its unit.
    p.undo.placement = Some(p.record.cgroup.clone());
    started?;
    p.dir().write(&p.record)?;
    layout.join_scope(&p.record.cgroup, pid)?;
    limit(&p.record.cgroup, &writes, plan)?;
    Ok(())
}

/// The SR-IOV VFs' settings the plan's actions ask for, made from the PF's side; what each was
/// goes into the record before it is made, so that `delete -f` puts them back after a create
/// killed at any point.
fn configure_vfs(
    plan: &Plan,
    record: &mut Record,
    dir: &StateDir,
) -> Result<Option<crate::netdev::vf::Configured>, ContainerError> {
    let vf = |a: &&chitin_devices::Action| matches!(a, chitin_devices::Action::ConfigureVf { .. });
    if !plan.actions.iter().any(|a| vf(&a)) {
        return Ok(None);
    }
    let nl = crate::netdev::Rtnl::host().map_err(io_ctx("rtnetlink"))?;
    let mut persist = |states: &[crate::netdev::vf::VfState]| {
        record.vfs = states.to_vec();
        dir.write(record).map_err(std::io::Error::other)
    };
    let configured = crate::netdev::vf::configure(Box::new(nl), &plan.actions, &mut persist)?;
    Ok(Some(configured))
}

fn record(config: &Config, plan: &Plan, cgroup: Placement) -> Record {
    // As the config has them, which `update` changes (its device rules are not).
    let resources = config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone());
    Record {
        version: STATE_VERSION,
        id: plan.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: plan.bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: crate::timefmt::rfc3339_nano(SystemTime::now()),
        annotations: plan.annotations.clone(),
        cgroup,
        resources: resources.map(|mut r| {
            r.set_devices(None);
            r
        }),
        poststart: plan.hooks.poststart.clone(),
        poststop: plan.hooks.poststop.clone(),
        // Joined counts as shared, as in runc.
        shares_pid_ns: !plan.namespaces.is_new(NsKind::Pid),
        actions: plan.actions.clone(),
        intel_rdt: plan.intel_rdt.as_ref().map(|r| r.group.clone()),
        vfs: Vec::new(),
    }
}

/// The runtime's ends of the channels to a launched init.
struct Launched {
    sync: OwnedFd,
    console_relay: Option<OwnedFd>,
    pidfd_socket: Option<OwnedFd>,
}

/// The init, cloned into its cgroup (and its user and pid namespaces), waiting for Go.
fn launch(
    p: &mut Prepared,
    plan: &Plan,
    opts: &RunOptions,
    layout: &Layout,
) -> Result<Launched, ContainerError> {
    let Channels {
        console,
        console_relay,
        pidfd_socket,
        parent_end,
        child_end,
    } = Channels::open(opts, plan.process.terminal)?;
    // systemd's scope does not exist before its process does.
    let unified_fd = match p.unit {
        Some(_) => None,
        None => open_cgroup_dir(p.record.cgroup.unified.as_deref())?,
    };
    let binds = &p.binds;
    let clone_flags = [NsKind::User, NsKind::Pid]
        .into_iter()
        .filter(|k| plan.namespaces.is_new(*k))
        .filter(|k| *k != NsKind::Pid || !plan.namespaces.pid_after_user_join())
        .fold(0u64, |acc, k| acc | k.flag().bits() as u64);
    let ns_guard = ChildNamespaces::enter(&plan.namespaces, &plan.time_offsets)?;
    let (mut child_end, mut console) = (Some(child_end), console);
    let mut listener = p.listener.take();
    let lock_fd = p.dir().lock_fd();
    let (placement, filter) = (&p.record.cgroup, p.filter.as_ref());
    let mut init = || {
        // SAFETY: in the child, closing its copy of the state lock's fd; nothing else uses it.
        unsafe { libc::close(lock_fd) };
        let ctx = InitContext {
            plan,
            opts,
            layout,
            placement,
            seccomp: filter,
            binds,
        };
        let fds = InitFds {
            sync: child_end.take().expect("once"),
            listener: listener.take(),
            console: console.take(),
            root: None,
        };
        crate::init::run(&ctx, fds)
    };
    let cloned = clone_init(
        clone_flags,
        unified_fd.as_ref().map(|f| f.as_raw_fd()),
        &mut init,
    );
    drop(ns_guard);
    let (pid, into_cgroup) = cloned.map_err(io_ctx("clone"))?;
    p.undo.pid = Some(pid);
    // The parent keeps none of the init's ends: EOF on the sync socket must mean the init is gone.
    drop((child_end, listener, console, unified_fd, binds));
    trace!("cloned the container init {pid} (into its cgroup by clone3: {into_cgroup})");
    if p.unit.is_some() {
        enter_scope(p, pid, plan, layout)?;
    } else {
        p.record.cgroup.add(pid, into_cgroup)?;
    }
    if let Some(r) = &p.record.intel_rdt {
        r.add(pid)?;
    }
    if let Some(adj) = plan.process.oom_score_adj {
        let proc = crate::fsutil::open_proc(Path::new("/proc")).map_err(io_ctx("/proc"))?;
        let file = format!("{pid}/oom_score_adj");
        crate::fsutil::write_proc(proc.as_fd(), Path::new(&file), &adj.to_string())
            .map_err(io_ctx("process.oomScoreAdj"))?;
    }
    p.record.pid = pid;
    p.record.start_time = start_time(pid)?;
    Ok(Launched {
        sync: parent_end,
        console_relay,
        pidfd_socket,
    })
}

/// The init waits at the start barrier: the record takes its pid, the pid file is written, and
/// nothing is undone any more.
fn finish(
    mut p: Prepared,
    launched: Launched,
    opts: &RunOptions,
) -> Result<Created, ContainerError> {
    p.dir().write(&p.record)?;
    let pid = p.record.pid;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    if let Some(sock) = &launched.pidfd_socket {
        super::send_pidfd(sock, pid, "init")?;
    }
    trace!("created {}: init {pid} waits for start", p.record.id);
    p.undo.pid = None;
    p.undo.placement = None;
    p.undo.rdt = None;
    if let Some(net) = p.undo.net.take() {
        net.keep();
    }
    if let Some(vfs) = p.undo.vfs.take() {
        vfs.keep();
    }
    let dir = p.undo.dir.take().expect("state dir");
    Ok(Created {
        dir,
        record: p.record,
        console_relay: launched.console_relay,
    })
}

/// The init's start time: with its pid, what tells it from a later process of the same pid.
fn start_time(pid: i32) -> Result<u64, ContainerError> {
    proc_stat(pid).map(|(t, _)| t).ok_or_else(|| {
        io_ctx(format!("reading /proc/{pid}/stat of the container init"))(std::io::Error::other(
            "no start time",
        ))
    })
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
