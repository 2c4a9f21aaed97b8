//! `mounts` and linux.rootfsPropagation: each mount checked, bind sources resolved against the
//! bundle and found, filesystems other than the kernel's own given the mount label.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{Linux, Mount};

use super::host::Host;
use super::mount_idmap::{self, MountIdmap};
use super::mount_options::{self, MountOptions};
use super::{IdMap, PlanError, absolute};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub source: Option<PathBuf>,
    /// Absolute, inside the container.
    pub dest: PathBuf,
    pub fstype: Option<String>,
    pub options: MountOptions,
    pub idmap: Option<MountIdmap>,
}

impl MountPlan {
    pub fn is_bind(&self) -> bool {
        self.options.flags.contains(MsFlags::MS_BIND)
    }
}

/// Where the mounts are resolved: the bundle (relative bind sources) and the rootfs.
pub struct Paths<'a> {
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub host: &'a dyn Host,
    /// The maps of the container's user namespace, where it has one (for "idmap" alone).
    pub userns: Option<&'a (Vec<IdMap>, Vec<IdMap>)>,
}

/// One planned mount per configured one, in order.
pub fn plan(
    list: &[Mount],
    at: &Paths<'_>,
    mount_label: Option<&str>,
) -> Result<Vec<MountPlan>, PlanError> {
    let mut mounts = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = absolute(&format!("{field}.destination"), m.destination())?;
        let mut options = mount_options::parse(m.options().as_deref().unwrap_or_default())
            .map_err(|r| PlanError::field(&format!("{field}.options"), r))?;
        let mut fstype = m.typ().clone().filter(|t| !t.is_empty());
        if fstype.as_deref() == Some("bind") {
            // runc treats type "bind" as a bind mount even without the option.
            options.flags.insert(MsFlags::MS_BIND);
            fstype = None;
        }
        if options.copy_up && fstype.as_deref() != Some("tmpfs") {
            return Err(PlanError::field(
                &format!("{field}.options"),
                "tmpcopyup is for tmpfs mounts",
            ));
        }
        let idmap = mount_idmap::plan(&field, m, &options, fstype.as_deref(), at.userns, at.host)?;
        let planned = MountPlan {
            source: m.source().clone(),
            dest,
            fstype,
            options,
            idmap,
        };
        let planned = match planned.is_bind() {
            true => bind(&field, planned, &mounts, at)?,
            false => filesystem(&field, planned, mount_label)?,
        };
        mounts.push(planned);
    }
    Ok(mounts)
}

/// A bind mount: its source absolute (relative ones are the bundle's) and there, unless an
/// earlier mount makes it.
fn bind(
    field: &str,
    mut m: MountPlan,
    earlier: &[MountPlan],
    at: &Paths<'_>,
) -> Result<MountPlan, PlanError> {
    // mount(2) ignores data on a bind: an option chitin does not know would do nothing.
    if !m.options.data.is_empty() {
        return Err(PlanError::field(
            &format!("{field}.options"),
            format!("{:?}: not an option of a bind mount", m.options.data),
        ));
    }
    let src = m.source.as_ref().ok_or_else(|| {
        PlanError::field(&format!("{field}.source"), "a bind mount needs a source")
    })?;
    let src = match src.is_absolute() {
        true => src.clone(),
        false => at.bundle.join(src),
    };
    // A source below an earlier mount's destination is made by that mount: it is looked for
    // when its turn comes, as runc does (and inside the rootfs).
    let made_earlier = earlier
        .iter()
        .any(|e| src.starts_with(at.rootfs.join(crate::fsutil::relative(&e.dest))));
    // An idmapped bind is opened by the runtime, before any mount of the container exists.
    if m.idmap.is_some() && src.starts_with(at.rootfs) {
        return Err(PlanError::field(
            &format!("{field}.source"),
            "an idmapped bind mount's source must be outside the rootfs",
        ));
    }
    if !at.host.exists(&src) && !made_earlier {
        return Err(PlanError::field(
            &format!("{field}.source"),
            format!("{} does not exist", src.display()),
        ));
    }
    m.source = Some(src);
    Ok(m)
}

/// A filesystem mount: it needs a type, and takes the mount label.
fn filesystem(
    field: &str,
    mut m: MountPlan,
    mount_label: Option<&str>,
) -> Result<MountPlan, PlanError> {
    if m.fstype.is_none() {
        return Err(PlanError::field(
            &format!("{field}.type"),
            "missing (and not a bind mount)",
        ));
    }
    // As runc: procfs, sysfs and cgroupfs keep the labels the policy gives them; mqueue is
    // labelled once mounted (init::rootfs).
    if !matches!(
        m.fstype.as_deref(),
        Some("proc" | "sysfs" | "cgroup" | "cgroup2" | "mqueue")
    ) {
        m.options.data = super::lsm::mount_data(&m.options.data, mount_label);
    }
    Ok(m)
}

pub fn rootfs_propagation(linux: &Linux) -> Result<MsFlags, PlanError> {
    match linux.rootfs_propagation().as_deref() {
        None | Some("") => Ok(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        Some(p) => mount_options::propagation_flag(p).ok_or_else(|| {
            PlanError::field(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            )
        }),
    }
}
