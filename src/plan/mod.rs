//! The plan: config.json and the command line, validated and turned into plain data before the
//! first side effect. Everything that can be wrong with the input is found here, with an error
//! that names the field; applying the plan is then a straight sequence (see `container::create`).

//!
//! Each section has its planner (namespaces, idmap, mounts, devices, process, cgroups, hooks,
//! lsm); `check` holds the rules across sections, run on the whole plan. Every read of the host
//! goes through `host::Host`, so that tests can give another.

pub mod cgroups;
mod check;
pub mod config;
mod devices;
pub mod exec;
pub mod hardening;
mod hooks;
pub mod host;
mod idmap;
pub mod intel_rdt;
pub mod lsm;
mod mount_idmap;
pub mod mount_options;
mod mounts;
mod namespaces;
pub mod net_devices;
mod options;
pub mod perf_profile;
pub mod process;
pub mod resources;
mod rootless;
pub mod topology;
pub mod tuning;
mod userns;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

pub use cgroups::Driver;
pub use config::Config;
pub use devices::{DevKind, Device, DeviceRule};
pub use hooks::{Hook, HookSet};
use host::Host;
pub use idmap::{IdMap, id_map_text};
pub use mount_idmap::MountIdmap;
pub use mount_options::MountOptions;
pub use mounts::MountPlan;
pub use namespaces::{Namespaces, NsKind, TimeOffset};
pub use net_devices::NetDevice;
pub use options::RunOptions;
pub use process::{CapSets, ProcessPlan, Rlimit};
pub use rootless::MapWith;
pub use userns::parse as parse_id_map;

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
    #[error("saved config {path}: {source}")]
    Saved {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config.json: {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("{0}")]
    Options(String),
    #[error("config.json: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

impl From<resources::Invalid> for PlanError {
    fn from(e: resources::Invalid) -> Self {
        PlanError::field(&format!("linux.resources.{}", e.field), e.reason)
    }
}

impl PlanError {
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        PlanError::Field {
            field: field.to_owned(),
            reason: reason.into(),
        }
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
    /// How the runtime writes the id maps of a new user namespace.
    pub map_with: MapWith,
    pub time_offsets: Vec<TimeOffset>,
    pub mounts: Vec<MountPlan>,
    pub rootfs_propagation: MsFlags,
    pub devices: Vec<Device>,
    /// Device nodes are the host's, bound: mknod is refused in a user namespace and without the
    /// host's root (rootless mode).
    pub devices_by_bind: bool,
    /// Host interfaces moved into the container's network namespace (by `create`'s parent).
    pub net_devices: Vec<NetDevice>,
    pub masked_paths: Vec<PathBuf>,
    /// The SELinux context of the filesystems mounted for the container (context=).
    pub mount_label: Option<String>,
    pub readonly_paths: Vec<PathBuf>,
    pub sysctls: Vec<(String, String)>,
    pub process: ProcessPlan,
    pub hooks: HookSet,
    pub cgroup: cgroups::CgroupPlan,
    /// `linux.resources` but the device rules.
    pub resources: Option<resources::Resources>,
    pub device_rules: Vec<DeviceRule>,
    /// linux.intelRdt: the resctrl group and what to write to it.
    pub intel_rdt: Option<intel_rdt::RdtPlan>,
    pub seccomp: Option<crate::seccomp::Profile>,
    /// A security profile's filter, loaded with the config's and stricter where they differ.
    pub seccomp_beneath: Option<crate::seccomp::Profile>,
    /// A security profile's nosuid and nodev on the rootfs mount.
    pub root_nosuid_nodev: bool,
    /// What providers asked for beyond the config (a measurement), done by `start`.
    pub actions: Vec<crate::edits::Action>,
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

impl Plan {
    /// Loads the bundle, applies the built-in providers' edits (crate::edits) and builds the
    /// plan of the effective config. Reads files; changes nothing.
    pub fn load(
        bundle: &Path,
        id: &str,
        providers: &[Box<dyn crate::edits::Provider>],
        driver: cgroups::Driver,
    ) -> Result<(Config, Plan), PlanError> {
        validate_id(id)?;
        let host = host::RealHost;
        let bundle = host
            .canonicalize(bundle)
            .map_err(|source| PlanError::Bundle {
                path: bundle.into(),
                source,
            })?;
        let mut config = Config::read(&bundle)?;
        let applied = crate::edits::apply(&mut config, providers)?;
        let mut plan = Plan::new(&config, &bundle, id, &host, driver)
            .map_err(|e| applied.provenance.name_origin(e))?;
        plan.actions = applied.actions;
        check::actions(&plan)?;
        Ok((config, plan))
    }

    /// The RDMA devices that move into the container's network namespace (exclusive mode),
    /// with the annotation that asked for each.
    pub fn rdma_namespaces(&self) -> Vec<(String, String)> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                crate::edits::Action::RdmaNamespace { device, annotation } => {
                    Some((device.clone(), annotation.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Devices move into the container's network namespace once the init has made it.
    pub fn moves_into_netns(&self) -> bool {
        let rdma =
            |a: &crate::edits::Action| matches!(a, crate::edits::Action::RdmaNamespace { .. });
        !self.net_devices.is_empty() || self.actions.iter().any(rdma)
    }

    /// The plan of a config, section by section, then the rules across sections.
    pub fn new(
        config: &Config,
        bundle: &Path,
        id: &str,
        host: &dyn Host,
        driver: cgroups::Driver,
    ) -> Result<Plan, PlanError> {
        let spec = &config.spec;
        check::version(spec.version())?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| PlanError::field("root", "missing"))?;
        let rootfs = rootfs(bundle, root.path(), host)?;
        // Not oci-spec's Default, which has namespaces and masks: a config without a linux
        // section has none, as runc reads it.
        let linux = spec.linux().clone().unwrap_or_else(config::empty);
        let (uid_map, gid_map) = idmap::plan(&linux, host)?;
        let mount_label = lsm::mount_label(host, linux.mount_label().as_deref())?;
        let namespaces = namespaces::plan(&linux, host)?;
        let devices_by_bind = !host.is_root() || namespaces.is_private(NsKind::User);
        // Read only for a mount that takes them: a joined namespace's are found through /proc.
        let idmap_alone = |m: &oci_spec::runtime::Mount| {
            let opts = m.options().as_deref().unwrap_or_default();
            m.uid_mappings().is_none() && opts.iter().any(|o| o == "idmap" || o == "ridmap")
        };
        let userns = (spec.mounts().iter().flatten().any(idmap_alone))
            .then(|| userns::container_maps(&namespaces, &uid_map, &gid_map, host))
            .flatten();
        let at = mounts::Paths {
            bundle,
            rootfs: &rootfs,
            host,
            userns: userns.as_ref(),
        };
        let mounts = mounts::plan(
            spec.mounts().as_deref().unwrap_or_default(),
            &at,
            mount_label.as_deref(),
        )?;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| PlanError::field("process", "missing"))?;
        let mut process = process::plan(process, Some(&linux), &rootfs, host)?;
        // The runtime-spec: execCPUAffinity is not for the container's init.
        process.tuning.affinity = tuning::ExecAffinity::default();
        let user = (!host.is_root()).then(|| host.host_uid());
        let cgroup = cgroups::plan(&linux, id, driver, user)?;
        let security = hardening::Named::of(spec)?;
        let mut plan = Plan {
            id: id.to_owned(),
            bundle: bundle.to_path_buf(),
            process,
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
            net_devices: net_devices::plan(&linux, &namespaces, host)?,
            namespaces,
            uid_map,
            gid_map,
            map_with: MapWith::Root,
            time_offsets: namespaces::time_offsets(&linux)?,
            mounts,
            rootfs_propagation: mounts::rootfs_propagation(&linux)?,
            devices: devices::nodes(&linux)?,
            devices_by_bind,
            masked_paths: paths("linux.maskedPaths", linux.masked_paths())?,
            mount_label,
            readonly_paths: paths("linux.readonlyPaths", linux.readonly_paths())?,
            sysctls: sysctls(&linux),
            hooks: hooks::plan(spec)?,
            cgroup,
            resources: resources(&linux)?,
            device_rules: devices::rules(&linux)?,
            intel_rdt: (linux.intel_rdt().as_ref())
                .map(|r| intel_rdt::plan(r, id, host))
                .transpose()?,
            seccomp: config
                .seccomp
                .clone()
                .map(crate::seccomp::from_json)
                .transpose()?,
            seccomp_beneath: (security.as_ref())
                .map(|s| s.beneath(chitin_arch::Arch::native()))
                .transpose()?,
            root_nosuid_nodev: security.is_some(),
            actions: Vec::new(),
        };
        check::plan(&plan, host)?;
        plan.map_with = rootless::check(&plan, host)?;
        Ok(plan)
    }
}

/// linux.sysctl, in a stable order.
fn sysctls(linux: &oci_spec::runtime::Linux) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    v.sort();
    v
}

/// linux.resources but the device rules (their own list), its values checked; whether the host's
/// cgroup layout can take them is cgroup::Layout::check's.
fn resources(linux: &oci_spec::runtime::Linux) -> Result<Option<resources::Resources>, PlanError> {
    match linux.resources() {
        Some(r) => Ok(Some(resources::Resources::from_oci(r)?)),
        None => Ok(None),
    }
}

/// root.path, resolved against the bundle: an existing directory.
fn rootfs(bundle: &Path, path: &Path, host: &dyn Host) -> Result<PathBuf, PlanError> {
    let rootfs = bundle.join(path);
    let rootfs = host
        .canonicalize(&rootfs)
        .map_err(|e| PlanError::field("root.path", format!("{}: {e}", rootfs.display())))?;
    if !host.is_dir(&rootfs) {
        return Err(PlanError::field(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    Ok(rootfs)
}

/// Absolute paths inside the container (maskedPaths, readonlyPaths).
fn paths(field: &str, v: &Option<Vec<String>>) -> Result<Vec<PathBuf>, PlanError> {
    v.iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| absolute(&format!("{field}[{i}]"), Path::new(p)))
        .collect()
}

#[cfg(test)]
mod tests;
