//! A container's state directory under --root: state.json, the start socket and the lock.
//!
//! The init's pid is stored with its start time (field 22 of /proc/<pid>/stat), so a pid that the
//! kernel has reused is never taken for the container. Every command that changes a container
//! holds an exclusive flock on its directory, so `delete` racing `start` or `kill` is safe.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::cgroup::Placement;
use crate::plan::Hook;

pub const STATE_FILE: &str = "state.json";
/// The effective config, saved at create: what exec (and restore) plan from, never the bundle.
pub const CONFIG_FILE: &str = "config.json";
/// The format of what a state directory holds. 1: state.json with `version`, and config.json.
pub const STATE_VERSION: u32 = 1;
pub const START_SOCKET: &str = "start.sock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container with id {0:?} already exists")]
    Exists(String),
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("state of container {id:?} is unreadable: {msg}")]
    Corrupt { id: String, msg: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What state.json holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// STATE_VERSION when written; 0 (missing) before the format had one.
    #[serde(default)]
    pub version: u32,
    pub id: String,
    /// Host pid of the init; 0 until it exists.
    pub pid: i32,
    /// The init's start time in clock ticks since boot.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub cgroup: Placement,
    /// The resources in force (`update` changes them).
    #[serde(default)]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
    /// No pid namespace of its own: processes of the container outlive its init, and `delete`
    /// kills what is left in its cgroup.
    #[serde(default)]
    pub shares_pid_ns: bool,
    /// What `start` does before the container runs (edits::Action).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<chitin_devices::Action>,
    /// The resctrl group (linux.intelRdt), which exec'd processes join and delete removes if
    /// chitin made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<crate::resctrl::RdtGroup>,
    /// SR-IOV VFs' settings as they were before create changed them, put back by delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vfs: Vec<crate::netdev::vf::VfState>,
}

/// The OCI state, as hooks receive it on stdin.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

impl Record {
    pub fn oci_state(&self, status: Status) -> String {
        let pid = (status != Status::Stopped && self.pid > 0).then_some(self.pid);
        serde_json::to_string(&OciState {
            oci_version: crate::plan::OCI_VERSION,
            id: &self.id,
            status: status.as_str(),
            pid,
            bundle: &self.bundle,
            annotations: &self.annotations,
        })
        .expect("state serializes")
    }
}

/// Start time (clock ticks since boot) and state letter of a live process, from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some((
        fields.get(19)?.parse().ok()?,
        fields.first()?.chars().next()?,
    ))
}

/// A container's state directory, locked for as long as this value lives.
pub struct StateDir {
    pub path: PathBuf,
    dir: Flock<OwnedFd>,
}

fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn lock(fd: OwnedFd, path: &Path) -> Result<Flock<OwnedFd>, StateError> {
    Flock::lock(fd, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

impl StateDir {
    /// Makes the directory of a new container; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<StateDir, StateError> {
        let io = |source| StateError::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(io)?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_owned()));
            }
            Err(e) => return Err(StateError::Io { path, source: e }),
        }
        let fd = open_dir(&path).map_err(|e| StateError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        let dir = lock(fd, &path)?;
        Ok(StateDir { path, dir })
    }

    /// Opens and locks an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<StateDir, StateError> {
        crate::plan::validate_id(id).map_err(|_| StateError::NotFound(id.to_owned()))?;
        let path = root.join(id);
        let fd = match open_dir(&path) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Err(StateError::NotFound(id.to_owned())),
            Err(e) => {
                return Err(StateError::Io {
                    path,
                    source: e.into(),
                });
            }
        };
        let dir = lock(fd, &path)?;
        // A delete that held the lock before us may have removed the directory.
        if !path.join(STATE_FILE).exists()
            && fs::read_dir(&path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true)
        {
            return Err(StateError::NotFound(id.to_owned()));
        }
        Ok(StateDir { path, dir })
    }

    /// The fd that holds the lock. A cloned init must close its copy at once: were the runtime
    /// killed, that copy would keep the container locked for as long as the init waits.
    pub fn lock_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// A path naming `name` in this directory through the open fd, short enough for sun_path
    /// whatever --root is.
    pub fn fd_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/self/fd/{}/{name}",
            self.dir.as_fd().as_raw_fd()
        ))
    }

    pub fn write(&self, record: &Record) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).expect("record serializes");
        self.write_file(STATE_FILE, &bytes)
    }

    /// The effective config, written once at create.
    pub fn write_config(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.write_file(CONFIG_FILE, bytes)
    }

    /// A file of the directory, whole or not at all, readable by its owner only: the config
    /// holds the process's environment, where secrets often are (runc's state is 0600 too).
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let tmp = self.path.join(format!(".{name}.tmp"));
        let io = |source| StateError::Io {
            path: tmp.clone(),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        // A file left by a create killed before its rename keeps its old mode: set it.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        fs::rename(&tmp, self.path.join(name)).map_err(io)
    }

    pub fn read(&self) -> Result<Record, StateError> {
        read_record(&self.path)
    }

    pub fn status(&self, r: &Record) -> Status {
        // We hold the lock a create holds until it is done: no pid means that create died.
        if r.pid <= 0 {
            return Status::Stopped;
        }
        status_of(&self.path, r)
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<(), StateError> {
        fs::remove_dir_all(&self.path).map_err(|source| StateError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

pub fn read_record(dir: &Path) -> Result<Record, StateError> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = match fs::read(dir.join(STATE_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::NotFound(id)),
        Err(e) => {
            return Err(StateError::Io {
                path: dir.join(STATE_FILE),
                source: e,
            });
        }
    };
    let r: Record = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
        id: id.clone(),
        msg: e.to_string(),
    })?;
    // A newer chitin's state may mean what this build cannot tell.
    if r.version > STATE_VERSION {
        return Err(StateError::Corrupt {
            id,
            msg: format!(
                "state format {} is newer than this chitin's ({STATE_VERSION})",
                r.version
            ),
        });
    }
    Ok(r)
}

/// The status, derived from the process itself: alive with the recorded start time, and the
/// start socket still there (created) or gone (running).
pub fn status_of(dir: &Path, r: &Record) -> Status {
    if r.pid <= 0 {
        // Creating while its create holds the lock; a create that died left a stopped container.
        let held = open_dir(dir).is_ok_and(|fd| {
            Flock::lock(fd, FlockArg::LockSharedNonblock)
                .is_err_and(|(_, e)| e == nix::errno::Errno::EWOULDBLOCK)
        });
        return if held {
            Status::Creating
        } else {
            Status::Stopped
        };
    }
    match proc_stat(r.pid) {
        Some((start, state)) if start == r.start_time && state != 'Z' && state != 'X' => {
            // Frozen first: a created container can be paused too, as with runc.
            if crate::cgroup::freezer::is_frozen(&r.cgroup) {
                Status::Paused
            } else if dir.join(START_SOCKET).exists() {
                Status::Created
            } else {
                Status::Running
            }
        }
        _ => Status::Stopped,
    }
}

/// The user name owning the state directory, as runc's `list` shows it.
pub fn owner(dir: &Path) -> String {
    let uid = fs::metadata(dir).map(|m| m.uid()).unwrap_or(0);
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("#{uid}"), |u| u.name)
}
