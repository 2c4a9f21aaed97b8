//! What the command line adds to a config: kept beside the plan, not in it.

use std::path::PathBuf;

use super::{PlanError, ProcessPlan};

/// What the command line adds to the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub console_socket: Option<PathBuf>,
    /// Receives a pidfd of the process once it runs (runc's --pidfd-socket).
    pub pidfd_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// fds 3.. handed to the container: LISTEN_FDS first, then --preserve-fds.
    pub listen_fds: u32,
    pub preserve_fds: u32,
    /// The caller does not stay to relay a terminal (create, run -d).
    pub detach: bool,
}

impl RunOptions {
    /// The fds of socket activation (sd_listen_fds(3)): LISTEN_FDS counts them from fd 3, and
    /// they are ours only if LISTEN_PID is our pid. A LISTEN_FDS inherited from a parent that
    /// was socket-activated names fds that are not meant for the container.
    pub fn listen_fds_from_env() -> u32 {
        let ours = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        match std::env::var("LISTEN_FDS") {
            Ok(n) if ours => n.parse().unwrap_or(0),
            _ => 0,
        }
    }

    /// The lowest fd not handed to the container (fds 3.. up to here are).
    pub fn first_own_fd(&self) -> u32 {
        3 + self.listen_fds + self.preserve_fds
    }

    /// What the options change in the process: socket activation's variables, renumbered for
    /// the container; and where its terminal goes, checked against the process's.
    pub fn apply(&self, p: &mut ProcessPlan) -> Result<(), PlanError> {
        if p.terminal && self.detach && self.console_socket.is_none() {
            return Err(PlanError::Options(
                "process.terminal is true but the container detaches: give --console-socket to receive the pty".into(),
            ));
        }
        if !p.terminal && self.console_socket.is_some() {
            return Err(PlanError::Options(
                "--console-socket needs process.terminal to be true".into(),
            ));
        }
        if self.listen_fds > 0 {
            p.env
                .retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
            p.env.push(format!("LISTEN_FDS={}", self.listen_fds));
            p.env.push("LISTEN_PID=1".into());
        }
        Ok(())
    }
}
