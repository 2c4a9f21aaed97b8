//! Device nodes in the container's /dev: mknod, or a bind of the host's node inside a user
//! namespace or in rootless mode (where mknod is refused), plus the standard /dev symlinks.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};

use super::{InitError, Step};
use crate::fsutil::{device_target_in_root, fd_path, mkdir_all_in_root};
use crate::plan::{DevKind, Plan};

pub fn create(root: BorrowedFd<'_>, plan: &Plan) -> Result<(), InitError> {
    for d in &plan.devices {
        let what = || format!("device {}", d.path.display());
        let parent = mkdir_all_in_root(root, d.path.parent().unwrap_or(Path::new("/dev")), 0o755)
            .step(what)?;
        let name = d
            .path
            .file_name()
            .ok_or_else(|| super::failure(&what(), "no file name"))?;
        if plan.devices_by_bind {
            let target = device_target_in_root(root, &d.path).step(what)?;
            nix::mount::mount(
                Some(&d.path),
                &fd_path(target.as_fd()),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .step(|| format!("binding host {}", d.path.display()))?;
            continue;
        }
        let kind = match d.kind {
            DevKind::Char => SFlag::S_IFCHR,
            DevKind::Block => SFlag::S_IFBLK,
            DevKind::Fifo => SFlag::S_IFIFO,
        };
        let mode = Mode::from_bits_truncate(d.mode);
        let dev = makedev(d.major, d.minor);
        match mknodat(parent.as_fd(), name, kind, mode, dev) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => {
                // Whatever the image put there (a file, a symlink to the host) is replaced.
                let _ = unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir);
                mknodat(parent.as_fd(), name, kind, mode, dev).step(what)?;
            }
            Err(e) => return Err(e).step(what),
        }
        fchownat(
            parent.as_fd(),
            name,
            Some(Uid::from_raw(d.uid)),
            Some(Gid::from_raw(d.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .step(what)?;
        fchmodat(parent.as_fd(), name, mode, FchmodatFlags::FollowSymlink).step(what)?;
    }
    links(root)
}

fn links(root: BorrowedFd<'_>) -> Result<(), InitError> {
    let dev = mkdir_all_in_root(root, Path::new("/dev"), 0o755).step(|| "/dev".into())?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).step(|| format!("/dev/{name}")),
        }
    }
    // /dev/ptmx must be the container's devpts instance's, whatever the image has there.
    let _ = unlinkat(dev.as_fd(), "ptmx", UnlinkatFlags::NoRemoveDir);
    symlinkat("pts/ptmx", dev.as_fd(), "ptmx").step(|| "/dev/ptmx".into())?;
    Ok(())
}
