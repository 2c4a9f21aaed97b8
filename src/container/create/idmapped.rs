//! Idmapped mounts, made on the host's side before anything of the container exists: the bind
//! source cloned (open_tree) or the filesystem made detached (fsopen, fsmount), then
//! MOUNT_ATTR_IDMAP with a user namespace that carries the mount's maps. The kernel allows that
//! only on a detached mount; the init attaches it by fd.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::container::{ContainerError, io_ctx};
use crate::plan::{IdMap, MountIdmap, MountPlan, id_map_text};

/// User namespaces already made in this create, by their maps: mounts that take the container's
/// maps share one.
#[derive(Default)]
pub(super) struct Namespaces {
    made: Vec<(Vec<IdMap>, Vec<IdMap>, OwnedFd)>,
}

impl Namespaces {
    fn get(&mut self, idmap: &MountIdmap) -> std::io::Result<BorrowedFd<'_>> {
        let at = self
            .made
            .iter()
            .position(|(u, g, _)| *u == idmap.uids && *g == idmap.gids);
        let at = match at {
            Some(i) => i,
            None => {
                let fd = userns(&idmap.uids, &idmap.gids)?;
                self.made.push((idmap.uids.clone(), idmap.gids.clone(), fd));
                self.made.len() - 1
            }
        };
        Ok(self.made[at].2.as_fd())
    }
}

/// Mount `i`, made detached and idmapped.
pub(super) fn make(
    i: usize,
    m: &MountPlan,
    idmap: &MountIdmap,
    namespaces: &mut Namespaces,
) -> Result<OwnedFd, ContainerError> {
    let name = format!("mounts[{i}] ({})", m.dest.display());
    let tree = match (&m.source, m.is_bind()) {
        (Some(src), true) => {
            let recursive = m.options.flags.contains(MsFlags::MS_REC);
            crate::fsutil::clone_tree(None, src, recursive)
                .map_err(io_ctx(format!("{name}: source {}", src.display())))?
        }
        _ => filesystem(m).map_err(|e| io_ctx(format!("{name}: making the filesystem"))(e))?,
    };
    let userns = namespaces
        .get(idmap)
        .map_err(io_ctx(format!("{name}: a user namespace for its maps")))?;
    crate::fsutil::set_idmap(tree.as_fd(), userns, idmap.recursive).map_err(|e| {
        let fs = m.fstype.as_deref().unwrap_or("bind");
        let why = match e {
            Errno::ENOSYS => "idmapped mounts need Linux 5.12 or later".to_owned(),
            // can_idmap_mount(): no FS_ALLOW_IDMAP, or a recursive tree with a submount
            // that cannot be idmapped.
            Errno::EINVAL => format!("the kernel cannot idmap this {fs} mount ({e})"),
            e => format!("idmapping: {e}"),
        };
        ContainerError::Io {
            what: name.clone(),
            source: std::io::Error::other(why),
        }
    })?;
    Ok(tree)
}

/// A filesystem made by fsopen(2) and fsmount(2): its source and data as fsconfig(2) keys, its
/// mount flags as MOUNT_ATTR_* and its superblock's as flags.
fn filesystem(m: &MountPlan) -> std::io::Result<OwnedFd> {
    let fstype = m.fstype.as_deref().unwrap_or("none");
    let fs = syscall_fd(|| {
        let name = cstring(fstype)?;
        // SAFETY: fsopen with a C string.
        Ok(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) })
    })?;
    if let Some(src) = &m.source {
        config(fs.as_fd(), "source", Some(&src.to_string_lossy()))?;
    }
    let flags = m.options.flags;
    for (flag, key) in [
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
    ] {
        if flags.contains(flag) {
            config(fs.as_fd(), key, None)?;
        }
    }
    for item in data_items(&m.options.data) {
        match item.split_once('=') {
            Some((k, v)) => config(fs.as_fd(), k, Some(unquote(v)))?,
            None => config(fs.as_fd(), &item, None)?,
        }
    }
    command(fs.as_fd(), libc::FSCONFIG_CMD_CREATE)?;
    let attrs = mount_attrs(flags);
    syscall_fd(|| {
        // SAFETY: fsmount of a created filesystem context.
        Ok(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                fs.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attrs,
            )
        })
    })
}

/// The MOUNT_ATTR_* that fsmount(2) takes for mount(2)'s per-mount flags.
fn mount_attrs(flags: MsFlags) -> u64 {
    let mut attrs = 0;
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
        (MsFlags::MS_NOATIME, libc::MOUNT_ATTR_NOATIME),
        (MsFlags::MS_STRICTATIME, libc::MOUNT_ATTR_STRICTATIME),
        (
            MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            libc::MOUNT_ATTR_NOSYMFOLLOW,
        ),
    ] {
        if flags.contains(flag) {
            attrs |= attr;
        }
    }
    attrs
}

/// The comma-separated items of mount data, a comma inside quotes (an SELinux context's
/// categories) kept.
fn data_items(data: &str) -> Vec<String> {
    let (mut items, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in data.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    items.push(cur);
    items.retain(|s| !s.is_empty());
    items
}

/// mount(2)'s parser takes quotes off a value; fsconfig(2) takes the value as it is.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

fn config(fs: BorrowedFd<'_>, key: &str, value: Option<&str>) -> std::io::Result<()> {
    let k = cstring(key)?;
    let v = value.map(cstring).transpose()?;
    let (cmd, ptr) = match &v {
        Some(v) => (libc::FSCONFIG_SET_STRING, v.as_ptr()),
        None => (libc::FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: fsconfig with C strings that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, k.as_ptr(), ptr, 0) };
    Errno::result(r).map(drop).map_err(|e| {
        let shown = value.map_or(key.to_owned(), |v| format!("{key}={v}"));
        std::io::Error::other(format!("option {shown:?}: {e}"))
    })
}

fn command(fs: BorrowedFd<'_>, cmd: libc::c_uint) -> std::io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: fsconfig command without key or value.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, null, null, 0) };
    Errno::result(r).map(drop).map_err(Into::into)
}

fn cstring(s: &str) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn syscall_fd(f: impl FnOnce() -> std::io::Result<libc::c_long>) -> std::io::Result<OwnedFd> {
    let fd = Errno::result(f()?)?;
    // SAFETY: the syscall just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A user namespace with these maps, held by fd: a child cloned into a new one waits while its
/// maps are written from here (as root here, no setgroups "deny" is needed), then is killed.
fn userns(uids: &[IdMap], gids: &[IdMap]) -> std::io::Result<OwnedFd> {
    let mut wait = || loop {
        // SAFETY: pause has no preconditions; the child only waits to be killed.
        unsafe { libc::pause() };
    };
    let (pid, _) = crate::clone::clone_init(libc::CLONE_NEWUSER as u64, None, &mut wait)?;
    let child = Reaped(nix::unistd::Pid::from_raw(pid));
    std::fs::write(format!("/proc/{pid}/uid_map"), id_map_text(uids))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), id_map_text(gids))?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
    drop(child);
    Ok(OwnedFd::from(ns))
}

/// A helper child, killed and reaped however its caller leaves.
struct Reaped(nix::unistd::Pid);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keeps_quoted_commas_and_loses_the_quotes() {
        let items = data_items(r#"size=64k,mode=755,context="system_u:object_r:x:s0:c1,c2""#);
        assert_eq!(
            items,
            [
                "size=64k",
                "mode=755",
                r#"context="system_u:object_r:x:s0:c1,c2""#
            ]
        );
        assert_eq!(unquote(r#""a,b""#), "a,b");
        assert_eq!(mount_attrs(MsFlags::MS_RDONLY | MsFlags::MS_NODEV), 5);
    }
}
