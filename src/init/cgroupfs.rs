//! The cgroup filesystem a container sees: cgroup2 on a pure v2 host, or a tmpfs holding one
//! mount per v1 hierarchy (and, in a cgroup namespace, the hybrid host's unified one); each shows
//! the container's own cgroup only, with the mount's flags.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::MsFlags;

use super::rootfs::{NONE, mount_at};
use super::{InitContext, InitError, Step};
use crate::fsutil::{ensure_in_root, mount_setattr as setattr, open_in_root};
use crate::plan::lsm::mount_data;
use crate::plan::{MountPlan, NsKind};

/// A "cgroup" mount: cgroup2 on a pure v2 host; otherwise a tmpfs holding one mount per v1
/// hierarchy (and "unified" on a hybrid host), each showing only the container's own cgroup.
pub fn mount(
    ctx: &InitContext<'_>,
    root: BorrowedFd<'_>,
    m: &MountPlan,
    target: BorrowedFd<'_>,
) -> Result<(), InitError> {
    let flags = m.options.flags;
    let cgroupns = ctx.plan.namespaces.is_new(NsKind::Cgroup)
        || ctx.plan.namespaces.joined(NsKind::Cgroup).is_some();
    if ctx.layout.v1.is_empty() {
        return if cgroupns {
            // Named "cgroup" in mountinfo, as runc's.
            mount_at(
                Some(Path::new("cgroup")),
                target,
                Some("cgroup2"),
                flags,
                NONE,
            )
            .step(|| "cgroup2".into())
        } else {
            let dir = ctx.placement.unified.as_deref();
            mount_at(dir, target, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)
                .map_err(std::io::Error::from)
                .and_then(|()| bind_flags(root, &m.dest, flags, true))
                .step(|| "binding the container's cgroup".into())
        };
    }
    let tmpfs_flags = flags - MsFlags::MS_RDONLY;
    let data = mount_data("mode=755", ctx.plan.mount_label.as_deref());
    mount_at(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        tmpfs_flags,
        Some(&data),
    )
    .step(|| "tmpfs".into())?;
    // Without a cgroup namespace the hybrid host's unified hierarchy stays out, as in runc: a
    // bind of it would show the container the host's cgroup2 tree above its own cgroup.
    let unified = ctx.layout.unified.iter().filter(|_| cgroupns);
    let hierarchies = ctx
        .layout
        .v1
        .iter()
        .zip(ctx.placement.v1.iter())
        .map(|(h, d)| (h, d.path.as_path(), false))
        .chain(
            unified
                .zip(ctx.placement.unified.iter())
                .map(|(h, d)| (h, d.as_path(), true)),
        );
    for (h, dir, unified) in hierarchies {
        let name = h
            .mountpoint
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("unified"));
        let hierarchy = Hierarchy {
            dest: m.dest.join(&name),
            controllers: &h.controllers,
            dir,
            unified,
        };
        hierarchy
            .mount(root, flags, cgroupns)
            .step(|| format!("cgroup hierarchy {}", h.controllers))?;
        comounted_links(root, &m.dest, &name).step(|| format!("links to {}", name.display()))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let t = open_in_root(root, &m.dest, OFlag::O_PATH).step(|| "reopening".into())?;
        setattr(t.as_fd(), libc::MOUNT_ATTR_RDONLY, 0, false)
            .step(|| "read-only cgroup tmpfs".into())?;
    }
    Ok(())
}

/// Controllers mounted together ("cpu,cpuacct", "net_cls,net_prio", as systemd mounts them) are
/// each reachable by its own name too, a symlink to the shared mount, as on the host and in runc.
fn comounted_links(root: BorrowedFd<'_>, dest: &Path, name: &Path) -> std::io::Result<()> {
    let Some(joined) = name.to_str().filter(|n| n.contains(',')) else {
        return Ok(());
    };
    let dir = open_in_root(root, dest, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for c in joined.split(',').filter(|c| !c.starts_with("name=")) {
        match nix::unistd::symlinkat(joined, dir.as_fd(), c) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One hierarchy under the tmpfs: where it goes, and the container's cgroup in it.
struct Hierarchy<'a> {
    dest: PathBuf,
    controllers: &'a str,
    dir: &'a Path,
    unified: bool,
}

impl Hierarchy<'_> {
    /// A fresh mount in a cgroup namespace (which shows the container's cgroup as its root),
    /// else a bind of the container's cgroup directory.
    fn mount(&self, root: BorrowedFd<'_>, flags: MsFlags, cgroupns: bool) -> std::io::Result<()> {
        let sub = ensure_in_root(root, &self.dest, true)?;
        match (cgroupns, self.unified) {
            (true, true) => Ok(mount_at(
                Some(Path::new("cgroup2")),
                sub.as_fd(),
                Some("cgroup2"),
                flags,
                NONE,
            )?),
            // A named hierarchy's source is its name, as runc mounts it ("systemd").
            (true, false) => Ok(mount_at(
                Some(Path::new(
                    self.controllers.strip_prefix("name=").unwrap_or("cgroup"),
                )),
                sub.as_fd(),
                Some("cgroup"),
                flags,
                Some(self.controllers),
            )?),
            (false, _) => {
                mount_at(Some(self.dir), sub.as_fd(), NONE, MsFlags::MS_BIND, NONE)?;
                bind_flags(root, &self.dest, flags, false)
            }
        }
    }
}

/// A bind takes none of the mount's flags: they are set on it after, or root in the container
/// could raise its own limits through a writable hierarchy (runc's are read-only too). Only set,
/// never cleared, so that a user namespace's locked flags stay.
fn bind_flags(
    root: BorrowedFd<'_>,
    dest: &Path,
    flags: MsFlags,
    recursive: bool,
) -> std::io::Result<()> {
    let bound = open_in_root(root, dest, OFlag::O_PATH)?;
    Ok(setattr(bound.as_fd(), mount_attrs(flags), 0, recursive)?)
}

/// The MOUNT_ATTR_* bits of the per-mount flags among `flags`.
fn mount_attrs(flags: MsFlags) -> u64 {
    [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
    ]
    .iter()
    .filter(|(ms, _)| flags.contains(*ms))
    .fold(0, |acc, (_, attr)| acc | attr)
}
