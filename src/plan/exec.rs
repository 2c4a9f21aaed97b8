//! The plan of an `exec`: the process to run in a container, from the config saved at create
//! (never the bundle's, which may have changed since) and runc's exec flags. It is its own plan:
//! the container's mounts, devices and hooks were applied once and are not planned again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::host::Host;
use super::{Config, NsKind, PlanError, ProcessPlan, RunOptions};

/// What `exec` is asked to run: runc's flags as values (`commands` builds it from the command
/// line).
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// A runtime-spec process JSON file, instead of the config's process.
    pub process_file: Option<PathBuf>,
    /// The command, when there is no process file.
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE each, replacing the same KEY.
    pub env: Vec<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub caps: Vec<caps::Capability>,
    /// A sub-cgroup of the container's to join.
    pub cgroup: Option<PathBuf>,
    pub ignore_paused: bool,
    pub opts: RunOptions,
}

#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub process: ProcessPlan,
    /// The container has a mount namespace of its own (else its init chrooted, and so must we).
    pub own_mount_ns: bool,
    pub seccomp: Option<crate::seccomp::Profile>,
    /// The container's security profile's filter (crate::plan::hardening).
    pub seccomp_beneath: Option<crate::seccomp::Profile>,
    pub annotations: BTreeMap<String, String>,
    pub opts: RunOptions,
}

fn refuse(msg: impl Into<String>) -> PlanError {
    PlanError::Options(msg.into())
}

impl ExecPlan {
    /// The process of `req` in the container created with `config`, whose rootfs is `rootfs`.
    pub fn new(
        config: &Config,
        rootfs: &Path,
        req: &ExecRequest,
        host: &dyn Host,
    ) -> Result<ExecPlan, PlanError> {
        let spec = &config.spec;
        let container = spec
            .process()
            .as_ref()
            .ok_or_else(|| PlanError::field("process", "missing"))?;
        let linux = spec.linux().as_ref();
        let container = super::process::plan(container, linux, rootfs, host)?;
        let mut process = match &req.process_file {
            Some(path) => from_file(path, req.tty, linux, rootfs, container, host)?,
            None if req.args.is_empty() => {
                return Err(refuse("exec needs a command (or --process)"));
            }
            None => ProcessPlan {
                args: req.args.clone(),
                terminal: req.tty,
                ..container
            },
        };
        check_terminal(&process, &req.opts)?;
        // Socket activation's variables first: an --env of the same name wins, as before.
        req.opts.apply(&mut process)?;
        apply_flags(&mut process, req, host)?;
        let security = super::hardening::Named::of(spec)?;
        if let Some(s) = &security {
            restrict(s, &mut process, req)?;
        }
        let own_mount_ns = spec
            .linux()
            .iter()
            .flat_map(|l| l.namespaces())
            .flatten()
            .any(|n| {
                super::NsKind::from_spec(n.typ()) == NsKind::Mount
                    && n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
            });
        Ok(ExecPlan {
            process,
            own_mount_ns,
            seccomp: config
                .seccomp
                .clone()
                .map(crate::seccomp::from_json)
                .transpose()?,
            seccomp_beneath: (security.as_ref())
                .map(|s| s.beneath(chitin_arch::Arch::native()))
                .transpose()?,
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            opts: req.opts.clone(),
        })
    }
}

/// `--process FILE`: the process it describes, with the container's LSM labels where it names
/// none (as runc).
fn from_file(
    path: &Path,
    tty: bool,
    linux: Option<&oci_spec::runtime::Linux>,
    rootfs: &Path,
    container: ProcessPlan,
    host: &dyn Host,
) -> Result<ProcessPlan, PlanError> {
    let bad = |e: String| refuse(format!("--process {}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // As in a config: capability names this build does not know are left out, and so on.
    super::config::for_oci_spec(&mut v);
    if let Some(o) = v.as_object_mut() {
        // runc decodes the file into a zero-valued process: without `user`, uid and gid 0.
        o.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
        // The flags apply on top of the file, -t too (runc ignores them all with --process).
        if tty {
            o.insert("terminal".into(), true.into());
        }
    }
    let p: oci_spec::runtime::Process = serde_path_to_error::deserialize(v)
        .map_err(|e| bad(format!("{}: {}", e.path(), e.inner())))?;
    let mut p = super::process::plan(&p, linux, rootfs, host)?;
    p.apparmor_profile = p.apparmor_profile.take().or(container.apparmor_profile);
    p.selinux_label = p.selinux_label.take().or(container.selinux_label);
    Ok(p)
}

/// runc's exec flags, applied on top of the process.
fn apply_flags(p: &mut ProcessPlan, req: &ExecRequest, host: &dyn Host) -> Result<(), PlanError> {
    if let Some(cwd) = &req.cwd {
        if !cwd.is_absolute() {
            return Err(refuse(format!(
                "--cwd {}: not an absolute path",
                cwd.display()
            )));
        }
        p.cwd = cwd.clone();
    }
    for e in &req.env {
        let Some((key, _)) = e.split_once('=') else {
            return Err(refuse(format!("--env {e:?}: not KEY=VALUE")));
        };
        p.env
            .retain(|old| old.split_once('=').is_none_or(|(k, _)| k != key));
        p.env.push(e.clone());
    }
    p.uid = req.uid.unwrap_or(p.uid);
    p.gid = req.gid.unwrap_or(p.gid);
    if !req.additional_gids.is_empty() {
        p.additional_gids = req.additional_gids.clone();
    }
    p.no_new_privs |= req.no_new_privs;
    // Without --apparmor (or with an empty one) the exec'd process gets the container's profile,
    // as with runc; likewise its SELinux label without --process-label.
    if let Some(a) = super::lsm::apparmor_profile(host, "--apparmor", req.apparmor.as_deref())? {
        p.apparmor_profile = Some(a);
    }
    if let Some(l) = super::lsm::label(host, "--process-label", req.process_label.as_deref())? {
        p.selinux_label = Some(l);
    }
    for &cap in &req.caps {
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
    Ok(())
}

/// The container's security profile over the exec'd process: its capabilities narrowed as the
/// config's were (a forbidden one, from --cap or --process, fails), no_new_privs always, and no
/// unconfined AppArmor profile.
fn restrict(
    s: &super::hardening::Named,
    p: &mut ProcessPlan,
    req: &ExecRequest,
) -> Result<(), PlanError> {
    let from = |field: &str, flag: &str| match &req.process_file {
        Some(f) => format!("--process {}: {field}", f.display()),
        None => flag.to_owned(),
    };
    s.restrict_caps(&mut p.caps, &from("capabilities", "--cap"))?;
    if p.apparmor_profile.as_deref() == Some("unconfined") {
        let what = from("apparmorProfile", "--apparmor");
        return Err(s.forbidden_flag(&what, "\"unconfined\""));
    }
    p.no_new_privs = true;
    Ok(())
}

/// exec's own words for the terminal rules (RunOptions::apply has create's).
fn check_terminal(p: &ProcessPlan, opts: &RunOptions) -> Result<(), PlanError> {
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
