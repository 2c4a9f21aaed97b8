//! Cloning the container init: clone3 (with CLONE_INTO_CGROUP when there is a cgroup2 hierarchy),
//! or libc's clone where the kernel or the ISA has no clone3 (sparc64). No CLONE_VM: the child
//! is a fork-like copy of this single-threaded process and may run ordinary Rust code.
//!
//! That holds only while the process has one thread: a clone copies the calling thread alone, so
//! a lock another thread held (the allocator's, stdio's) stays locked in the child for ever, and
//! what that thread was doing is gone. Hence the rule for every dependency on the create and
//! exec paths (a D-Bus client for systemd, a TPM stack, anything async): it must not start a
//! thread before the clone. `clone_init` checks it and refuses to clone otherwise.

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

/// Set to use the clone fallback even where clone3 exists (tests of the sparc64 path).
const FORCE_CLONE_ENV: &str = "CHITIN_FORCE_CLONE";

/// Clones with `flags` (CLONE_NEW* only); the child runs `child`, which must not return. Returns
/// the child's pid and whether it went straight into `cgroup`.
pub fn clone_init(
    flags: u64,
    cgroup: Option<RawFd>,
    child: &mut dyn FnMut(),
) -> io::Result<(i32, bool)> {
    single_threaded()?;
    if std::env::var_os(FORCE_CLONE_ENV).is_none() {
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
        match r {
            0 => {
                child();
                // SAFETY: `child` does not return; should it, the copy ends here.
                unsafe { libc::_exit(127) }
            }
            r if r > 0 => return Ok((r as i32, cgroup.is_some())),
            _ => {
                let err = io::Error::last_os_error();
                // No clone3, or a cgroup that cannot take the task directly: clone plainly and
                // let the caller write cgroup.procs.
                if !matches!(
                    err.raw_os_error(),
                    Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EBUSY | libc::EINVAL)
                ) {
                    return Err(err);
                }
            }
        }
    }
    legacy_clone(flags, child).map(|pid| (pid, false))
}

/// Refuses a process with more than one thread (see the module's comment).
fn single_threaded() -> io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Field 20, num_threads; the fields resume after the command name's last ')'.
    let threads = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].split(' ').nth(17)?.parse::<u32>().ok())
        .ok_or_else(|| io::Error::other("no thread count in /proc/self/stat"))?;
    match threads {
        1 => Ok(()),
        n => Err(io::Error::other(format!(
            "the runtime has {n} threads: the init would be a copy of one of them (no thread may exist before the clone)"
        ))),
    }
}

extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `&mut &mut dyn FnMut` passed below, valid in the child's copy of
    // our memory.
    let child = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
    child();
    127
}

/// libc's clone, which knows each ISA's calling convention (sparc returns the child flag in a
/// second register, s390 swaps the first two arguments). The child runs on a stack of its own,
/// in its own copy of memory.
fn legacy_clone(flags: u64, mut child: &mut dyn FnMut()) -> io::Result<i32> {
    const STACK: usize = 8 << 20;
    // SAFETY: an anonymous private mapping; unmapped below in the parent, the child has its copy.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let arg = &mut child as *mut &mut dyn FnMut() as *mut libc::c_void;
    // SAFETY: the stack grows down from its end on every supported ISA.
    let pid = unsafe {
        libc::clone(
            trampoline,
            (stack as *mut u8).add(STACK).cast(),
            flags as libc::c_int | libc::SIGCHLD,
            arg,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: our own mapping, no longer used in this process.
    unsafe { libc::munmap(stack, STACK) };
    if pid < 0 { Err(err) } else { Ok(pid) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_clone_with_a_second_thread() {
        // The test harness runs tests on threads of its own: this process has several.
        let mut child = || unreachable!("never cloned");
        let e = super::clone_init(0, None, &mut child)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("threads: the init would be a copy of one of them"),
            "{e}"
        );
    }
}
