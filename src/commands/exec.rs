//! `exec`'s flags as an `ExecRequest`: parsed here, so that the core never sees clap's types.

use std::str::FromStr;

use crate::cli::ExecFlags;
use crate::container::ContainerError;
use crate::plan::exec::ExecRequest;
use crate::plan::{PlanError, RunOptions};

fn refuse(msg: String) -> ContainerError {
    ContainerError::Plan(PlanError::Options(msg))
}

pub fn request(f: &ExecFlags, command: &[String]) -> Result<ExecRequest, ContainerError> {
    let (uid, gid) = match &f.user {
        None => (None, None),
        Some(u) => {
            let bad = || refuse(format!("--user {u:?}: not uid[:gid]"));
            let (uid, gid) = u
                .split_once(':')
                .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
            let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
            (Some(uid.parse().map_err(|_| bad())?), gid)
        }
    };
    let caps = f
        .cap
        .iter()
        .map(|c| {
            caps::Capability::from_str(c)
                .map_err(|_| refuse(format!("--cap {c:?}: unknown capability")))
        })
        .collect::<Result<_, _>>()?;
    Ok(ExecRequest {
        process_file: f.process.clone(),
        args: command.to_vec(),
        tty: f.tty,
        cwd: f.cwd.clone(),
        env: f.env.clone(),
        uid,
        gid,
        additional_gids: f.additional_gids.clone(),
        no_new_privs: f.no_new_privs,
        apparmor: f.apparmor.clone(),
        process_label: f.process_label.clone(),
        caps,
        cgroup: f.cgroup.clone(),
        ignore_paused: f.ignore_paused,
        opts: RunOptions {
            console_socket: f.console_socket.clone(),
            pidfd_socket: f.pidfd_socket.clone(),
            pid_file: f.pid_file.clone(),
            no_pivot: false,
            // The container's session keyring is already the one it has.
            no_new_keyring: true,
            listen_fds: RunOptions::listen_fds_from_env(),
            preserve_fds: f.preserve_fds,
            detach: f.detach,
        },
    })
}
