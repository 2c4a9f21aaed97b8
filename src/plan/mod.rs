//! The plan: config.json and the command line, validated and turned into plain data before the
//! first side effect. Everything that can be wrong with the input is found here, with an error
//! that names the field; applying the plan is then a straight sequence (see `container::create`).

pub mod mounts;
pub mod process;
pub mod selinux;
mod userns;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

pub use mounts::MountOptions;
pub use process::{CapSets, Rlimit};

/// The runtime-spec major version this runtime implements.
pub const OCI_MAJOR: u32 = 1;
/// The runtime-spec version chitin implements, reported in state and features.
pub const OCI_VERSION: &str = "1.2.0";
/// Containers without linux.cgroupsPath go below this cgroup.
pub const DEFAULT_CGROUP_PARENT: &str = "/chitin";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config.json: {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("config.json: {field}: not supported by chitin")]
    Unsupported { field: String },
    #[error("{0}")]
    Options(String),
    #[error("config.json: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

impl PlanError {
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        PlanError::Field {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
    fn unsupported(field: &str) -> Self {
        PlanError::Unsupported {
            field: field.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    Mount,
    Uts,
    Ipc,
    User,
    Pid,
    Net,
    Cgroup,
    Time,
}

impl NsKind {
    pub fn flag(self) -> nix::sched::CloneFlags {
        use nix::sched::CloneFlags as F;
        match self {
            NsKind::Mount => F::CLONE_NEWNS,
            NsKind::Uts => F::CLONE_NEWUTS,
            NsKind::Ipc => F::CLONE_NEWIPC,
            NsKind::User => F::CLONE_NEWUSER,
            NsKind::Pid => F::CLONE_NEWPID,
            NsKind::Net => F::CLONE_NEWNET,
            NsKind::Cgroup => F::CLONE_NEWCGROUP,
            NsKind::Time => F::from_bits_retain(libc::CLONE_NEWTIME),
        }
    }

    /// The runtime-spec name, also the name under /proc/<pid>/ns/ (but for "mnt" and "net").
    pub fn spec_name(self) -> &'static str {
        match self {
            NsKind::Mount => "mount",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::User => "user",
            NsKind::Pid => "pid",
            NsKind::Net => "network",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    fn from_spec(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::Mount => NsKind::Mount,
            LinuxNamespaceType::Uts => NsKind::Uts,
            LinuxNamespaceType::Ipc => NsKind::Ipc,
            LinuxNamespaceType::User => NsKind::User,
            LinuxNamespaceType::Pid => NsKind::Pid,
            LinuxNamespaceType::Network => NsKind::Net,
            LinuxNamespaceType::Cgroup => NsKind::Cgroup,
            LinuxNamespaceType::Time => NsKind::Time,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// Namespaces the container gets fresh.
    pub new: Vec<NsKind>,
    /// Namespaces the container joins, by path.
    pub join: Vec<(NsKind, PathBuf)>,
}

impl Namespaces {
    pub fn is_new(&self, k: NsKind) -> bool {
        self.new.contains(&k)
    }
    pub fn joined(&self, k: NsKind) -> Option<&Path> {
        self.join
            .iter()
            .find(|(j, _)| *j == k)
            .map(|(_, p)| p.as_path())
    }
    /// A new pid namespace for a container that joins a user namespace by path must belong to
    /// that user namespace (or its procfs cannot be mounted), so the init makes it once it has
    /// joined, and forks into it, rather than the clone.
    pub fn pid_after_user_join(&self) -> bool {
        self.is_new(NsKind::Pid) && self.joined(NsKind::User).is_some()
    }
    /// Private to the container, whether new or joined (so not the runtime's own).
    fn private(&self, k: NsKind) -> bool {
        self.is_new(k) || self.joined(k).is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The maps as /proc/PID/uid_map (and gid_map) takes them, all in one write.
pub fn id_map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeOffset {
    pub clock: &'static str,
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub source: Option<PathBuf>,
    /// Absolute, inside the container.
    pub dest: PathBuf,
    pub fstype: Option<String>,
    pub options: MountOptions,
}

impl MountPlan {
    pub fn is_bind(&self) -> bool {
        self.options.flags.contains(MsFlags::MS_BIND)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DevKind {
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    pub kind: DevKind,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One devices-cgroup rule, rendered as v1 writes it ("c 1:3 rwm").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    pub fn v1_line(&self) -> String {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        if self.kind == 'a' && self.major.is_none() && self.minor.is_none() && self.access == "rwm"
        {
            return "a".into();
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSet {
    pub prestart: Vec<Hook>,
    pub create_runtime: Vec<Hook>,
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub caps: CapSets,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    /// The AppArmor profile the process is confined by from its execve on.
    pub apparmor_profile: Option<String>,
    /// The SELinux context the process runs in from its execve on (and its session keyring has).
    pub selinux_label: Option<String>,
}

/// What the command line adds to the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub console_socket: Option<PathBuf>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub root_readonly: bool,
    pub annotations: BTreeMap<String, String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub namespaces: Namespaces,
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub time_offsets: Vec<TimeOffset>,
    pub mounts: Vec<MountPlan>,
    pub rootfs_propagation: MsFlags,
    pub devices: Vec<Device>,
    pub masked_paths: Vec<PathBuf>,
    /// The SELinux context of the filesystems mounted for the container (context=).
    pub mount_label: Option<String>,
    pub readonly_paths: Vec<PathBuf>,
    pub sysctls: Vec<(String, String)>,
    pub process: ProcessPlan,
    pub hooks: HookSet,
    pub cgroups_path: String,
    /// The path is chitin's default (so its parent is chitin's too).
    pub cgroups_path_default: bool,
    /// `linux.resources` but the device rules.
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    pub device_rules: Vec<DeviceRule>,
    pub seccomp: Option<crate::seccomp::Profile>,
    pub opts: RunOptions,
}

/// Container ids become directory names under --root: keep them to a safe alphabet.
pub fn validate_id(id: &str) -> Result<(), PlanError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PlanError::Options(format!("invalid container id {id:?}")))
    }
}

fn absolute(field: &str, p: &Path) -> Result<PathBuf, PlanError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Err(PlanError::field(
            field,
            format!("{:?} is not an absolute path", p),
        ))
    }
}

fn id_maps(
    field: &str,
    v: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>,
) -> Result<Vec<IdMap>, PlanError> {
    let maps: Vec<IdMap> = v
        .into_iter()
        .flatten()
        .map(|m| IdMap {
            container: m.container_id(),
            host: m.host_id(),
            size: m.size(),
        })
        .collect();
    // What the kernel refuses when the map is written, refused here before anything is made.
    if maps.len() > MAX_ID_RANGES {
        return Err(PlanError::field(
            field,
            format!(
                "{} ranges; the kernel takes at most {MAX_ID_RANGES}",
                maps.len()
            ),
        ));
    }
    for (i, m) in maps.iter().enumerate() {
        if m.size == 0 {
            return Err(PlanError::field(
                &format!("{field}[{i}].size"),
                "must be greater than zero",
            ));
        }
        for (name, first) in [("containerID", m.container), ("hostID", m.host)] {
            if first.checked_add(m.size).is_none() {
                return Err(PlanError::field(
                    &format!("{field}[{i}]"),
                    format!("{name} {first} + size {} passes 4294967295", m.size),
                ));
            }
        }
        // Earlier ranges passed the check above, so these sums cannot wrap.
        let overlap = |a: u32, b: u32, o: &IdMap| a < b + o.size && b < a + m.size;
        if let Some(j) = maps[..i]
            .iter()
            .position(|o| overlap(m.container, o.container, o) || overlap(m.host, o.host, o))
        {
            return Err(PlanError::field(
                &format!("{field}[{i}]"),
                format!("overlaps {field}[{j}]"),
            ));
        }
    }
    // The kernel takes the map in one write shorter than a page.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    let len = id_map_text(&maps).len();
    if len >= page {
        return Err(PlanError::field(
            field,
            format!("{len} bytes as a map; the kernel takes less than a page ({page})"),
        ));
    }
    Ok(maps)
}

/// The kernel's limit on the lines of a uid_map or gid_map (UID_GID_MAP_MAX_EXTENTS).
const MAX_ID_RANGES: usize = 340;

/// runc's default devices, created in every container unless the config names the same path.
fn default_devices() -> Vec<Device> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| Device {
        path: p.into(),
        kind: DevKind::Char,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Sysctls are only allowed when the namespace they belong to is the container's own.
fn check_sysctl(key: &str, ns: &Namespaces) -> Result<(), PlanError> {
    let field = format!("linux.sysctl[{key:?}]");
    if key.is_empty()
        || key.contains("..")
        || key.starts_with(['.', '/'])
        || key.contains('/') && key.contains('.')
    {
        return Err(PlanError::field(&field, "not a valid sysctl name"));
    }
    let ipc = matches!(
        key,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || key.starts_with("fs.mqueue.");
    let (kind, ok) = if ipc {
        (NsKind::Ipc, ns.private(NsKind::Ipc))
    } else if key.starts_with("net.") {
        (NsKind::Net, ns.private(NsKind::Net))
    } else if matches!(key, "kernel.hostname" | "kernel.domainname") {
        (NsKind::Uts, ns.private(NsKind::Uts))
    } else {
        return Err(PlanError::field(
            &field,
            "not a namespaced sysctl; it would change the host",
        ));
    };
    if ok {
        Ok(())
    } else {
        Err(PlanError::field(
            &field,
            format!("needs a private {} namespace", kind.spec_name()),
        ))
    }
}

fn hooks(spec: &Spec) -> Result<HookSet, PlanError> {
    let Some(h) = spec.hooks() else {
        return Ok(HookSet::default());
    };
    let conv =
        |name: &str, list: &Option<Vec<oci_spec::runtime::Hook>>| -> Result<Vec<Hook>, PlanError> {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(i, hk)| {
                    let field = format!("hooks.{name}[{i}]");
                    let path = absolute(&format!("{field}.path"), hk.path())?;
                    let timeout = match hk.timeout() {
                        Some(t) if t <= 0 => {
                            return Err(PlanError::field(
                                &format!("{field}.timeout"),
                                "must be greater than zero",
                            ));
                        }
                        Some(t) => Some(Duration::from_secs(t as u64)),
                        None => None,
                    };
                    Ok(Hook {
                        path,
                        args: hk.args().clone().unwrap_or_default(),
                        env: hk.env().clone().unwrap_or_default(),
                        timeout,
                    })
                })
                .collect()
        };
    #[allow(deprecated)]
    let prestart = conv("prestart", h.prestart())?;
    Ok(HookSet {
        prestart,
        create_runtime: conv("createRuntime", h.create_runtime())?,
        create_container: conv("createContainer", h.create_container())?,
        start_container: conv("startContainer", h.start_container())?,
        poststart: conv("poststart", h.poststart())?,
        poststop: conv("poststop", h.poststop())?,
    })
}

/// Reads and parses `<bundle>/config.json`, naming the JSON path of any type error.
/// Reads and parses `<bundle>/config.json`, naming the JSON path of any type error. The
/// `linux.seccomp` object comes back apart, for `seccomp::from_json`.
pub fn read_spec(bundle: &Path) -> Result<(Spec, Option<serde_json::Value>), PlanError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|source| PlanError::Bundle {
        path: path.clone(),
        source,
    })?;
    parse_spec(&bytes, &path)
}

/// config.json's bytes (read from `path`) as the spec, and its seccomp section apart (chitin
/// parses that itself).
pub fn parse_spec(
    bytes: &[u8],
    path: &Path,
) -> Result<(Spec, Option<serde_json::Value>), PlanError> {
    let parse = |e: serde_path_to_error::Error<serde_json::Error>| {
        let at = e.path().to_string();
        let msg = if at == "." {
            e.inner().to_string()
        } else {
            format!("{at}: {}", e.inner())
        };
        PlanError::Parse {
            path: path.to_owned(),
            msg,
        }
    };
    let mut value: serde_json::Value =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
            .map_err(parse)?;
    check_top_level(&value)?;
    if let Some(p) = value.get_mut("process") {
        drop_unknown_capabilities(p);
    }
    let seccomp = value
        .get_mut("linux")
        .and_then(|l| l.as_object_mut())
        .and_then(|l| l.remove("seccomp"));
    let spec = serde_path_to_error::deserialize(value).map_err(parse)?;
    Ok((spec, seccomp))
}

/// The other platforms' sections are refused (chitin runs Linux containers: such a config
/// was not written for it); keys the runtime-spec does not have are ignored with a warning.
fn check_top_level(spec: &serde_json::Value) -> Result<(), PlanError> {
    const KNOWN: [&str; 9] = [
        "ociVersion",
        "process",
        "root",
        "hostname",
        "domainname",
        "mounts",
        "hooks",
        "annotations",
        "linux",
    ];
    for key in spec.as_object().into_iter().flat_map(|m| m.keys()) {
        match key.as_str() {
            k if KNOWN.contains(&k) => {}
            k @ ("windows" | "solaris" | "vm" | "zos") => {
                return Err(PlanError::field(
                    k,
                    "chitin is a Linux runtime: this section is another platform's",
                ));
            }
            k => crate::logger::warn(&format!("config.json: unknown key {k:?} ignored")),
        }
    }
    Ok(())
}

/// Capability names this build does not know (a newer kernel's) are left out with a warning, as
/// runc 1.2 does, rather than refusing a config written for a newer runtime.
pub fn drop_unknown_capabilities(process: &mut serde_json::Value) {
    let Some(sets) = process
        .pointer_mut("/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return;
    };
    for (set, names) in sets.iter_mut() {
        let Some(names) = names.as_array_mut() else {
            continue;
        };
        names.retain(|n| {
            let known = n
                .as_str()
                .is_none_or(|n| n.parse::<caps::Capability>().is_ok());
            if !known {
                crate::logger::warn(&format!(
                    "process.capabilities.{set}: unknown capability {n} ignored"
                ));
            }
            known
        });
    }
}

impl Plan {
    /// Loads the bundle and builds the plan. Reads files; changes nothing.
    pub fn load(bundle: &Path, id: &str, opts: RunOptions) -> Result<Plan, PlanError> {
        validate_id(id)?;
        let bundle = std::fs::canonicalize(bundle).map_err(|source| PlanError::Bundle {
            path: bundle.into(),
            source,
        })?;
        let (spec, seccomp) = read_spec(&bundle)?;
        Plan::from_spec(spec, seccomp, &bundle, id, opts)
    }

    pub fn from_spec(
        spec: Spec,
        seccomp: Option<serde_json::Value>,
        bundle: &Path,
        id: &str,
        opts: RunOptions,
    ) -> Result<Plan, PlanError> {
        let version = spec.version();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        match major {
            None => {
                return Err(PlanError::field(
                    "ociVersion",
                    format!("{version:?} is not a version"),
                ));
            }
            Some(m) if m != OCI_MAJOR => {
                return Err(PlanError::field(
                    "ociVersion",
                    format!("{version}: chitin implements runtime-spec {OCI_MAJOR}.x"),
                ));
            }
            Some(_) => {}
        }

        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| PlanError::field("root", "missing"))?;
        let rootfs = bundle.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs)
            .map_err(|e| PlanError::field("root.path", format!("{}: {e}", rootfs.display())))?;
        if !rootfs.is_dir() {
            return Err(PlanError::field(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ));
        }

        let linux = spec.linux().clone().unwrap_or_default();
        refuse_unsupported(&spec)?;

        // Namespaces.
        let mut namespaces = Namespaces::default();
        let mut seen = HashSet::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            let kind = NsKind::from_spec(ns.typ());
            if !seen.insert(kind) {
                return Err(PlanError::field(
                    &format!("linux.namespaces[{i}]"),
                    format!("{} namespace given twice", kind.spec_name()),
                ));
            }
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    let p = absolute(&format!("linux.namespaces[{i}].path"), p)?;
                    if !p.exists() {
                        return Err(PlanError::field(
                            &format!("linux.namespaces[{i}].path"),
                            format!("{} does not exist", p.display()),
                        ));
                    }
                    namespaces.join.push((kind, p));
                }
                _ => namespaces.new.push(kind),
            }
        }

        if namespaces.is_new(NsKind::User) {
            // The init starts inside its new user namespace, which owns none of the host's.
            if let Some((k, _)) = namespaces
                .join
                .iter()
                .find(|(k, _)| !matches!(k, NsKind::Pid | NsKind::Time))
            {
                return Err(PlanError::field(
                    "linux.namespaces",
                    format!(
                        "joining a {} namespace by path while creating a user namespace is not supported",
                        k.spec_name()
                    ),
                ));
            }
        }
        let uid_map = id_maps("linux.uidMappings", linux.uid_mappings().as_ref())?;
        let gid_map = id_maps("linux.gidMappings", linux.gid_mappings().as_ref())?;
        if namespaces.is_new(NsKind::User) && (uid_map.is_empty() || gid_map.is_empty()) {
            return Err(PlanError::field(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
        if !namespaces.is_new(NsKind::User) && (!uid_map.is_empty() || !gid_map.is_empty()) {
            match namespaces.joined(NsKind::User) {
                Some(path) => userns::check_joined(path, &uid_map, &gid_map)?,
                None => {
                    return Err(PlanError::field(
                        "linux.uidMappings",
                        "mappings need a user namespace of the container's own",
                    ));
                }
            }
        }

        let mut time_offsets = Vec::new();
        for (clock, off) in linux.time_offsets().iter().flatten() {
            let clock = match clock.as_str() {
                "monotonic" => "monotonic",
                "boottime" => "boottime",
                other => {
                    return Err(PlanError::field(
                        "linux.timeOffsets",
                        format!("unknown clock {other:?}"),
                    ));
                }
            };
            time_offsets.push(TimeOffset {
                clock,
                secs: off.secs().unwrap_or(0),
                nanos: off.nanosecs().unwrap_or(0),
            });
        }
        if !time_offsets.is_empty() && !namespaces.is_new(NsKind::Time) {
            return Err(PlanError::field(
                "linux.timeOffsets",
                "offsets need a new time namespace",
            ));
        }

        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
            && !namespaces.private(NsKind::Uts)
        {
            return Err(PlanError::field(
                "hostname",
                "setting the hostname needs a private uts namespace",
            ));
        }
        if spec.domainname().as_deref().is_some_and(|h| !h.is_empty())
            && !namespaces.private(NsKind::Uts)
        {
            return Err(PlanError::field(
                "domainname",
                "setting the domainname needs a private uts namespace",
            ));
        }

        // Mounts.
        let mount_label = selinux::mount_label(linux.mount_label().as_deref())?;
        let mut mounts = Vec::new();
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let field = format!("mounts[{i}]");
            let dest = absolute(&format!("{field}.destination"), m.destination())?;
            let options = mounts::parse(m.options().as_deref().unwrap_or_default())
                .map_err(|r| PlanError::field(&format!("{field}.options"), r))?;
            if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
                return Err(PlanError::unsupported(&format!("{field}.uidMappings")));
            }
            let mut fstype = m.typ().clone().filter(|t| !t.is_empty());
            let mut options = options;
            if fstype.as_deref() == Some("bind") {
                // runc treats type "bind" as a bind mount even without the option.
                options.flags.insert(MsFlags::MS_BIND);
                fstype = None;
            }
            let source = m.source().clone();
            if options.copy_up && fstype.as_deref() != Some("tmpfs") {
                return Err(PlanError::field(
                    &format!("{field}.options"),
                    "tmpcopyup is for tmpfs mounts",
                ));
            }
            if options.flags.contains(MsFlags::MS_BIND) {
                // mount(2) ignores data on a bind: an option chitin does not know would do nothing.
                if !options.data.is_empty() {
                    return Err(PlanError::field(
                        &format!("{field}.options"),
                        format!("{:?}: not an option of a bind mount", options.data),
                    ));
                }
                let src = source.as_ref().ok_or_else(|| {
                    PlanError::field(&format!("{field}.source"), "a bind mount needs a source")
                })?;
                let src = if src.is_absolute() {
                    src.clone()
                } else {
                    bundle.join(src)
                };
                // A source below an earlier mount's destination is made by that mount: it is
                // looked for when its turn comes, as runc does (and inside the rootfs).
                let made_earlier = mounts.iter().any(|e: &MountPlan| {
                    src.starts_with(rootfs.join(crate::fsutil::relative(&e.dest)))
                });
                if !src.exists() && !made_earlier {
                    return Err(PlanError::field(
                        &format!("{field}.source"),
                        format!("{} does not exist", src.display()),
                    ));
                }
                mounts.push(MountPlan {
                    source: Some(src),
                    dest,
                    fstype,
                    options,
                });
            } else {
                if fstype.is_none() {
                    return Err(PlanError::field(
                        &format!("{field}.type"),
                        "missing (and not a bind mount)",
                    ));
                }
                // As runc: procfs, sysfs and cgroupfs keep the labels the policy gives them;
                // mqueue is labelled once mounted (init::rootfs).
                if !matches!(
                    fstype.as_deref(),
                    Some("proc" | "sysfs" | "cgroup" | "cgroup2" | "mqueue")
                ) {
                    options.data = selinux::mount_data(&options.data, mount_label.as_deref());
                }
                mounts.push(MountPlan {
                    source,
                    dest,
                    fstype,
                    options,
                });
            }
        }

        let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
            Some(p) => mounts::propagation_flag(p).ok_or_else(|| {
                PlanError::field(
                    "linux.rootfsPropagation",
                    format!("unknown propagation {p:?}"),
                )
            })?,
        };

        // Devices.
        let mut devices = Vec::new();
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            let field = format!("linux.devices[{i}]");
            let path = absolute(&format!("{field}.path"), d.path())?;
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => DevKind::Char,
                LinuxDeviceType::B => DevKind::Block,
                LinuxDeviceType::P => DevKind::Fifo,
                LinuxDeviceType::A => {
                    return Err(PlanError::field(
                        &format!("{field}.type"),
                        "\"a\" is not a device type",
                    ));
                }
            };
            if d.major() < 0 || d.minor() < 0 {
                return Err(PlanError::field(
                    &field,
                    "major and minor must not be negative",
                ));
            }
            devices.push(Device {
                path,
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }
        for d in default_devices() {
            if !devices.iter().any(|c| c.path == d.path) {
                devices.push(d);
            }
        }

        let paths = |field: &str, v: &Option<Vec<String>>| -> Result<Vec<PathBuf>, PlanError> {
            v.iter()
                .flatten()
                .enumerate()
                .map(|(i, p)| absolute(&format!("{field}[{i}]"), Path::new(p)))
                .collect()
        };
        let masked_paths = paths("linux.maskedPaths", linux.masked_paths())?;
        let readonly_paths = paths("linux.readonlyPaths", linux.readonly_paths())?;
        let restricted = !(masked_paths.is_empty() && readonly_paths.is_empty());
        if restricted && !namespaces.is_new(NsKind::Mount) {
            // runc's words: without a mount namespace of its own the container's mounts are
            // the caller's, and runc refuses to mask in them.
            let field = match masked_paths.is_empty() {
                true => "linux.readonlyPaths",
                false => "linux.maskedPaths",
            };
            return Err(PlanError::field(
                field,
                "unable to restrict sys entries without a private MNT namespace",
            ));
        }

        let mut sysctls: Vec<(String, String)> = linux
            .sysctl()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        sysctls.sort();
        for (k, _) in &sysctls {
            check_sysctl(k, &namespaces)?;
        }

        let p = spec
            .process()
            .as_ref()
            .ok_or_else(|| PlanError::field("process", "missing"))?;
        let process = plan_process(p, &rootfs, &opts)?;

        // Cgroups: placement here; the resources other than devices arrive with the cgroups work.
        let cgroups_path = match linux.cgroups_path() {
            Some(p) if !p.as_os_str().is_empty() => {
                let s = p
                    .to_str()
                    .ok_or_else(|| PlanError::field("linux.cgroupsPath", "not UTF-8"))?;
                if s.split('/').any(|c| c == "..") {
                    return Err(PlanError::field(
                        "linux.cgroupsPath",
                        "must not contain \"..\"",
                    ));
                }
                if s.contains(':') {
                    return Err(PlanError::field(
                        "linux.cgroupsPath",
                        "systemd slice:prefix:name paths need --systemd-cgroup, which chitin does not support",
                    ));
                }
                s.to_owned()
            }
            _ => format!("{DEFAULT_CGROUP_PARENT}/{id}"),
        };
        let cgroups_path_default = cgroups_path == format!("{DEFAULT_CGROUP_PARENT}/{id}");
        let mut device_rules = Vec::new();
        // Device rules become their own list; the rest is checked against the host's cgroup
        // layout (cgroup::Layout::check) and written by cgroup::resources.
        let resources = linux.resources().clone().map(|mut r| {
            r.set_devices(None);
            r
        });
        if let Some(res) = linux.resources() {
            for (i, d) in res.devices().iter().flatten().enumerate() {
                let kind = match d.typ() {
                    None | Some(LinuxDeviceType::A) => 'a',
                    Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
                    Some(LinuxDeviceType::B) => 'b',
                    Some(LinuxDeviceType::P) => {
                        return Err(PlanError::field(
                            &format!("linux.resources.devices[{i}].type"),
                            "\"p\" has no cgroup rule",
                        ));
                    }
                };
                // As runc: letters other than r, w and m are ignored, and a rule left with none
                // grants or denies nothing.
                let given = d.access().clone().unwrap_or_else(|| "rwm".into());
                let access: String = "rwm".chars().filter(|c| given.contains(*c)).collect();
                if access.is_empty() {
                    continue;
                }
                let whole =
                    kind == 'a' && d.major().is_none() && d.minor().is_none() && access == "rwm";
                device_rules.push(DeviceRule {
                    allow: d.allow(),
                    kind: if whole { 'a' } else { kind },
                    major: d.major(),
                    minor: d.minor(),
                    access,
                });
            }
        }

        Ok(Plan {
            id: id.to_owned(),
            bundle: bundle.to_path_buf(),
            rootfs,
            root_readonly: root.readonly().unwrap_or(false),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
            domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
            namespaces,
            uid_map,
            gid_map,
            time_offsets,
            mounts,
            rootfs_propagation,
            devices,
            masked_paths,
            mount_label,
            readonly_paths,
            sysctls,
            process,
            hooks: hooks(&spec)?,
            seccomp: seccomp.map(crate::seccomp::from_json).transpose()?,
            cgroups_path,
            cgroups_path_default,
            resources,
            device_rules,
            opts,
        })
    }
}

/// The process part of a config (also `exec --process`): checked and in plain values.
pub fn plan_process(
    p: &oci_spec::runtime::Process,
    rootfs: &Path,
    opts: &RunOptions,
) -> Result<ProcessPlan, PlanError> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(PlanError::field("process.args", "must name a program"));
    }
    let cwd = absolute("process.cwd", p.cwd())?;
    let mut env = p.env().clone().unwrap_or_default();
    if let Some(i) = env
        .iter()
        .position(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(PlanError::field(
            &format!("process.env[{i}]"),
            "not of the form KEY=VALUE",
        ));
    }
    if opts.listen_fds > 0 {
        env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
        env.push(format!("LISTEN_FDS={}", opts.listen_fds));
        env.push("LISTEN_PID=1".into());
    }
    let user = p.user();
    let (mut uid, mut gid) = (user.uid(), user.gid());
    if let Some(name) = user.username().as_deref().filter(|n| !n.is_empty()) {
        (uid, gid) = process::lookup_user(rootfs, name)?;
    }
    let terminal = p.terminal().unwrap_or(false);
    if terminal && opts.detach && opts.console_socket.is_none() {
        return Err(PlanError::Options(
            "process.terminal is true but the container detaches: give --console-socket to receive the pty".into(),
        ));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(PlanError::Options(
            "--console-socket needs process.terminal to be true".into(),
        ));
    }
    let console_size = p.console_size().as_ref().map(|b| {
        (
            b.height().min(u16::MAX as u64) as u16,
            b.width().min(u16::MAX as u64) as u16,
        )
    });
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(PlanError::field(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        uid,
        gid,
        umask: user.umask(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        caps: process::capabilities(p.capabilities().as_ref())?,
        rlimits: process::rlimits(p.rlimits().as_ref())?,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        terminal,
        console_size,
        apparmor_profile: apparmor_profile(
            "process.apparmorProfile",
            p.apparmor_profile().as_deref(),
        )?,
        selinux_label: selinux::label("process.selinuxLabel", p.selinux_label().as_deref())?,
    })
}

/// True if the kernel runs AppArmor.
fn apparmor_enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.starts_with(b"Y"))
}

/// A profile to confine the process by; refused where AppArmor is not running, since the
/// process would otherwise run unconfined while its config says it is not.
pub fn apparmor_profile(field: &str, profile: Option<&str>) -> Result<Option<String>, PlanError> {
    match profile.filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) if p.contains(['\n', '\0']) => Err(PlanError::field(field, "not a profile name")),
        Some(_) if !apparmor_enabled() => Err(PlanError::field(
            field,
            "AppArmor is not enabled in this kernel",
        )),
        Some(p) => Ok(Some(p.to_owned())),
    }
}

/// Fields chitin cannot honour yet are refused, never silently ignored.
fn refuse_unsupported(spec: &Spec) -> Result<(), PlanError> {
    if let Some(l) = spec.linux() {
        let checks = [
            ("linux.intelRdt", l.intel_rdt().is_some()),
            ("linux.personality", l.personality().is_some()),
            ("linux.memoryPolicy", l.memory_policy().is_some()),
            (
                "linux.netDevices",
                l.net_devices().as_ref().is_some_and(|v| !v.is_empty()),
            ),
        ];
        if let Some((f, _)) = checks.iter().find(|(_, set)| *set) {
            return Err(PlanError::unsupported(f));
        }
    }
    if let Some(p) = spec.process() {
        let checks = [
            ("process.ioPriority", p.io_priority().is_some()),
            ("process.scheduler", p.scheduler().is_some()),
            ("process.execCPUAffinity", p.exec_cpu_affinity().is_some()),
        ];
        if let Some((f, _)) = checks.iter().find(|(_, set)| *set) {
            return Err(PlanError::unsupported(f));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
