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
    /// Directory for container state (default /run/chitin; $XDG_RUNTIME_DIR/chitin for an
    /// ordinary user).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: Format,
    /// Log debug messages too.
    #[arg(long)]
    pub debug: bool,
    /// Make containers' cgroups as systemd transient units (cgroupsPath is slice:prefix:name).
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, value_name = "true|false|auto", default_value = "auto", num_args = 0..=1,
          default_missing_value = "true")]
    pub rootless: String,
    /// The TPM that containers are measured into (org.chitin.tpm.measure), as a TCTI:
    /// device:PATH or swtpm:host=H,port=P
    #[arg(long = "tpm-tcti", value_name = "TCTI", default_value = crate::tpm::DEFAULT_TCTI)]
    pub tpm_tcti: String,
    /// The CDI spec directories, in rising priority (default /etc/cdi:/var/run/cdi).
    #[arg(
        long = "cdi-spec-dirs",
        value_name = "DIR[:DIR...]",
        value_delimiter = ':'
    )]
    pub cdi_spec_dirs: Option<Vec<PathBuf>>,
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
    /// Unix socket that receives a pidfd of the container's init.
    #[arg(long = "pidfd-socket", value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
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

/// runc's `exec` flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ExecFlags {
    /// A runtime-spec process JSON file (then the command line after the id is not used).
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the process.
    #[arg(long = "pidfd-socket", value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE); may repeat.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// User as uid[:gid].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional group id; may repeat.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Return once the process started.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// SELinux context the process runs in (default: the container's).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile the process is confined by (default: the container's).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability (to the bounding, effective and permitted sets); may repeat.
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Join this sub-cgroup of the container's cgroup.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Run even if the container is paused.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
}

/// runc's `update` flags; each overrides the same field of `--resources`.
#[derive(Args, Debug, Clone, Default)]
pub struct UpdateFlags {
    /// A runtime-spec linux.resources JSON file, or "-" for stdin.
    #[arg(short = 'r', long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-burst")]
    pub cpu_burst: Option<u64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for none).
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// The L3 cache schema of the container's resctrl group ("L3:0=ff;1=ff").
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    /// The memory bandwidth schema of the container's resctrl group ("MB:0=50;1=50").
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
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
    /// The TPM measurements of containers: their event log, checked against the PCRs.
    Tpm {
        #[command(subcommand)]
        what: TpmCommand,
    },
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
        /// Add a seccomp profile shipped with chitin, resolved for this machine.
        #[arg(long, value_parser = crate::profiles::SECCOMP_PROFILES.to_vec())]
        seccomp: Option<String>,
        /// A security profile shipped with chitin: its annotation, and the spec as it leaves it.
        #[arg(long, value_parser = crate::plan::hardening::names())]
        profile: Option<String>,
    },
    /// Print what this runtime supports, as runtime-spec features JSON.
    Features,
    /// The performance profiles shipped with chitin (org.chitin.profile.performance=NAME).
    Profile {
        #[command(subcommand)]
        what: ProfileCommand,
    },
    /// Run a process in a running container.
    Exec {
        #[command(flatten)]
        flags: Box<ExecFlags>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Change a container's cgroup resources.
    Update {
        #[command(flatten)]
        flags: Box<UpdateFlags>,
        id: String,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List a container's processes; arguments after the id go to ps(1).
    Ps {
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print a container's resource usage and OOM events as JSON lines.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// How often to print stats.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// The shipped profiles and what each asks for.
    List,
    /// What a profile resolves to on this host, as runtime-spec fields; nothing is created.
    Explain {
        name: String,
        /// The fields of this bundle's config with the profile applied, as create would save
        /// them.
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TpmCommand {
    /// Print the event log, a record a line.
    Log,
    /// Replay the event log and compare it with the TPM's PCRs.
    Verify,
}
