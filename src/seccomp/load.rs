//! Installing a compiled filter with seccomp(2).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::bpf::SockFilter;

const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Whether this kernel takes seccomp filters. sparc64's has only strict mode, yet answers
/// SECCOMP_GET_ACTION_AVAIL (and has the sysctls) all the same: only SET_MODE_FILTER tells, as
/// for a flag below (seen on a real sparc64 kernel; under QEMU user mode the call is ENOSYS).
pub fn filters_supported() -> bool {
    flag_supported(0)
}

/// Whether the kernel knows a SECCOMP_FILTER_FLAG_*: with a null program it fails with EFAULT
/// for a known flag and EINVAL for an unknown one, and loads nothing either way.
pub fn flag_supported(flag: u32) -> bool {
    // WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER.
    let flag = if flag == super::FLAG_WAIT_KILLABLE_RECV {
        flag | super::FLAG_NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: a null program is never read past the flag check.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flag as libc::c_ulong,
            std::ptr::null::<SockFprog>(),
        )
    };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Loads a filter: the program beneath first, with no flags (so a config's SPEC_ALLOW does not
/// reach it: the speculation mitigation a filter turns on stays on), then the config's own.
pub fn install(f: &super::Filter) -> io::Result<Option<OwnedFd>> {
    if let Some(b) = &f.beneath {
        load(b, 0)?;
    }
    load(&f.prog, f.flags)
}

/// Loads `prog` for this thread (or process, with TSYNC). With SECCOMP_FILTER_FLAG_NEW_LISTENER
/// the kernel returns the notification fd.
pub fn load(prog: &[SockFilter], flags: u32) -> io::Result<Option<OwnedFd>> {
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            &fprog as *const SockFprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & super::FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the return value is a new fd.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(r as i32) }));
    }
    Ok(None)
}
