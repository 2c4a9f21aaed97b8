//! Cloning the container init: clone3 (with CLONE_INTO_CGROUP when there is a cgroup2 hierarchy),
//! or plain clone where the kernel or the ISA has no clone3. No CLONE_VM and no new stack: the
//! child is a fork-like copy of this single-threaded process and may run ordinary Rust code.

use std::io;
use std::os::fd::RawFd;

/// struct clone_args from <linux/sched.h>, up to cgroup (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x200000000;

pub enum Forked {
    Parent { pid: i32, into_cgroup: bool },
    Child,
}

/// Clones with `flags` (CLONE_NEW* only). Returns whether the child went straight into `cgroup`.
pub fn clone_init(flags: u64, cgroup: Option<RawFd>) -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 without CLONE_VM behaves like fork; the struct outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        return Ok(Forked::Child);
    }
    if r > 0 {
        return Ok(Forked::Parent {
            pid: r as i32,
            into_cgroup: cgroup.is_some(),
        });
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // No clone3 (old kernel, sparc64), or a cgroup that cannot take the task directly: clone
        // plainly and let the caller write cgroup.procs.
        Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EBUSY) | Some(libc::EINVAL) => {
            legacy_clone(flags)
        }
        _ => Err(err),
    }
}

fn legacy_clone(flags: u64) -> io::Result<Forked> {
    let f = flags as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: as above; with a null stack the child continues on a copy of ours. s390 swaps
    // the first two arguments.
    #[cfg(target_arch = "s390x")]
    let r = unsafe { libc::syscall(libc::SYS_clone, 0usize, f, 0usize, 0usize, 0usize) };
    #[cfg(not(target_arch = "s390x"))]
    let r = unsafe { libc::syscall(libc::SYS_clone, f, 0usize, 0usize, 0usize, 0usize) };
    match r {
        0 => Ok(Forked::Child),
        r if r > 0 => Ok(Forked::Parent {
            pid: r as i32,
            into_cgroup: false,
        }),
        _ => Err(io::Error::last_os_error()),
    }
}
