//! "tmpcopyup": what a directory of the image held, copied onto the tmpfs mounted over it, so
//! that Podman's `--read-only` and `--tmpfs` keep the image's files there. By fd throughout:
//! the image's tree is the container's, and a symlink in it is copied, never followed; each
//! file is opened without blocking (a FIFO swapped in cannot hang the init) and copied as what
//! the opened fd is, not what a name pointed to a moment before.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, fchmod, fchmodat, fstat, fstatat, mkdirat, mknodat,
};
use nix::unistd::{Gid, Uid, fchown, fchownat, symlinkat};

/// Deeper trees are refused: each level holds two fds open.
const MAX_DEPTH: usize = 128;

/// Copies the contents of directory `from` into directory `to` (the new tmpfs root, whose own
/// mode the caller sets).
pub fn copy_entries(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    copy_level(from, to, 0)
}

fn copy_level(from: BorrowedFd<'_>, to: BorrowedFd<'_>, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "deeper than {MAX_DEPTH} directories"
        )));
    }
    let names: Vec<std::ffi::CString> = Dir::from_fd(from.try_clone_to_owned()?)?
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| e.file_name().to_owned())
        .collect();
    for name in names {
        let name = name.as_c_str();
        let st = fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        match kind {
            SFlag::S_IFDIR | SFlag::S_IFREG => {
                let src: OwnedFd = openat(
                    from,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                copy_opened(src.as_fd(), to, name, depth)?;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(from, name)?;
                symlinkat(target.as_os_str(), to, name)?;
                own_at(to, name, &st, false)?;
            }
            _ => {
                let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
                mknodat(to, name, kind, mode, st.st_rdev)?;
                own_at(to, name, &st, true)?;
            }
        }
    }
    Ok(())
}

/// A directory or regular file, as the fd opened shows it.
fn copy_opened(
    src: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    depth: usize,
) -> io::Result<()> {
    let st = fstat(src)?;
    let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let dst: OwnedFd = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => {
            mkdirat(to, name, Mode::from_bits_truncate(0o700))?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let dst = openat(to, name, flags, Mode::empty())?;
            copy_level(src, dst.as_fd(), depth + 1)?;
            dst
        }
        SFlag::S_IFREG => {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
            let dst = openat(to, name, flags, Mode::from_bits_truncate(0o600))?;
            io::copy(
                &mut std::fs::File::from(src.try_clone_to_owned()?),
                &mut std::fs::File::from(dst.try_clone()?),
            )?;
            dst
        }
        // Swapped for something else since it was listed: left out.
        _ => return Ok(()),
    };
    fchown(
        &dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    // After the chown, which clears set-id bits.
    fchmod(dst.as_fd(), mode)?;
    Ok(())
}

/// The owner (and, but for a symlink, the mode) of the copy `name` in `dir`.
fn own_at(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    st: &nix::sys::stat::FileStat,
    with_mode: bool,
) -> io::Result<()> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if with_mode {
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        // Not a symlink, and in our tmpfs, which nothing else can change yet.
        fchmodat(dir, name, mode, FchmodatFlags::FollowSymlink)?;
    }
    Ok(())
}
