//! The last steps before execve: working directory, rlimits, keyring, user and capabilities,
//! no_new_privs, umask and the executable's lookup.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::CapSet;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use std::os::fd::{AsRawFd, BorrowedFd};

use super::ProcessContext;
use super::{InitError, Step, failure};
use crate::fsutil::{mkdir_all_in_root, open_proc, write_proc};
use crate::plan::ProcessPlan;
use crate::seccomp::Filter;
use crate::sync::{Msg, send_msg};

pub struct Prepared<'a> {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// A filter loaded at the very end, right before execve (with no_new_privs).
    seccomp: Option<&'a Filter>,
}

/// Loads the filter; a listener fd goes to the parent, which hands it to the agent.
fn load_seccomp(f: &Filter, sync: BorrowedFd<'_>) -> Result<(), InitError> {
    let fd = crate::seccomp::load::install(f).step(|| "loading the seccomp filter".into())?;
    if let Some(fd) = fd {
        send_msg(sync, &Msg::SeccompListener).step(|| "sync".into())?;
        crate::fdpass::send_fd(sync, "seccomp", fd.as_raw_fd())
            .step(|| "sending the seccomp listener".into())?;
    }
    Ok(())
}

fn cstring(s: &str) -> Result<CString, InitError> {
    CString::new(s).map_err(|_| failure("exec", format!("{s:?} contains a NUL byte")))
}

/// How the working directory is found: the init makes it when missing, as runc does; an exec'd
/// process is refused one that is not there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cwd {
    Make,
    MustExist,
}

pub fn prepare<'a>(
    ctx: &ProcessContext<'a>,
    sync: BorrowedFd<'_>,
    cwd: Cwd,
) -> Result<Prepared<'a>, InitError> {
    let p = ctx.process;
    // First of all: before the container's rlimits (the caller's bound which fds can be open)
    // and before any seccomp filter is loaded.
    super::fds::close_on_exec(ctx.opts.first_own_fd())?;
    let env = enter_cwd(p, cwd)?;
    set_rlimits(p)?;
    // After the rlimits: in a user namespace RLIMIT_RTPRIO and RLIMIT_NICE are what allow it.
    super::tuning::apply(&p.tuning)?;
    if !ctx.opts.no_new_keyring {
        join_keyring(p, ctx.id)?;
    }
    exec_labels(p)?;
    // Where runc loads it: before the capabilities go when there is no no_new_privs (loading
    // then needs CAP_SYS_ADMIN), else as late as possible. A listener is handed over during
    // setup, while the runtime still waits.
    let late = match ctx.seccomp {
        Some(f) if p.no_new_privs && !f.listener => Some(f),
        Some(f) => {
            load_seccomp(f, sync)?;
            None
        }
        None => None,
    };
    become_user(p)?;
    if p.no_new_privs {
        nix::sys::prctl::set_no_new_privs().step(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
    }
    nix::sys::stat::umask(Mode::from_bits_truncate(p.umask.unwrap_or(0o022)));

    let path = lookup(&p.args[0], &env)?;
    Ok(Prepared {
        path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| failure("exec", "NUL in path"))?,
        argv: p
            .args
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        envp: env.iter().map(|e| cstring(e)).collect::<Result<_, _>>()?,
        seccomp: late,
    })
}

/// Enters the working directory; returns the environment, with HOME from the passwd where the
/// process has none. The cwd is resolved inside the new root with magic links refused, so a
/// leaked fd named as /proc/self/fd/N can never become the working directory (CVE-2024-21626).
fn enter_cwd(p: &ProcessPlan, cwd: Cwd) -> Result<Vec<String>, InitError> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step(|| "opening /".into())?;
    let dir = match cwd {
        Cwd::Make => mkdir_all_in_root(root.as_fd(), &p.cwd, 0o755),
        Cwd::MustExist => {
            crate::fsutil::open_in_root(root.as_fd(), &p.cwd, OFlag::O_PATH | OFlag::O_DIRECTORY)
        }
    }
    .step(|| format!("process.cwd {}", p.cwd.display()))?;
    nix::unistd::fchdir(dir.as_fd()).step(|| format!("chdir to {}", p.cwd.display()))?;
    Ok(with_home(&p.env, root.as_fd(), p.uid))
}

fn set_rlimits(p: &ProcessPlan) -> Result<(), InitError> {
    for r in &p.rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: setrlimit with a valid struct.
        let rc = unsafe { libc::setrlimit(r.resource as _, &lim) };
        nix::errno::Errno::result(rc)
            .step(|| format!("setrlimit({}, {}, {})", r.resource, r.soft, r.hard))?;
    }
    Ok(())
}

/// A session keyring of its own, so that the container cannot read the host's keys; with the
/// container's SELinux label, or its process could not use it under the policy.
fn join_keyring(p: &ProcessPlan, id: &str) -> Result<(), InitError> {
    if let Some(label) = &p.selinux_label {
        write_own_attr("attr/keycreate", None, label)
            .step(|| format!("process.selinuxLabel {label:?} (keyring)"))?;
    }
    let name = cstring(id)?;
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a C string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr(),
        )
    };
    // Kernels without keyrings (ENOSYS) run containers all the same.
    if rc < 0 && nix::errno::Errno::last() != nix::errno::Errno::ENOSYS {
        return Err(std::io::Error::last_os_error()).step(|| "joining a session keyring".into());
    }
    Ok(())
}

/// Labels for the execve, written while still privileged and before no_new_privs, as runc does.
/// At the execve, no_new_privs still limits the change: AppArmor to a profile stacked on the
/// current one, SELinux to what the policy grants by nnp_transition or a type bound. Kernels
/// since 5.8 have a directory per LSM for AppArmor; SELinux has only the shared files.
fn exec_labels(p: &ProcessPlan) -> Result<(), InitError> {
    if let Some(profile) = &p.apparmor_profile {
        write_own_attr(
            "attr/apparmor/exec",
            Some("attr/exec"),
            &format!("exec {profile}"),
        )
        .step(|| format!("process.apparmorProfile {profile:?}"))?;
    }
    if let Some(label) = &p.selinux_label {
        write_own_attr("attr/exec", None, label)
            .step(|| format!("process.selinuxLabel {label:?}"))?;
    }
    Ok(())
}

/// The user, groups and capabilities. The bounding set is dropped while still privileged; the
/// other sets after the uid change, which PR_SET_KEEPCAPS lets the permitted set survive.
fn become_user(p: &ProcessPlan) -> Result<(), InitError> {
    for c in caps::all() {
        if !p.caps.bounding.contains(&c)
            && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false)
        {
            caps::drop(None, CapSet::Bounding, c).map_err(|e| {
                failure(
                    "capabilities",
                    format!("dropping {c} from the bounding set: {e}"),
                )
            })?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).step(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let gids: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&gids) {
        // A user namespace whose maps an ordinary user wrote denies setgroups (user_namespaces(7));
        // with no groups asked for (the planner refuses any) there is nothing to drop.
        Err(nix::errno::Errno::EPERM) if gids.is_empty() && setgroups_denied() => {}
        r => r.step(|| "setgroups".into())?,
    }
    let (uid, gid) = (Uid::from_raw(p.uid), Gid::from_raw(p.gid));
    nix::unistd::setresgid(gid, gid, gid).step(|| format!("setresgid({gid})"))?;
    nix::unistd::setresuid(uid, uid, uid).step(|| format!("setresuid({uid})"))?;
    nix::sys::prctl::set_keepcaps(false).step(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let set = |which: CapSet, v: &caps::CapsHashSet, name: &str| {
        caps::set(None, which, v)
            .map_err(|e| failure("capabilities", format!("setting the {name} set: {e}")))
    };
    set(CapSet::Effective, &p.caps.effective, "effective")?;
    set(CapSet::Inheritable, &p.caps.inheritable, "inheritable")?;
    set(CapSet::Permitted, &p.caps.permitted, "permitted")?;
    caps::clear(None, CapSet::Ambient).map_err(|e| failure("capabilities", e.to_string()))?;
    for c in &p.caps.ambient {
        caps::raise(None, CapSet::Ambient, *c)
            .map_err(|e| failure("capabilities", format!("raising ambient {c}: {e}")))?;
    }
    Ok(())
}

/// Writes one of our own LSM attributes (`fallback` where the kernel lacks `attr`) through the
/// container's /proc, checked to be a procfs (CVE-2019-16884). Named by pid: /proc/self is a
/// symlink, and the write refuses symlinks.
fn write_own_attr(attr: &str, fallback: Option<&str>, value: &str) -> std::io::Result<()> {
    let proc = open_proc(Path::new("/proc"))?;
    let pid = std::process::id();
    let write = |a: &str| write_proc(proc.as_fd(), Path::new(&format!("{pid}/{a}")), value);
    match (write(attr), fallback) {
        (Err(e), Some(f)) if e.raw_os_error() == Some(libc::ENOENT) => write(f),
        (r, _) => r,
    }
}

/// `env`, with HOME set as runc sets it when it has none (or an empty one).
fn with_home(env: &[String], root: BorrowedFd<'_>, uid: u32) -> Vec<String> {
    let mut env = env.to_vec();
    if !env
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|h| !h.is_empty()))
    {
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={}", home_of(root, uid)));
    }
    env
}

/// The home directory of `uid` in the container's /etc/passwd, or "/" (runc's HOME for a process
/// whose env has none).
fn home_of(root: BorrowedFd<'_>, uid: u32) -> String {
    let text = crate::fsutil::read_small_file_in_root(root, Path::new("/etc/passwd"), 1 << 20)
        .unwrap_or_default();
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map_or_else(|| "/".to_owned(), |f| f[5].to_owned())
}

/// Finds the program as runc does: a path with a slash as it is (the kernel decides whether it
/// runs: root, or a user with CAP_DAC_OVERRIDE, may run what access(2) as that user would
/// refuse), a bare name on the process's own PATH, as a regular file with an execute bit.
fn lookup(prog: &str, env: &[String]) -> Result<PathBuf, InitError> {
    if prog.contains('/') {
        return Ok(PathBuf::from(prog));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::fsutil::DEFAULT_PATH);
    crate::fsutil::find_in_path(prog, path).ok_or_else(|| {
        failure(
            "exec",
            format!("{prog:?}: executable file not found in $PATH"),
        )
    })
}

/// execve; returns only on failure.
pub fn exec(p: Prepared<'_>) -> InitError {
    if let Some(f) = p.seccomp {
        if let Err(e) = crate::seccomp::load::install(f) {
            return failure("loading the seccomp filter", e.to_string());
        }
    }
    let err = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    // As runc words it: "exec /run.sh: no such file or directory".
    let why = std::io::Error::from_raw_os_error(err as i32).to_string();
    let why = why
        .split(" (os error")
        .next()
        .unwrap_or(&why)
        .to_lowercase();
    failure(&format!("exec {}", p.path.to_string_lossy()), why)
}

fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}
