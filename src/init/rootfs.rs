//! The container's filesystem: the rootfs bind, every configured mount (targets resolved inside
//! the rootfs by fd), sysctls, masked and read-only paths, and pivot_root.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, fstat};

use super::{InitContext, InitError, Step, failure};
use crate::fsutil::{
    attach_tree, ensure_in_root, fd_path, mount_setattr as setattr, mounts, open_in_root,
    open_proc, write_proc,
};
use crate::plan::lsm::mount_data;
use crate::plan::{MountPlan, NsKind, Plan};

pub(super) const NONE: Option<&str> = None;

pub(super) fn mount_at(
    src: Option<&Path>,
    target: BorrowedFd<'_>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(src, &fd_path(target), fstype, flags, data)
}

/// Makes the mount tree private to the container and binds the rootfs onto itself, so that it is
/// a mount point pivot_root can use. Returns an fd of the rootfs mount.
pub fn prepare(ctx: &InitContext<'_>) -> Result<OwnedFd, InitError> {
    let plan = ctx.plan;
    // Shared propagation on "/" would leak our mounts to the host, and the rootfs cannot be
    // bound from an unbindable mount: both are set on the new root after pivot_root. runc's
    // default is rslave.
    let prop = plan.rootfs_propagation;
    let first = if prop.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        prop
    };
    // Without a mount namespace of its own (the caller's, or a joined one) the "/" is not ours
    // to change: the rootfs bind alone takes the propagation, which keeps the container's mounts
    // from spreading to the namespace's peers.
    let own_ns = plan.namespaces.is_new(NsKind::Mount);
    if own_ns {
        mount(NONE, "/", NONE, first, NONE).step(|| "setting propagation of /".into())?;
    }
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .step(|| format!("binding rootfs {}", plan.rootfs.display()))?;
    if !own_ns {
        mount(NONE, &plan.rootfs, NONE, first, NONE)
            .step(|| "setting propagation of the rootfs".into())?;
    }
    let root = nix::fcntl::open(
        &plan.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step(|| format!("opening rootfs {}", plan.rootfs.display()))?;
    for (i, m) in plan.mounts.iter().enumerate() {
        let tree = ctx.binds.get(i).and_then(|t| t.as_ref());
        mount_one(ctx, root.as_fd(), m, tree)
            .map_err(|e| failure(&format!("mounting {}", m.dest.display()), e.to_string()))?;
    }
    Ok(root)
}

/// One mount of the config; `tree` is what the runtime made of it beforehand: its bind source,
/// or an idmapped filesystem.
fn mount_one(
    ctx: &InitContext<'_>,
    root: BorrowedFd<'_>,
    m: &MountPlan,
    tree: Option<&OwnedFd>,
) -> Result<(), InitError> {
    let dest = &m.dest;
    // A bind source inside the rootfs (which an earlier mount may have made) is resolved there,
    // by fd: the image's symlinks cannot lead it out.
    let in_root = match &m.source {
        Some(src) if m.is_bind() => match src.strip_prefix(&ctx.plan.rootfs) {
            Ok(rel) => Some(
                open_in_root(root, rel, OFlag::O_PATH)
                    .step(|| format!("source {} in the rootfs", src.display()))?,
            ),
            Err(_) => None,
        },
        _ => None,
    };
    let source = in_root.as_ref().or(tree).map(|fd| fd_path(fd.as_fd()));
    let source = source.as_deref().or(m.source.as_deref());
    let as_dir = match source {
        Some(src) if m.is_bind() => std::fs::metadata(src)
            .step(|| format!("source {}", src.display()))?
            .is_dir(),
        _ => true,
    };
    // runc gives a tmpfs over a directory of the image that directory's mode.
    let existing_mode = match m.fstype.as_deref() {
        Some("tmpfs") => open_in_root(root, dest, OFlag::O_PATH)
            .ok()
            .and_then(|fd| fstat(fd.as_fd()).ok())
            .map(|st| Mode::from_bits_truncate(st.st_mode & 0o7777)),
        _ => None,
    };
    refuse_symlinked_kernel_fs(root, m)?;
    let target = ensure_in_root(root, dest, as_dir)
        .step(|| "resolving the destination in the rootfs".into())?;
    let flags = m.options.flags;
    let data = Some(m.options.data.as_str()).filter(|d| !d.is_empty());
    match (m.fstype.as_deref(), tree) {
        (Some("cgroup") | Some("cgroup2"), _) => {
            super::cgroupfs::mount(ctx, root, m, target.as_fd())?
        }
        _ if m.is_bind() => mount_bind(ctx, root, m, source, tree, target.as_fd())?,
        // An idmapped filesystem, made with its flags by the runtime.
        (_, Some(t)) => {
            attach_tree(t.as_fd(), target.as_fd()).step(|| "attaching the idmapped mount".into())?
        }
        (fstype, None) => {
            let src = m
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from(fstype.unwrap_or("none")));
            if fstype == Some("tmpfs") {
                mount_tmpfs(root, m, target.as_fd(), existing_mode, &src, data)?;
            } else {
                mount_at(Some(&src), target.as_fd(), fstype, flags, data)
                    .step(|| format!("mount type {}", fstype.unwrap_or("")))?;
            }
            let own_ipc = ctx.plan.namespaces.is_new(NsKind::Ipc);
            if let (Some("mqueue"), Some(label), true) = (fstype, &ctx.plan.mount_label, own_ipc) {
                // The ipc namespace's mqueue superblock exists before this mount, so a context=
                // would be refused as a change of its settings: label its root instead, as runc
                // does, but only the container's own (a joined namespace's is its owner's).
                let mounted = open_in_root(root, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .step(|| "reopening".into())?;
                set_label(mounted.as_fd(), label).step(|| format!("linux.mountLabel {label:?}"))?;
            }
        }
    }
    if !m.options.propagation.is_empty() || m.options.recursive != Default::default() {
        let mounted = open_in_root(root, dest, OFlag::O_PATH).step(|| "reopening".into())?;
        for p in &m.options.propagation {
            mount_at(None, mounted.as_fd(), NONE, *p, NONE)
                .step(|| format!("propagation {p:?}"))?;
        }
        let r = m.options.recursive;
        if r.set != 0 || r.clear != 0 {
            setattr(mounted.as_fd(), r.set, r.clear, true).step(|| "mount_setattr".into())?;
        }
    }
    Ok(())
}

/// As runc: procfs and sysfs never through a symlink, which has aimed them elsewhere before.
fn refuse_symlinked_kernel_fs(root: BorrowedFd<'_>, m: &MountPlan) -> Result<(), InitError> {
    let Some(fs @ ("proc" | "sysfs")) = m.fstype.as_deref() else {
        return Ok(());
    };
    let found = open_in_root(root, &m.dest, OFlag::O_PATH | OFlag::O_NOFOLLOW);
    match found.and_then(|fd| Ok(fstat(fd.as_fd())?)) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR => {
            Err(failure(
                "checking the destination",
                format!("filesystem {fs:?} must be mounted on ordinary directory"),
            ))
        }
        _ => Ok(()),
    }
}

/// A bind, then a remount for the per-mount flags it asks for (a bind takes none itself).
fn mount_bind(
    ctx: &InitContext<'_>,
    root: BorrowedFd<'_>,
    m: &MountPlan,
    source: Option<&Path>,
    tree: Option<&OwnedFd>,
    target: BorrowedFd<'_>,
) -> Result<(), InitError> {
    let flags = m.options.flags;
    match tree {
        Some(t) => attach_tree(t.as_fd(), target).step(|| "attaching the bind source".into())?,
        None => mount_at(
            source,
            target,
            NONE,
            flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            NONE,
        )
        .step(|| "bind mount".into())?,
    }
    let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if extra.is_empty() {
        return Ok(());
    }
    // The target fd still names the directory under the new mount: resolve again.
    let mounted = open_in_root(root, &m.dest, OFlag::O_PATH).step(|| "reopening".into())?;
    let mut f = extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let ns = &ctx.plan.namespaces;
    if ns.is_new(NsKind::User) || ns.joined(NsKind::User).is_some() {
        // Flags locked by the source mount must be kept when remounting in a user namespace.
        f |= locked_flags(source.unwrap_or(Path::new("/")));
    }
    // The kernel keeps the source's atime flags on a remount that names none.
    mount_at(NONE.map(Path::new), mounted.as_fd(), NONE, f, NONE)
        .step(|| format!("remounting with {extra:?}"))
}

/// A tmpfs, mounted writable first: a copy of the directory it covers goes in for "tmpcopyup"
/// (through an fd opened before the mount hides it), its root takes the mode of the image's
/// directory when there was one (as runc does), and only then does it become read-only.
fn mount_tmpfs(
    root: BorrowedFd<'_>,
    m: &MountPlan,
    target: BorrowedFd<'_>,
    existing_mode: Option<Mode>,
    src: &Path,
    data: Option<&str>,
) -> Result<(), InitError> {
    let under = match m.options.copy_up {
        true => Some(
            nix::fcntl::openat(
                target,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .step(|| "opening the directory to copy up".into())?,
        ),
        false => None,
    };
    let flags = m.options.flags;
    mount_at(
        Some(src),
        target,
        Some("tmpfs"),
        flags - MsFlags::MS_RDONLY,
        data,
    )
    .step(|| "mount type tmpfs".into())?;
    let mounted = open_in_root(root, &m.dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .step(|| "reopening".into())?;
    if let Some(under) = under {
        super::copyup::copy_entries(under.as_fd(), mounted.as_fd()).step(|| "tmpcopyup".into())?;
    }
    if let Some(mode) = existing_mode {
        nix::sys::stat::fchmod(mounted.as_fd(), mode).step(|| "mode of the tmpfs".into())?;
    }
    // A read-only /dev is filled first (devices, /dev/pts and the rest): see `finish`.
    if flags.contains(MsFlags::MS_RDONLY) && !is_dev(m) {
        setattr(mounted.as_fd(), libc::MOUNT_ATTR_RDONLY, 0, false)
            .step(|| "read-only tmpfs".into())?;
    }
    Ok(())
}

fn is_dev(m: &MountPlan) -> bool {
    m.dest == Path::new("/dev") && m.fstype.as_deref() == Some("tmpfs")
}

/// Sets the SELinux context of the file open at `fd`.
fn set_label(fd: BorrowedFd<'_>, label: &str) -> std::io::Result<()> {
    // SAFETY: fsetxattr on an open fd, with a C string name and a buffer of the given length.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            c"security.selinux".as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
    nix::errno::Errno::result(rc).map(drop).map_err(Into::into)
}

fn locked_flags(src: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(src) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// What is done to the finished tree before pivot_root, through the host's verified /proc:
/// sysctls, masked paths, read-only paths and a read-only root.
pub fn finish(root: BorrowedFd<'_>, plan: &Plan) -> Result<(), InitError> {
    if !plan.sysctls.is_empty() {
        // Sysctls of namespaced subsystems act on the writer's namespaces, whichever procfs.
        let proc = open_proc(Path::new("/proc")).step(|| "opening /proc".into())?;
        for (k, v) in &plan.sysctls {
            let rel = PathBuf::from("sys").join(k.replace('.', "/"));
            write_proc(proc.as_fd(), &rel, v).step(|| format!("sysctl {k}"))?;
        }
    }
    if plan
        .mounts
        .iter()
        .any(|m| is_dev(m) && m.options.flags.contains(MsFlags::MS_RDONLY))
    {
        // As runc: the /dev mount alone (what is mounted below it stays as it is), and before the
        // masks, whose binds of /dev/null then are read-only too.
        let dev = open_in_root(root, Path::new("/dev"), OFlag::O_PATH)
            .step(|| "reopening /dev".into())?;
        setattr(dev.as_fd(), libc::MOUNT_ATTR_RDONLY, 0, false).step(|| "read-only /dev".into())?;
    }
    for p in &plan.masked_paths {
        let fd = match open_in_root(root, p, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).step(|| format!("masking {}", p.display())),
        };
        let st = fstat(fd.as_fd()).step(|| format!("masking {}", p.display()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let data = mount_data("", plan.mount_label.as_deref());
            mount_at(
                Some(Path::new("tmpfs")),
                fd.as_fd(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some(data.as_str()).filter(|d| !d.is_empty()),
            )
        } else {
            let null = verified_null(root)?;
            mount_at(
                Some(&fd_path(null.as_fd())),
                fd.as_fd(),
                NONE,
                MsFlags::MS_BIND,
                NONE,
            )
        }
        .step(|| format!("masking {}", p.display()))?;
    }
    for p in &plan.readonly_paths {
        let fd = match open_in_root(root, p, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).step(|| format!("read-only {}", p.display())),
        };
        mount_at(
            Some(&fd_path(fd.as_fd())),
            fd.as_fd(),
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        )
        .step(|| format!("binding {} onto itself", p.display()))?;
        let mounted =
            open_in_root(root, p, OFlag::O_PATH).step(|| format!("reopening {}", p.display()))?;
        setattr(mounted.as_fd(), libc::MOUNT_ATTR_RDONLY, 0, true)
            .step(|| format!("read-only {}", p.display()))?;
    }
    if plan.root_nosuid_nodev {
        // The rootfs mount alone: the container's own mounts have their options.
        setattr(
            root,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
            0,
            false,
        )
        .step(|| "nosuid, nodev root".into())?;
    }
    if plan.root_readonly {
        setattr(root, libc::MOUNT_ATTR_RDONLY, 0, false).step(|| "read-only root".into())?;
    }
    Ok(())
}

/// The container's /dev/null, checked to be the real character device 1:3: an image that made it
/// a symlink or another file cannot redirect a mask (CVE-2025-31133).
fn verified_null(root: BorrowedFd<'_>) -> Result<OwnedFd, InitError> {
    let fd = open_in_root(
        root,
        Path::new("/dev/null"),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
    )
    .step(|| "opening /dev/null".into())?;
    let st = fstat(fd.as_fd()).step(|| "checking /dev/null".into())?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || nix::sys::stat::major(st.st_rdev) != 1 || nix::sys::stat::minor(st.st_rdev) != 3
    {
        return Err(failure(
            "masking",
            "/dev/null in the container is not the null device",
        ));
    }
    Ok(fd)
}

/// Without pivot_root the host's tree stays below the chroot, and a whole procfs or sysfs there
/// would let a nested user namespace mount a fresh one (the kernel allows it only where one is
/// already fully visible). Each outside the rootfs is detached, or covered where it cannot be.
fn hide_host_kernel_filesystems(rootfs: &Path) -> Result<(), InitError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").step(|| "mountinfo".into())?;
    let mut targets: Vec<PathBuf> = mounts(&info)
        .filter(|(fstype, mp)| matches!(*fstype, "proc" | "sysfs") && !mp.starts_with(rootfs))
        .map(|(_, mp)| mp)
        .collect();
    // Deepest first, so that each is still there when its turn comes.
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    for t in targets {
        match umount2(&t, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            // EINVAL is also what a locked mount gives (the host's mounts as a user namespace's
            // mount namespace copied them): cover it, which a user namespace may do.
            Err(_) => match mount(Some("tmpfs"), &t, Some("tmpfs"), MsFlags::MS_RDONLY, NONE) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e).step(|| format!("covering the host's {}", t.display())),
            },
        }
    }
    Ok(())
}

/// pivot_root into the rootfs and detach the old root; or, with --no-pivot, move the rootfs over
/// "/" and chroot (for initramfs, where pivot_root is impossible).
pub fn pivot(root: OwnedFd, plan: &Plan, no_pivot: bool) -> Result<(), InitError> {
    let old_root = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step(|| "opening the old root".into())?;
    nix::unistd::fchdir(root.as_fd()).step(|| "entering the rootfs".into())?;
    drop(root);
    if !plan.namespaces.is_new(NsKind::Mount) {
        // pivot_root would change the root of every process in the namespace: chroot, as runc
        // does there (--no-pivot too; moving the rootfs over "/" would be as bad).
        nix::unistd::chroot(".").step(|| "chroot".into())?;
    } else if no_pivot {
        hide_host_kernel_filesystems(&plan.rootfs)?;
        mount(Some("."), "/", NONE, MsFlags::MS_MOVE, NONE)
            .step(|| "moving the rootfs to /".into())?;
        nix::unistd::chroot(".").step(|| "chroot".into())?;
    } else {
        nix::unistd::pivot_root(".", ".").step(|| "pivot_root".into())?;
        // The old root is now stacked on the new one. "." must name it, not the new root that
        // the cwd still is: go there by fd. Then keep its unmount from reaching the host and
        // detach it.
        nix::unistd::fchdir(old_root.as_fd()).step(|| "entering the old root".into())?;
        mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
            .step(|| "making the old root a slave".into())?;
        umount2(".", MntFlags::MNT_DETACH).step(|| "detaching the old root".into())?;
    }
    drop(old_root);
    nix::unistd::chdir("/").step(|| "chdir /".into())?;
    if plan
        .rootfs_propagation
        .intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE)
    {
        mount(NONE, "/", NONE, plan.rootfs_propagation, NONE)
            .step(|| "rootfsPropagation".into())?;
    }
    Ok(())
}
