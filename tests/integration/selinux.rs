//! SELinux: the container's processes run in the context named by process.selinuxLabel (exec's
//! too, or the one `exec --process-label` names), its session keyring has it, and the filesystems
//! mounted for it carry linux.mountLabel; the process labels refused where SELinux is not
//! running, the mount label ignored with a warning.
//! The labels are checked on the VM's Debian kernel booted with SELinux and the small policy in
//! tests/vm/selinux/policy.conf (tests/vm/run-v2.sh --selinux).

use std::ffi::CString;
use std::path::Path;

use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::support::Ctx;

const CONTEXT: &str = "/sys/fs/selinux/context";
const A: &str = "system_u:system_r:chitin_a_t";
const B: &str = "system_u:system_r:chitin_b_t";
const FILES: &str = "system_u:object_r:chitin_file_t";

fn enabled() -> bool {
    Path::new(CONTEXT).exists()
}

pub fn refused_without_selinux() -> TestResult {
    let ctx = Ctx::new("se-off")?;
    if enabled() {
        return skip("this kernel runs SELinux (selinux::labels covers it)");
    }
    let mut b = ctx.bundle("true");
    b.config["process"]["selinuxLabel"] = json!(A);
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("process.selinuxLabel: SELinux is not enabled in this kernel"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    // A mount label only labels: without SELinux the mounts are made unlabelled, with a warning
    // (runc drops it silently; crun warns).
    let mut b = ctx.bundle("echo ran");
    b.config["linux"]["mountLabel"] = json!(FILES);
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(
        err.contains("linux.mountLabel: SELinux is not enabled in this kernel"),
        "{err}"
    );
    let b = ctx.bundle("sleep 100");
    let id = ctx.id();
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let out = ctx.chitin(&["exec", "--process-label", A, &id, "true"]);
    assert_eq!(out.status.code(), Some(255), "a failed exec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--process-label: SELinux is not enabled"),
        "{err}"
    );
    Ok(())
}

/// The file's SELinux context, as the kernel reports it.
fn file_label(path: &Path) -> String {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: getxattr into a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"security.selinux".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(
        n >= 0,
        "{}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    String::from_utf8_lossy(&buf[..n as usize])
        .trim_end_matches('\0')
        .to_owned()
}

/// The context of the keyring called `name` (a session keyring is named for its container).
fn keyring_label(name: &str) -> String {
    let keys = std::fs::read_to_string("/proc/keys").unwrap();
    let line = keys
        .lines()
        .find(|l| l.contains(" keyring ") && l.contains(&format!(" {name}: ")))
        .unwrap_or_else(|| panic!("no keyring {name} in /proc/keys:\n{keys}"));
    let id = i64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: KEYCTL_GET_SECURITY into a buffer of the given length.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_GET_SECURITY,
            id,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    assert!(n >= 0, "keyctl: {}", std::io::Error::last_os_error());
    String::from_utf8_lossy(&buf[..n as usize])
        .trim_end_matches('\0')
        .to_owned()
}

pub fn labels() -> TestResult {
    let ctx = Ctx::new("se-on")?;
    if !enabled() {
        return skip(
            "this kernel does not run SELinux (tests/vm/run-v2.sh --selinux boots one that does)",
        );
    }
    if std::fs::write(CONTEXT, A).is_err() {
        return skip("the loaded SELinux policy is not tests/vm/selinux/policy.conf");
    }
    // A context the policy does not define fails while planning, naming its field.
    let mut b = ctx.bundle("true");
    b.config["process"]["selinuxLabel"] = json!("system_u:system_r:nowhere_t");
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("process.selinuxLabel: ")
            && err.contains("is not a valid context in the loaded SELinux policy"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");

    let mut b = ctx.bundle("sleep 100");
    b.config["process"]["selinuxLabel"] = json!(A);
    b.config["linux"]["mountLabel"] = json!(FILES);
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    ctx.chitin_ok(&["start", &id]);
    let pid = ctx.state(&id)["pid"].as_i64().unwrap();
    let current = |pid: i64| {
        std::fs::read_to_string(format!("/proc/{pid}/attr/current"))
            .unwrap()
            .trim_end_matches('\0')
            .to_owned()
    };
    assert_eq!(current(pid), A, "the init");
    assert_eq!(keyring_label(&id), A, "the session keyring");
    let exec = |extra: &[&str]| {
        let out = ctx
            .cmd()
            .arg("exec")
            .args(extra)
            .args([&id, "cat", "/proc/self/attr/current"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\0')
            .to_owned()
    };
    assert_eq!(exec(&[]), A, "exec gets the container's");
    assert_eq!(exec(&["--process-label", B]), B);
    assert_eq!(
        exec(&["--process-label", ""]),
        A,
        "an empty label is no label"
    );
    // containerd execs with --process: a process.json without a label gets the container's.
    let out = ctx.exec_process(&id, &["cat", "/proc/self/attr/current"]);
    assert_eq!(out.trim_end_matches('\0'), A);

    // Filesystems made for the container carry the mount label: the config's tmpfs, devpts and
    // mqueue, and the tmpfs over a masked directory; procfs and sysfs keep the policy's.
    let root = Path::new("/proc").join(pid.to_string()).join("root");
    for m in ["dev", "dev/shm", "dev/pts", "dev/mqueue", "sys/firmware"] {
        assert_eq!(file_label(&root.join(m)), FILES, "/{m}");
    }
    for m in ["proc", "sys"] {
        assert_ne!(file_label(&root.join(m)), FILES, "/{m}");
    }

    crate::escapes::lsm_label_refuses_an_impostor_proc(
        &ctx,
        |c| c["process"]["selinuxLabel"] = json!(A),
        &["exec", "keycreate"],
    );
    Ok(())
}
