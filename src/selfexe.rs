//! CVE-2019-5736: a container that gets chitin's own binary executed inside it (a `#!/proc/self/exe`
//! script run by `exec`, say) can open that binary through /proc/<pid>/exe and, once no process
//! runs it any more, reopen it for writing, replacing the host's runtime. So before create, run or
//! exec start anything, chitin makes sure that the executable it runs from lies on a read-only
//! mount: when it does not (the usual case, a binary on a writable root), it binds its binary on a
//! detached mount, makes that mount read-only and executes itself through it, once. Every process
//! cloned from then on has its exe there, and a write through /proc/<pid>/exe fails with EROFS,
//! also after we exit. Nothing is copied. Where such a mount cannot be made (no CAP_SYS_ADMIN, a
//! kernel without open_tree or mount_setattr), a sealed memfd copy is the fallback.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};

/// Returns when our executable is safe from writes; otherwise executes a safe copy of ourselves
/// with the same arguments and environment, and does not return.
pub fn seal() -> io::Result<()> {
    let exe = File::open("/proc/self/exe")?;
    if sealed(exe.as_fd()) {
        return Ok(());
    }
    match read_only_bind(exe.as_fd()) {
        Ok(tree) => reexec(tree.as_fd()),
        // No mount API, or not allowed to mount: the copy.
        Err(_) => reexec(sealed_copy(exe)?.as_fd()),
    }
}

/// On a read-only mount, or a memfd sealed against writes.
fn sealed(exe: BorrowedFd<'_>) -> bool {
    let read_only = nix::sys::statvfs::fstatvfs(exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    read_only
        || fcntl(exe, FcntlArg::F_GET_SEALS)
            .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SealFlag::F_SEAL_WRITE))
}

/// A detached bind mount of `exe` alone, read-only, nosuid and nodev.
fn read_only_bind(exe: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let tree = crate::fsutil::clone_tree(Some(exe), std::path::Path::new(""), false)?;
    crate::fsutil::mount_setattr(
        tree.as_fd(),
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        0,
        false,
    )?;
    Ok(tree)
}

/// The fallback: a memfd copy of our binary, sealed against every change.
fn sealed_copy(mut exe: File) -> io::Result<OwnedFd> {
    // Kernels with vm.memfd_noexec want MFD_EXEC (0x10, newer than the libc crate) said; older
    // ones refuse the flag.
    let create = |flags: libc::c_uint| {
        // SAFETY: memfd_create with a C string name.
        let fd = unsafe { libc::memfd_create(c"chitin".as_ptr(), flags) };
        // SAFETY: the fd is new and ours.
        nix::errno::Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let fd = create(flags | 0x10).or_else(|_| create(flags))?;
    let mut copy = File::from(fd);
    io::copy(&mut exe, &mut copy)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(copy.into())
}

fn reexec(exe: BorrowedFd<'_>) -> io::Result<()> {
    let cstr = |b: &[u8]| CString::new(b).map_err(io::Error::other);
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| cstr(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<_>>()?;
    let err = nix::unistd::execveat(exe, c"", &argv, &envp, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .unwrap_err();
    Err(err.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_fallback_copy_is_sealed_and_identical() {
        let copy = sealed_copy(File::open("/proc/self/exe").unwrap()).unwrap();
        assert!(sealed(copy.as_fd()));
        let copy = File::from(copy);
        // Not writable, not even through a new open of the same file.
        let mut again = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", copy.as_raw_fd()))
            .unwrap();
        let e = io::Write::write(&mut again, b"pwned").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "F_SEAL_WRITE");
        let bytes = std::fs::read(format!("/proc/self/fd/{}", copy.as_raw_fd())).unwrap();
        assert!(
            bytes == std::fs::read("/proc/self/exe").unwrap(),
            "an exact copy"
        );
    }
}
