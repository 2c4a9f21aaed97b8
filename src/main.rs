//! chitin: an OCI container runtime with runc's command line. The command line is read here;
//! the work is done by the library (src/lib.rs).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use chitin::cli::{Cli, Command};
use chitin::container::{self, ContainerError};
use chitin::{commands, logger, plan, selfexe};

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn version() -> String {
    format!(
        "chitin version {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        plan::OCI_VERSION
    )
}

fn print(s: &str) -> Result<(), Error> {
    std::io::stdout()
        .write_all(s.as_bytes())
        .map_err(|source| Error::Io {
            what: "stdout".into(),
            source,
        })
}

fn dispatch(cli: Cli) -> Result<i32, Error> {
    if cli.version {
        print(&version())?;
        return Ok(0);
    }
    chitin::rootless::decide(&cli.rootless).map_err(Error::Usage)?;
    let Some(cmd) = cli.command else {
        return Err(Error::Usage("no command given; see chitin --help".into()));
    };
    // The commands that start processes in a container run from a binary it cannot overwrite.
    if matches!(
        cmd,
        Command::Create { .. } | Command::Run { .. } | Command::Exec { .. }
    ) {
        selfexe::seal().map_err(|source| Error::Io {
            what: "sealing the runtime's executable (CVE-2019-5736)".into(),
            source,
        })?;
    }
    let cdi = cli.cdi_spec_dirs.as_deref();
    let driver = if cli.systemd_cgroup {
        plan::Driver::Systemd
    } else {
        plan::Driver::Cgroupfs
    };
    let stateless = matches!(
        cmd,
        Command::Spec { .. } | Command::Features | Command::Profile { .. }
    );
    let root = match cli.root {
        Some(r) => r,
        // These never read it: an ordinary user without XDG_RUNTIME_DIR may still run them.
        None if stateless => std::path::PathBuf::new(),
        None => chitin::rootless::default_root().map_err(Error::Usage)?,
    };
    command(&root, &cli.tpm_tcti, (cdi, driver), cmd)
}

/// Runs one command; its exit status.
fn command(
    root: &std::path::Path,
    tcti: &str,
    (cdi, driver): (Option<&[std::path::PathBuf]>, plan::Driver),
    cmd: Command,
) -> Result<i32, Error> {
    match cmd {
        Command::Create { flags, id } => commands::create(root, (cdi, driver), &flags, &id)?,
        Command::Start { id } => commands::start(root, &id, tcti)?,
        Command::Run {
            flags,
            detach,
            keep,
            no_subreaper,
            id,
        } => {
            let how = commands::RunHow {
                detach,
                keep,
                no_subreaper,
            };
            return Ok(commands::run(root, (tcti, cdi, driver), &flags, &id, how)?);
        }
        Command::State { id } => print(&format!("{}\n", commands::state(root, &id)?))?,
        Command::Tpm { what } => print(&commands::tpm(root, tcti, &what)?)?,
        Command::Kill { all, id, signal } => commands::kill(root, &id, signal.as_deref(), all)?,
        Command::Delete { force, id } => commands::delete(root, &id, force)?,
        Command::List { format, quiet } => print(&commands::list(root, &format, quiet)?)?,
        Command::Spec {
            bundle,
            rootless,
            seccomp,
            profile,
        } => commands::spec::write(&bundle, rootless, seccomp.as_deref(), profile.as_deref())
            .map_err(|source| Error::Io {
                what: "spec".into(),
                source,
            })?,
        Command::Features => print(&format!("{}\n", commands::features::render()))?,
        Command::Profile { what } => print(&commands::profile::run(&what, (cdi, driver))?)?,
        Command::Exec { flags, id, command } => {
            return Ok(container::exec(
                root,
                &id,
                &commands::exec::request(&flags, &command)?,
            )?);
        }
        Command::Update { flags, id } => commands::cgroups::update(root, &id, &flags)?,
        Command::Pause { id } => commands::cgroups::pause(root, &id, true)?,
        Command::Resume { id } => commands::cgroups::pause(root, &id, false)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => print(&commands::cgroups::ps(root, &id, &format, &ps_args)?)?,
        Command::Events {
            stats,
            interval,
            id,
        } => commands::cgroups::events(root, &id, stats, &interval, &mut std::io::stdout())?,
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout with 0; usage errors exit 1, as runc's do.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // Before any fd of ours exists: the slots of the range handed to the container that the
    // caller left closed are held, so that none of ours lands there.
    let preserved = match &cli.command {
        Some(Command::Create { flags, .. } | Command::Run { flags, .. }) => {
            Some(flags.preserve_fds)
        }
        Some(Command::Exec { flags, .. }) => Some(flags.preserve_fds),
        _ => None,
    };
    if let Some(n) = preserved {
        chitin::init::fds::hold_gaps(3 + plan::RunOptions::listen_fds_from_env() + n);
    }
    if let Err(e) = logger::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("chitin: --log: {e}");
        return ExitCode::from(1);
    }
    // A failed exec exits 255, as runc's: shims tell it from the process's own status so.
    let failure = match cli.command {
        Some(Command::Exec { .. }) => 255,
        _ => 1,
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            // One line per failure, in the log (which containerd reads) and, if the log is a
            // file, on stderr too, as runc does.
            let msg = e.to_string();
            logger::error(&msg);
            if !logger::to_stderr() {
                eprintln!("chitin: {msg}");
            }
            ExitCode::from(failure)
        }
    }
}
