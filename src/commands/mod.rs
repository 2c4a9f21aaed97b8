//! The commands, each a thin layer over `plan`, `container` and `state`.

pub mod cgroups;
pub mod exec;
pub mod features;
pub mod profile;
pub mod signals;
pub mod spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup::Layout;
use crate::cli::CreateFlags;
use crate::container::{self, ContainerError};
use crate::plan::{Config, Driver, Plan, RunOptions};
use crate::state::{self, Record, StateDir, Status};

/// runc's containerState: what `state` and `list -f json` print.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateView<'a> {
    oci_version: &'a str,
    id: &'a str,
    pid: i32,
    status: &'a str,
    bundle: &'a Path,
    rootfs: &'a Path,
    created: &'a str,
    owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
    /// Beyond runc's fields, and only with systemd's (runc's keys otherwise, as clients and the
    /// differential tests compare them): the driver that made the cgroup, and so updates and
    /// deletes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_driver: Option<Driver>,
}

fn view<'a>(dir: &Path, r: &'a Record, status: Status) -> StateView<'a> {
    StateView {
        oci_version: crate::plan::OCI_VERSION,
        id: &r.id,
        pid: if status == Status::Stopped { 0 } else { r.pid },
        status: status.as_str(),
        bundle: &r.bundle,
        rootfs: &r.rootfs,
        created: &r.created,
        owner: state::owner(dir),
        annotations: &r.annotations,
        cgroup_driver: r.cgroup.unit.as_ref().map(|_| Driver::Systemd),
    }
}

fn run_options(f: &CreateFlags, detach: bool) -> RunOptions {
    // Socket activation: fds 3.. given by systemd pass on to the container, before --preserve-fds.
    let listen_fds = RunOptions::listen_fds_from_env();
    RunOptions {
        console_socket: f.console_socket.clone(),
        pidfd_socket: f.pidfd_socket.clone(),
        pid_file: f.pid_file.as_ref().map(|p| absolute(p)),
        no_pivot: f.no_pivot,
        no_new_keyring: f.no_new_keyring,
        listen_fds,
        preserve_fds: f.preserve_fds,
        detach,
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// What create and run apply: the config, its plan (with the options' changes to the process),
/// the options and the host's cgroup layout.
struct Prepared {
    config: Config,
    plan: Plan,
    opts: RunOptions,
    layout: Layout,
}

fn plan_and_layout(
    (cdi, driver): (Option<&[PathBuf]>, Driver),
    f: &CreateFlags,
    id: &str,
    detach: bool,
) -> Result<Prepared, ContainerError> {
    // Relative spec directories are the caller's, as the bundle is.
    let cdi: Option<Vec<PathBuf>> = cdi.map(|d| d.iter().map(|p| absolute(p)).collect());
    let providers = crate::edits::builtin(cdi.as_deref(), driver);
    let (config, mut plan) = Plan::load(&f.bundle, id, &providers, driver)?;
    let opts = run_options(f, detach);
    opts.apply(&mut plan.process)?;
    let layout = Layout::detect()?;
    Ok(Prepared {
        config,
        plan,
        opts,
        layout,
    })
}

impl Prepared {
    fn create(&self, root: &Path) -> Result<container::Created, ContainerError> {
        container::create(root, &self.config, &self.plan, &self.opts, &self.layout)
    }
}

pub fn create(
    root: &Path,
    how: (Option<&[PathBuf]>, Driver),
    f: &CreateFlags,
    id: &str,
) -> Result<(), ContainerError> {
    plan_and_layout(how, f, id, true)?.create(root)?;
    Ok(())
}

pub fn start(root: &Path, id: &str, tcti: &str) -> Result<(), ContainerError> {
    let dir = StateDir::open(root, id)?;
    let r = dir.read()?;
    container::start(&dir, &r, None, tcti)
}

/// `run`'s own flags.
pub struct RunHow {
    pub detach: bool,
    pub keep: bool,
    pub no_subreaper: bool,
}

/// `tpm log` and `tpm verify`.
pub fn tpm(
    root: &Path,
    tcti: &str,
    what: &crate::cli::TpmCommand,
) -> Result<String, ContainerError> {
    use crate::cli::TpmCommand;
    match what {
        TpmCommand::Log => Ok(crate::tpm::records(root)?),
        TpmCommand::Verify => {
            let pcrs = crate::tpm::verify_at(root, tcti)?;
            if pcrs.is_empty() {
                return Ok("the event log has no records: nothing was measured\n".into());
            }
            Ok(pcrs
                .iter()
                .map(|(pcr, value, n)| {
                    format!("PCR {pcr}: sha256 {value}, as the log's {n} records replay\n")
                })
                .collect())
        }
    }
}

/// `run`: create and start; then, unless detached, relay signals and the terminal, wait, remove
/// the container (unless --keep) and return its exit status. `run` needs the TPM's TCTI and
/// the CDI spec directories both.
pub fn run(
    root: &Path,
    (tcti, cdi, driver): (&str, Option<&[PathBuf]>, Driver),
    f: &CreateFlags,
    id: &str,
    how: RunHow,
) -> Result<i32, ContainerError> {
    let RunHow {
        detach,
        keep,
        no_subreaper,
    } = how;
    let prepared = plan_and_layout((cdi, driver), f, id, detach)?;
    let plan = &prepared.plan;
    if !detach {
        // Blocked before the clone so that none is lost; the init unblocks them for itself.
        let _ = container::forwarded_signals().thread_block();
        // An init that forked into its pid namespace is not our child: ours to reap only as a
        // subreaper's.
        if !no_subreaper || plan.namespaces.pid_after_user_join() {
            let _ = nix::sys::prctl::set_child_subreaper(true);
        }
    }
    let created = prepared.create(root)?;
    let bundle = plan.bundle.as_path();
    if let Err(e) = container::start(&created.dir, &created.record, Some(bundle), tcti) {
        let _ = container::kill_all(&created.record);
        let _ = container::destroy(created.dir, &created.record, Some(bundle));
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    // Unlocked while it runs, so that kill, state and delete -f work meanwhile.
    let record = created.record;
    drop(created.dir);
    let code = container::relay_and_wait(record.pid, created.console_relay)?;
    if !keep {
        match StateDir::open(root, id) {
            Ok(dir) => {
                container::kill_all(&record)?;
                container::destroy(dir, &record, Some(bundle))?;
            }
            // Someone ran delete meanwhile.
            Err(state::StateError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(code)
}

pub fn state(root: &Path, id: &str) -> Result<String, ContainerError> {
    crate::plan::validate_id(id).map_err(|_| state::StateError::NotFound(id.to_owned()))?;
    let dir = root.join(id);
    let r = state::read_record(&dir)?;
    let s = state::status_of(&dir, &r);
    Ok(serde_json::to_string_pretty(&view(&dir, &r, s)).expect("state serializes"))
}

pub fn kill(root: &Path, id: &str, signal: Option<&str>, all: bool) -> Result<(), ContainerError> {
    let sig = match signal {
        None => libc::SIGTERM,
        Some(s) => signals::parse(s)
            .ok_or_else(|| ContainerError::Status(format!("unknown signal {s:?}")))?,
    };
    let dir = StateDir::open(root, id)?;
    let r = dir.read()?;
    match dir.status(&r) {
        Status::Stopped => return Err(ContainerError::Status("container not running".into())),
        Status::Creating => {
            return Err(ContainerError::Status(
                "container is still being created".into(),
            ));
        }
        _ => {}
    }
    // The init first, through its pidfd: killed with the rest of the cgroup first, it may be
    // gone (and reaped) before its pidfd is opened, and `kill --all` would fail (seen under
    // emulation on ppc64le).
    container::signal_init(&r, sig)?;
    if all {
        if sig == libc::SIGKILL {
            r.cgroup.kill_all();
        } else {
            for pid in r.cgroup.pids().into_iter().filter(|p| *p != r.pid) {
                // SAFETY: kill(2) with a pid and a checked signal number.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }
    Ok(())
}

pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let dir = match StateDir::open(root, id) {
        Ok(dir) => dir,
        // As runc: --force succeeds when there is nothing, and removes the empty directory a
        // create killed before its first record left.
        Err(state::StateError::NotFound(_)) if force && crate::plan::validate_id(id).is_ok() => {
            let _ = std::fs::remove_dir(root.join(id));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let r = match dir.read() {
        Ok(r) => r,
        // A create killed before it wrote any state left only the directory.
        Err(state::StateError::NotFound(_)) if force => return Ok(dir.remove()?),
        Err(e) => return Err(e.into()),
    };
    match dir.status(&r) {
        // The init is gone, but in the pid namespace it shared its children may not be: they
        // go with the container, as in runc. With --force, whatever is left in its cgroup goes
        // (an init whose create was killed before its pid was recorded, say).
        Status::Stopped if (force || r.shares_pid_ns) && !r.cgroup.pids().is_empty() => {
            container::kill_all(&r)?
        }
        Status::Stopped => {}
        // A created container has not run anything yet: runc deletes it without --force.
        Status::Created | Status::Creating => container::kill_all(&r)?,
        _ if force => container::kill_all(&r)?,
        s => {
            return Err(ContainerError::Status(format!(
                "cannot delete container {id} that is not stopped: {}",
                s.as_str()
            )));
        }
    }
    container::destroy(dir, &r, None)
}

pub fn list(root: &Path, format: &str, quiet: bool) -> Result<String, ContainerError> {
    let mut entries: Vec<(PathBuf, Record)> = match std::fs::read_dir(root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| state::read_record(&e.path()).ok().map(|r| (e.path(), r)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(container::io_ctx(root.display().to_string())(e)),
    };
    entries.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    if quiet {
        return Ok(entries.iter().map(|(_, r)| format!("{}\n", r.id)).collect());
    }
    let views: Vec<StateView<'_>> = entries
        .iter()
        .map(|(d, r)| view(d, r, state::status_of(d, r)))
        .collect();
    if format == "json" {
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&views).expect("list serializes")
        ));
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for v in &views {
        rows.push([
            v.id.to_owned(),
            v.pid.to_string(),
            v.status.to_owned(),
            v.bundle.display().to_string(),
            v.created.to_owned(),
            v.owner.clone(),
        ]);
    }
    // Like Go's tabwriter with runc's settings: cells padded to the widest plus three.
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0).max(9) + 3)
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c == 5 {
                out.push_str(cell)
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[c]))
            }
        }
        out.push('\n');
    }
    Ok(out)
}
