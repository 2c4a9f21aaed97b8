//! Whether a CDI spec may be believed: its hooks run as root on the host, so its file and every
//! directory above it must be root's alone. Checked on descriptors, not names: the directory is
//! opened once, its ancestors are walked by `..` from that descriptor, its files are opened
//! relative to it and checked as opened.
//!
//! Root's alone: owned by uid 0; not writable by group or others (a group-writable file even
//! of group root could be anyone's through an ACL, whose mask the group bits show), with no
//! access ACL and not on FUSE (where an ordinary user's mount reports any owner). An ancestor may
//! be world-writable when sticky (/tmp): there others cannot rename or remove root's entries.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
const ACL: &CStr = c"system.posix_acl_access";

/// The spec directory `dir`, opened and checked with its ancestors; None when it is not there.
pub fn open_dir(dir: &Path) -> Result<Option<OwnedFd>, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    check(fd.as_fd(), false)?;
    let mut at = fd.try_clone().map_err(|e| e.to_string())?;
    loop {
        let up = openat(&at, "..", flags, Mode::empty()).map_err(|e| format!("..: {e}"))?;
        let (a, u) = (stat(at.as_fd())?, stat(up.as_fd())?);
        if (a.st_dev, a.st_ino) == (u.st_dev, u.st_ino) {
            break;
        }
        check(up.as_fd(), true).map_err(|e| format!("a directory above it is {e}"))?;
        at = up;
    }
    Ok(Some(fd))
}

/// The program a spec's hook runs as root: root's alone too, with every directory above it.
pub fn check_program(path: &Path) -> Result<(), String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err("not a program's path".into());
    };
    let dir = open_dir(dir)?.ok_or("not there")?;
    let name = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|e| e.to_string())?;
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(&dir, name.as_c_str(), flags, Mode::empty()).map_err(|e| e.to_string())?;
    check(fd.as_fd(), false)
}

/// A spec file of the directory `dir`, opened without blocking (a FIFO cannot hang create) and
/// checked as opened: a regular file of root's alone.
pub fn open_file(dir: BorrowedFd<'_>, name: &CStr) -> Result<std::fs::File, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::empty()).map_err(|e| e.to_string())?;
    if SFlag::from_bits_truncate(stat(fd.as_fd())?.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err("not a regular file".into());
    }
    check(fd.as_fd(), false)?;
    Ok(std::fs::File::from(fd))
}

fn stat(fd: BorrowedFd<'_>) -> Result<FileStat, String> {
    fstat(fd).map_err(|e| e.to_string())
}

/// Root's alone, as the module says; `sticky_ok` for ancestors.
fn check(fd: BorrowedFd<'_>, sticky_ok: bool) -> Result<(), String> {
    let st = stat(fd)?;
    let why = "a CDI spec's hooks run as root";
    if st.st_uid != 0 {
        return Err(format!("owned by uid {}, not root: {why}", st.st_uid));
    }
    let mode = st.st_mode & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky_ok && sticky) {
        return Err(format!("mode {mode:o} lets others write it: {why}"));
    }
    // SAFETY: fgetxattr with a null buffer only asks for the attribute's size.
    let acl = unsafe { libc::fgetxattr(fd.as_raw_fd(), ACL.as_ptr(), std::ptr::null_mut(), 0) };
    if acl >= 0 {
        return Err(format!("given others by an access ACL: {why}"));
    }
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|e| e.to_string())?;
    if fs.filesystem_type().0 as i64 == FUSE_SUPER_MAGIC {
        return Err(format!(
            "on FUSE, whose owners any user's mount may report: {why}"
        ));
    }
    Ok(())
}
