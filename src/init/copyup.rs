//! "tmpcopyup": what a directory of the image held, copied onto the tmpfs mounted over it, so
//! that Podman's `--read-only` and `--tmpfs` keep the image's files there. By fd throughout:
//! the image's tree is the container's, and a symlink in it is copied, never followed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmod, fchmodat, fstatat, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, fchown, fchownat, symlinkat};

/// Copies the contents of directory `from` into directory `to` (the new tmpfs). The tmpfs root
/// keeps the mode and owner its options give it, as in runc.
pub fn copy_dir(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    copy_entries(from, to)
}

/// Copies `from`'s entries into `to`, then `from`'s mode and owner onto `to`.
fn copy_tree(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let st = nix::sys::stat::fstat(from)?;
    copy_entries(from, to)?;
    fchown(
        to,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(to, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    Ok(())
}

fn copy_entries(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let names: Vec<std::ffi::CString> = Dir::from_fd(from.try_clone_to_owned()?)?
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| e.file_name().to_owned())
        .collect();
    for name in names {
        let name = name.as_c_str();
        let st = fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(to, name, Mode::from_bits_truncate(0o700))?;
                let src = openat(from, name, dir_flags, Mode::empty())?;
                let dst = openat(to, name, dir_flags, Mode::empty())?;
                copy_tree(src.as_fd(), dst.as_fd())?;
                continue;
            }
            SFlag::S_IFREG => {
                let src: OwnedFd = openat(
                    from,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let dst: OwnedFd = openat(
                    to,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                io::copy(
                    &mut std::fs::File::from(src),
                    &mut std::fs::File::from(dst.try_clone()?),
                )?;
                fchown(
                    &dst,
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                )?;
                // After the chown, which clears set-id bits.
                fchmod(dst.as_fd(), mode)?;
                continue;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(from, name)?;
                symlinkat(target.as_os_str(), to, name)?;
            }
            _ => mknodat(to, name, kind, mode, st.st_rdev)?,
        }
        fchownat(
            to,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if kind != SFlag::S_IFLNK {
            fchmodat(to, name, mode, FchmodatFlags::FollowSymlink)?;
        }
    }
    Ok(())
}
