//! Path handling by file descriptor. Every path inside a container's rootfs is resolved with
//! openat2(RESOLVE_IN_ROOT), so a symlink or `..` planted in an image can never lead outside it,
//! and the object found is the one used: later steps act on the fd (through /proc/self/fd), never
//! on the string again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, mkdirat};

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Opens `path` (absolute or relative, both taken inside `root`) with `flags`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve_flags());
    Ok(openat2(root, &rel, how)?)
}

/// `path` with its leading `/` removed; `.` for the root itself.
pub fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// How many symlinks a path may pass through, as the kernel allows (MAXSYMLINKS).
const MAX_LINKS: u32 = 40;

/// Where the symlink `name` in `dir` points, as a path inside the root: `link` is the symlink's
/// own path there. None if `name` is not a symlink.
fn link_target(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, link: &Path) -> Option<PathBuf> {
    let target = nix::fcntl::readlinkat(dir, name).ok()?;
    let target = Path::new(&target);
    Some(match target.is_absolute() {
        true => target.to_path_buf(),
        false => link.parent().unwrap_or(Path::new("")).join(target),
    })
}

fn too_many_links(links: u32) -> io::Result<()> {
    match links < MAX_LINKS {
        true => Ok(()),
        false => Err(io::Error::from_raw_os_error(libc::ELOOP)),
    }
}

/// Creates every missing directory of `path` inside `root` and returns an O_PATH fd of the last.
/// A dangling symlink on the way is followed inside the root and what it names is made, as
/// runc does.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    mkdir_all(root, path, mode, 0)
}

fn mkdir_all(root: BorrowedFd<'_>, path: &Path, mode: u32, links: u32) -> io::Result<OwnedFd> {
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut so_far = PathBuf::new();
    let mut cur = open_in_root(root, Path::new("."), dir)?;
    let rel = relative(path);
    let comps: Vec<Component> = rel.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        so_far.push(comp);
        cur = match open_in_root(root, &so_far, dir) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let Component::Normal(name) = comp else {
                    return Err(e);
                };
                match mkdirat(cur.as_fd(), *name, Mode::from_bits_truncate(mode)) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::EEXIST) => {
                        if let Some(target) = link_target(cur.as_fd(), name, &so_far) {
                            too_many_links(links)?;
                            let rest: PathBuf = comps[i + 1..].iter().collect();
                            return mkdir_all(root, &target.join(rest), mode, links + 1);
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                open_in_root(root, &so_far, dir)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Returns an O_PATH fd of `path` inside `root`, creating it (and its parents) as a directory or
/// as an empty regular file when it is missing; through a dangling symlink, inside the root.
pub fn ensure_in_root(root: BorrowedFd<'_>, path: &Path, as_dir: bool) -> io::Result<OwnedFd> {
    ensure(root, path, as_dir, 0)
}

fn ensure(root: BorrowedFd<'_>, path: &Path, as_dir: bool, links: u32) -> io::Result<OwnedFd> {
    if as_dir {
        return mkdir_all(root, path, 0o755, links);
    }
    match open_in_root(root, path, OFlag::O_PATH) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let rel = relative(path);
    let parent = mkdir_all(root, rel.parent().unwrap_or(Path::new(".")), 0o755, links)?;
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    if let Some(target) = link_target(parent.as_fd(), name, &rel) {
        too_many_links(links)?;
        return ensure(root, &target, false, links + 1);
    }
    let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(parent.as_fd(), name, flags, Mode::from_bits_truncate(0o644)) {
        Ok(_) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open_in_root(root, path, OFlag::O_PATH)
}

/// An O_PATH fd of a file at exactly `path` inside `root`, as a bind mount target for a device
/// (/dev/console, a device bound in a user namespace). A symlink (or anything but a regular file
/// or device node) the image put there is replaced by an empty file, so that the bind can never be
/// redirected elsewhere, e.g. onto a procfs file (CVE-2025-52565).
pub fn device_target_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let parent = mkdir_all_in_root(root, rel.parent().unwrap_or(Path::new(".")), 0o755)?;
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let open = || {
        nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let kind = |fd: &OwnedFd| {
        nix::sys::stat::fstat(fd.as_fd())
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
            .unwrap_or(SFlag::empty())
    };
    let fits = |fd: &OwnedFd| matches!(kind(fd), SFlag::S_IFREG | SFlag::S_IFCHR);
    if let Ok(fd) = open() {
        if fits(&fd) {
            return Ok(fd);
        }
        let how = if kind(&fd) == SFlag::S_IFDIR {
            nix::unistd::UnlinkatFlags::RemoveDir
        } else {
            nix::unistd::UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(parent.as_fd(), name, how)?;
    }
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW;
    drop(nix::fcntl::openat(
        parent.as_fd(),
        name,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?);
    let fd = open()?;
    if !fits(&fd) {
        return Err(io::Error::other(format!(
            "{} changed while it was made",
            path.display()
        )));
    }
    Ok(fd)
}

/// The magic-link path naming an open fd, for syscalls that take only paths (mount(2)).
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// True if `fd` lies on a procfs. Writes meant for /proc go only through such fds, so a container
/// cannot redirect them by mounting something else over /proc (CVE-2019-16884 and its kin).
pub fn is_procfs(fd: BorrowedFd<'_>) -> bool {
    nix::sys::statfs::fstatfs(fd)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

/// Opens a verified procfs directory.
pub fn open_proc(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if !is_procfs(fd.as_fd()) {
        return Err(io::Error::other(format!(
            "{} is not a procfs",
            path.display()
        )));
    }
    Ok(fd)
}

/// Writes `value` to a file below a verified procfs fd, without following links out of it.
pub fn write_proc(proc_fd: BorrowedFd<'_>, rel: &Path, value: &str) -> io::Result<()> {
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_NO_SYMLINKS,
        );
    let fd = openat2(proc_fd, rel, how)?;
    let n = nix::unistd::write(&fd, value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::other("short write"));
    }
    Ok(())
}

/// A small regular file of the container's (its /etc/passwd, say), read whole up to `max` bytes.
/// Opened without blocking and checked to be a regular file: the image decides what is there,
/// and a FIFO or a link to /dev/zero must not hang or flood the runtime.
pub fn read_small_file_in_root(root: BorrowedFd<'_>, path: &Path, max: u64) -> io::Result<String> {
    let fd = open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let st = nix::sys::stat::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(std::fs::File::from(fd), max), &mut text)?;
    Ok(text)
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `path` (relative to
/// `dir`, or the cwd; empty for `dir` itself), and with `recursive` of what is mounted below it.
pub fn clone_tree(
    dir: Option<BorrowedFd<'_>>,
    path: &Path,
    recursive: bool,
) -> io::Result<OwnedFd> {
    let dir = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: open_tree with a valid fd and a C string.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dir, c.as_ptr(), flags) };
    let fd = nix::errno::Errno::result(fd)?;
    // SAFETY: open_tree just returned this fd to us.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// move_mount(2) of a detached tree onto the object open at `target`.
pub fn attach_tree(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> nix::Result<()> {
    const F_EMPTY_PATH: u32 = 0x4;
    const T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: move_mount between two valid fds, with empty C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            F_EMPTY_PATH | T_EMPTY_PATH,
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

/// mount_setattr(2) on an fd (and, with `recursive`, everything mounted below it).
pub fn mount_setattr(fd: BorrowedFd<'_>, set: u64, clear: u64, recursive: bool) -> nix::Result<()> {
    setattr(fd, set, clear, 0, None, recursive)
}

/// A propagation change (MS_SLAVE, ...) by mount_setattr(2), for a detached tree too.
pub fn set_propagation(fd: BorrowedFd<'_>, propagation: u64, recursive: bool) -> nix::Result<()> {
    setattr(fd, 0, 0, propagation, None, recursive)
}

/// MOUNT_ATTR_IDMAP: the detached mount `fd` seen through the maps of the user namespace
/// `userns`.
pub fn set_idmap(fd: BorrowedFd<'_>, userns: BorrowedFd<'_>, recursive: bool) -> nix::Result<()> {
    setattr(fd, libc::MOUNT_ATTR_IDMAP, 0, 0, Some(userns), recursive)
}

fn setattr(
    fd: BorrowedFd<'_>,
    set: u64,
    clear: u64,
    propagation: u64,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        set: u64,
        clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        set,
        clr: clear,
        propagation,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: valid fd, empty C string and a struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

/// Each mount of a mountinfo text as (filesystem type, mount point).
pub fn mounts(mountinfo: &str) -> impl Iterator<Item = (&str, PathBuf)> + '_ {
    mountinfo.lines().filter_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        Some((
            right.split(' ').next()?,
            mountinfo_path(left.split(' ').nth(4)?),
        ))
    })
}

/// A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes there.
pub fn mountinfo_path(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|o| {
            std::str::from_utf8(o)
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// runc's PATH for a process whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The first regular file with an execute bit named `name` in a PATH-style list of directories
/// (an empty entry is the current directory), as runc's (Go's) LookPath finds programs.
pub fn find_in_path(name: &str, path: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(name))
        .find(|c| executable(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chitin-fsutil-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(mountinfo_path("/a\\040b\\011c"), Path::new("/a b\tc"));
        assert_eq!(mountinfo_path("/back\\134slash"), Path::new("/back\\slash"));
        // Not an escape: left as it is.
        assert_eq!(mountinfo_path("/x\\9"), Path::new("/x\\9"));
    }

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let base = tempdir("escape");
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        // An image that points a mount destination at the host.
        symlink("/../../..", root.join("evil")).unwrap();
        let rootfd =
            nix::fcntl::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        ensure_in_root(rootfd.as_fd(), Path::new("/evil/made/here"), true).unwrap();
        assert!(root.join("made/here").is_dir(), "created inside the root");
        assert!(!Path::new("/made").exists());
        let f = ensure_in_root(rootfd.as_fd(), Path::new("../../x/file"), false).unwrap();
        assert!(root.join("x/file").is_file());
        drop(f);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn dangling_symlinks_are_made_inside_the_root() {
        let base = tempdir("dangling");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/srv/data", root.join("data")).unwrap();
        symlink("../../../var/log", root.join("etc/logs")).unwrap();
        symlink("/conf/app.conf", root.join("etc/app.conf")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let rootfd =
            nix::fcntl::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        ensure_in_root(rootfd.as_fd(), Path::new("/data/sub"), true).unwrap();
        assert!(root.join("srv/data/sub").is_dir());
        ensure_in_root(rootfd.as_fd(), Path::new("/etc/logs"), true).unwrap();
        assert!(
            root.join("var/log").is_dir(),
            "a relative target, clamped at the root"
        );
        ensure_in_root(rootfd.as_fd(), Path::new("/etc/app.conf"), false).unwrap();
        assert!(root.join("conf/app.conf").is_file());
        let e = ensure_in_root(rootfd.as_fd(), Path::new("/loop1/x"), true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(!Path::new("/srv/data/sub").exists() && !Path::new("/conf/app.conf").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
