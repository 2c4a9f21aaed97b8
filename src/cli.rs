//! The command line, with runc's command names, flags, short forms and defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logger::Format;

#[derive(Parser, Debug)]
#[command(
    name = "chitin",
    about = "An OCI container runtime, compatible with runc's command line",
    disable_version_flag = true
)]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, default_value = "/run/chitin", value_name = "DIR")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: Format,
    /// Log debug messages too.
    #[arg(long)]
    pub debug: bool,
    /// Manage cgroups through systemd (not supported; refused).
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, value_name = "true|false|auto", default_value = "auto", num_args = 0..=1,
          default_missing_value = "true")]
    pub rootless: String,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CreateFlags {
    /// Bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// File to write the container init's pid to.
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root (for ramfs roots).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N more fds (3..3+N) to the container, after any LISTEN_FDS.
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create {
        #[command(flatten)]
        flags: CreateFlags,
        id: String,
    },
    /// Run the process of a created container.
    Start { id: String },
    /// Create and start a container, and wait for it unless detached.
    Run {
        #[command(flatten)]
        flags: CreateFlags,
        /// Exit after starting; the container runs on.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        /// Do not become a subreaper for the container's orphans.
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
        id: String,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes.
    Kill {
        /// Signal every process in the container.
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a stopped (or, with --force, any) container.
    Delete {
        /// Kill the container first if it is running.
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// List containers.
    #[command(visible_alias = "ps-all")]
    List {
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only the ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for a rootless container (user namespace mapping the caller).
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports, as runtime-spec features JSON.
    Features,
}
