//! `start`: open the barrier the init waits at. The init answers on the same connection only if
//! something fails; on success the connection (CLOEXEC) closes at execve and we read EOF.

use crate::sync::{ExpectError, Failure};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr, connect, recv, socket,
};

use std::path::Path;

use super::{ContainerError, io_ctx};
use crate::state::{Record, START_SOCKET, StateDir, Status};

/// Starts a created container; poststart hooks run in `hooks_cwd` (the bundle for `run`, the
/// caller's for `start`, as in runc). Its actions (a measurement, through the TPM at `tcti`)
/// come first: one that fails leaves it created, never running unmeasured.
pub fn start(
    dir: &StateDir,
    r: &Record,
    hooks_cwd: Option<&Path>,
    tcti: &str,
) -> Result<(), ContainerError> {
    match dir.status(r) {
        Status::Created => {}
        Status::Running | Status::Paused => {
            return Err(ContainerError::Status(
                "cannot start an already running container".into(),
            ));
        }
        Status::Stopped => {
            return Err(ContainerError::Status(
                "cannot start a container that has stopped".into(),
            ));
        }
        Status::Creating => {
            return Err(ContainerError::Status(
                "cannot start a container that is still being created".into(),
            ));
        }
    }
    run_actions(dir, r, tcti)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io_ctx("socket")(e.into()))?;
    let addr = UnixAddr::new(&dir.fd_path(START_SOCKET))
        .map_err(|e| io_ctx("start socket address")(e.into()))?;
    connect(sock.as_raw_fd(), &addr)
        .map_err(|e| io_ctx("connecting to the container's start socket")(e.into()))?;
    crate::logger::trace!("start: barrier of {} opened, init {} goes on", r.id, r.pid);
    let mut buf = vec![0u8; 16 * 1024];
    let n = loop {
        match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECONNRESET) => break 0,
            r => break r.map_err(|e| io_ctx("waiting for the container to start")(e.into()))?,
        }
    };
    let _ = std::fs::remove_file(dir.path.join(START_SOCKET));
    if n > 0 {
        let failure = serde_json::from_slice(&buf[..n]).unwrap_or_else(|_| Failure {
            step: "start".into(),
            errno: None,
            detail: String::from_utf8_lossy(&buf[..n]).into_owned(),
        });
        return Err(ExpectError::Failed(failure).into());
    }
    crate::logger::trace!("start: init {} execs the container process", r.pid);
    if let Err(e) = crate::hooks::run_all(
        "poststart",
        &r.poststart,
        &r.oci_state(Status::Running),
        hooks_cwd,
    ) {
        // The spec: a failing poststart hook is logged and the container keeps running.
        crate::logger::warn(&e.to_string());
    }
    Ok(())
}

/// The container's actions, in order.
fn run_actions(dir: &StateDir, r: &Record, tcti: &str) -> Result<(), ContainerError> {
    for action in &r.actions {
        match *action {
            chitin_devices::Action::Measure { pcr } => {
                let path = dir.path.join(crate::state::CONFIG_FILE);
                let config = std::fs::read(&path).map_err(io_ctx(path.display().to_string()))?;
                let mut content = crate::tpm::content(&r.id, &config, &r.annotations, &r.actions);
                if r.actions.contains(&chitin_devices::Action::MeasureRootfs) {
                    // The init's root, whatever the bundle's path names now.
                    let root = std::path::PathBuf::from(format!("/proc/{}/root", r.pid));
                    let d = crate::tpm::rootfs::digest(&root).map_err(io_ctx(format!(
                        "measuring the rootfs {}",
                        r.rootfs.display()
                    )))?;
                    content["rootfs"] = d.into();
                }
                let root = dir
                    .path
                    .parent()
                    .expect("a state directory is under --root");
                crate::tpm::measure_at(root, tcti, pcr, content)?;
                crate::logger::trace!("start: {} measured into PCR {pcr}", r.id);
            }
            // Parts of the measurement's content.
            chitin_devices::Action::Digest { .. } | chitin_devices::Action::MeasureRootfs => {}
            // Done at create.
            chitin_devices::Action::ConfigureVf { .. }
            | chitin_devices::Action::RdmaNamespace { .. } => {}
        }
    }
    Ok(())
}
