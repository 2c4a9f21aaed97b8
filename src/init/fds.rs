//! Which fds the container's processes keep: stdio, the preserved ones, and nothing else of the
//! caller's (CVE-2024-21626 is about such fds).

use std::os::fd::{AsRawFd, IntoRawFd};

use nix::fcntl::OFlag;

use super::{InitContext, InitError, InitFds, Step};

static GAPS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Takes each slot of 3..`first` that the caller left closed with a placeholder (an O_PATH fd
/// of "/", close-on-exec), so that no fd the runtime opens (its log, a bind source, a cgroup
/// directory) lands there and reaches the container as a preserved one; the init closes them
/// again. Called first thing, before any fd is opened; the placeholders live as long as the
/// runtime.
pub fn hold_gaps(first: u32) {
    let mut gaps = Vec::new();
    for fd in 3..first as i32 {
        // SAFETY: F_GETFD only asks whether the number is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
        let Ok(p) = nix::fcntl::open("/", flags, nix::sys::stat::Mode::empty()) else {
            continue;
        };
        let p = p.into_raw_fd();
        if p != fd {
            // SAFETY: dup3 onto a number that is not open, then closing the original.
            unsafe {
                libc::dup3(p, fd, libc::O_CLOEXEC);
                libc::close(p);
            }
        }
        gaps.push(fd as u32);
    }
    let _ = GAPS.set(gaps);
}

/// The slots `hold_gaps` took (the cloned init has the runtime's copy).
fn held_gaps() -> &'static [u32] {
    GAPS.get().map_or(&[], |g| g.as_slice())
}

/// The waiting init closes the caller's fds beyond stdio and the preserved ones at once, not
/// at execve: a created container may wait for hours, and an inherited pipe held that long keeps
/// its reader from EOF (runc's init holds only what it is given). What it keeps is its own: the
/// sync socket, the start barrier, the console socket, the log and the bind sources.
pub(super) fn close_inherited(ctx: &InitContext<'_>, fds: &InitFds) -> Result<(), InitError> {
    let binds = ctx.binds.iter().flatten().map(|f| f.as_raw_fd());
    let mut keep: Vec<u32> = [
        Some(fds.sync.as_raw_fd()),
        fds.listener.as_ref().map(|f| f.as_raw_fd()),
        fds.console.as_ref().map(|f| f.as_raw_fd()),
        crate::logger::fd(),
    ]
    .into_iter()
    .flatten()
    .chain(binds)
    .map(|f| f as u32)
    .collect();
    keep.sort_unstable();
    let mut from = ctx.opts.first_own_fd();
    for k in keep {
        if k < from {
            continue;
        }
        if k > from {
            close_range(from, k - 1)?;
        }
        from = k + 1;
    }
    close_range(from, u32::MAX)
}

/// Closes fds `first..=last`, one by one up to the NOFILE hard limit where close_range(2) is
/// missing (before Linux 5.9).
fn close_range(first: u32, last: u32) -> Result<(), InitError> {
    // SAFETY: close_range on fds of this process that nothing here uses any more.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    match nix::errno::Errno::result(rc) {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::ENOSYS) => {
            let (_, hard) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .step(|| "getrlimit(RLIMIT_NOFILE)".into())?;
            let end = u64::from(last).min(hard.min(1 << 20));
            for fd in u64::from(first)..=end {
                // SAFETY: as above, fd by fd; EBADF for those not open.
                unsafe { libc::close(fd as i32) };
            }
            Ok(())
        }
        Err(e) => Err(e).step(|| "close_range".into()),
    }
}

/// Every fd above the preserved ones is marked close-on-exec; the preserved ones (3..3+N) lose
/// the flag so that they reach the container. Runs before any seccomp filter is loaded, so a
/// profile that does not allow close_range cannot stop it (CVE-2024-21626 is about these fds).
pub(super) fn close_on_exec(first: u32) -> Result<(), InitError> {
    // SAFETY: close_range only changes flags of our own fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    match nix::errno::Errno::result(rc) {
        Ok(_) => {}
        // Kernels before 5.11 (EINVAL: no CLOSE_RANGE_CLOEXEC; ENOSYS: no close_range): fd by fd.
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EINVAL) => mark_each(first)?,
        Err(e) => return Err(e).step(|| "close_range".into()),
    }
    for fd in 3..first {
        if held_gaps().contains(&fd) {
            // SAFETY: a placeholder of the runtime's, in a slot the caller left closed.
            unsafe { libc::close(fd as i32) };
            continue;
        }
        // SAFETY: F_SETFD on a number the caller asked to pass on; EBADF is fine.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
    }
    Ok(())
}

/// Marks every fd from `first` up to the NOFILE hard limit close-on-exec. Not through
/// /proc/self/fd: this may be the container's /proc, which a privileged container could have
/// covered to hide an fd.
fn mark_each(first: u32) -> Result<(), InitError> {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .step(|| "getrlimit(RLIMIT_NOFILE)".into())?;
    // The kernel's nr_open caps it (1 << 20 by default).
    let last = hard.min(1 << 20) as i32;
    for fd in first as i32..last {
        // SAFETY: F_SETFD on an fd number; those not open give EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fds_are_marked_without_close_range() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a local array; both ends without O_CLOEXEC.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let lowest = fds[0].min(fds[1]) as u32;
        super::mark_each(lowest).unwrap();
        for fd in fds {
            // SAFETY: F_GETFD on our own fd, closed after.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "fd {fd}");
            unsafe { libc::close(fd) };
        }
    }
}
