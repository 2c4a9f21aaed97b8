//! Seccomp as the kernel of each ISA enforces it (on this host, and in cross/vm.sh's VMs): the
//! ENOSYS stub above the profile, 64-bit argument words, the compat ABI (i386 on x86_64, arm on
//! aarch64, s390 on s390x) and, where the kernel has no seccomp filter (sparc64), a config that
//! asks for one failing closed.
//!
//! Busybox reaches neither an arbitrary syscall number nor a compat ABI, so the tests run the
//! probe of tests/probe/syscall.c: built here with the host's cc, or given by the VM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chitin_arch::Arch;
use serde_json::json;

use crate::harness::{Outcome, TestResult, skip};
use crate::seccomp::docker_default;
use crate::support::{Bundle, Ctx};

/// A number above every syscall of every ABI's table (arm's private calls end at 0xf0005), so
/// above every profile.
const HIGH: u32 = 0x10_0000;

/// Whether this kernel takes seccomp filters; sparc64's has only strict mode (and yet the
/// seccomp sysctls): /proc/PID/status counts filters only where there can be some.
pub fn kernel_filters() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("\nSeccomp_filters:"))
}

/// For the tests that load a filter.
pub fn needs_filters() -> TestResult {
    if kernel_filters() {
        Ok(())
    } else {
        skip("this kernel has no seccomp filter (seccomp_abi::fails_closed_without_filter_support)")
    }
}

/// Builds the probe with tests/probe/build.sh and the host's cc (once a run), or says why it
/// cannot.
fn built(name: &str, kind: &str, cc: &[&str]) -> Result<PathBuf, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/probe/build.sh");
    let build = Command::new("sh")
        .arg(script)
        .arg(&out)
        .arg(kind)
        .args(cc)
        .output()
        .map_err(|e| format!("sh {script}: {e}"))?;
    if !build.status.success() {
        return Err(format!(
            "{script} {kind} {cc:?} failed: {}",
            String::from_utf8_lossy(&build.stderr).trim()
        ));
    }
    Ok(out)
}

/// The probe for the native ABI: CHITIN_SYSCALL_PROBE where the tests run elsewhere, or built.
pub fn native_probe() -> Result<PathBuf, Outcome> {
    static PROBE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let p = PROBE.get_or_init(|| match std::env::var_os("CHITIN_SYSCALL_PROBE") {
        Some(p) => Ok(PathBuf::from(p)),
        None => built("syscall-probe", "native", &["cc"]),
    });
    p.clone()
        .or_else(|why| skip(format!("no syscall probe: {why}")))
}

/// The compat ABI's probe: CHITIN_COMPAT_PROBE=SCMP_ARCH_X:PATH, or i386's built on x86_64.
fn compat_probe() -> Result<(Arch, PathBuf), Outcome> {
    static PROBE: OnceLock<Result<(Arch, PathBuf), String>> = OnceLock::new();
    let p = PROBE.get_or_init(|| {
        if let Some(v) = std::env::var_os("CHITIN_COMPAT_PROBE") {
            let v = v.to_string_lossy();
            let (arch, path) = v.split_once(':').ok_or("CHITIN_COMPAT_PROBE: no ':'")?;
            let arch = Arch::from_oci_name(arch).ok_or("CHITIN_COMPAT_PROBE: unknown ABI")?;
            return Ok((arch, PathBuf::from(path)));
        }
        if Arch::native().compat().is_empty() {
            return Err(format!("{:?} has no compat ABI", Arch::native()));
        }
        if !cfg!(target_arch = "x86_64") {
            return Err("CHITIN_COMPAT_PROBE is not set (cross/vm.sh sets it)".into());
        }
        built("syscall-probe-i386", "compat", &["cc", "-m32"]).map(|p| (Arch::X86, p))
    });
    p.clone()
        .or_else(|why| skip(format!("no compat probe: {why}")))
}

fn with_probe(ctx: &Ctx, script: &str, probe: &Path, name: &str) -> Bundle {
    let b = ctx.bundle(script);
    std::fs::copy(probe, b.dir.join("rootfs/bin").join(name)).unwrap();
    b
}

fn nr(arch: Arch, name: &str) -> u32 {
    arch.syscall_nr(name)
        .unwrap_or_else(|| panic!("{name} on {arch:?}"))
}

/// Under Docker's profile (default action EPERM), a call the profile does not allow gets EPERM,
/// and a number above every call the profile names gets ENOSYS (the ISA's own number for it), as
/// runc's filter gives it; on s390 the multiplexing call 0 too.
pub fn enosys_above_the_profile() -> TestResult {
    needs_filters()?;
    let probe = native_probe()?;
    let ctx = Ctx::new("enosys")?;
    let arch = Arch::native();
    let acct = nr(arch, "acct");
    let mut calls = vec![acct, HIGH];
    if arch == Arch::S390x {
        calls.push(0);
    }
    let args: Vec<String> = calls.iter().map(u32::to_string).collect();
    let mut b = with_probe(&ctx, &format!("probe {}", args.join(" ")), &probe, "probe");
    b.config["linux"]["seccomp"] = docker_default();
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    let enosys = arch.enosys();
    let mut want = format!("{acct} errno 1\n{HIGH} errno {enosys}\n");
    if arch == Arch::S390x {
        want += &format!("0 errno {enosys}\n");
    }
    assert_eq!(out, want, "{err}");
    Ok(())
}

/// 64-bit argument conditions see the values the ISA's kernel hands over, each 32-bit half in the
/// ABI's byte order (big-endian on s390x): getpid, getppid and geteuid ignore their arguments, so
/// only the filter tells the values apart.
pub fn argument_words_in_the_isa_s_byte_order() -> TestResult {
    needs_filters()?;
    let probe = native_probe()?;
    let ctx = Ctx::new("argwords")?;
    let arch = Arch::native();
    let (pid, ppid, euid) = (nr(arch, "getpid"), nr(arch, "getppid"), nr(arch, "geteuid"));
    let calls = [
        (format!("{pid},0x100000002"), "errno 21"),
        (format!("{pid},2"), "ret "),
        (format!("{pid},0x200000002"), "ret "),
        (format!("{ppid},0,0x500000007"), "errno 22"),
        (format!("{ppid},0,0x600000005"), "ret "),
        (format!("{euid},0x100000000"), "errno 23"),
        (format!("{euid},0xffffffff"), "ret 0"),
    ];
    let args: Vec<&str> = calls.iter().map(|(a, _)| a.as_str()).collect();
    let mut b = with_probe(&ctx, &format!("probe {}", args.join(" ")), &probe, "probe");
    // MASKED_EQ: `value` is the mask, `valueTwo` what the masked argument must equal.
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 21,
             "args": [{"index": 0, "value": 0x1_0000_0002u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 1, "value": 0xff_0000_0000u64, "valueTwo": 0x5_0000_0000u64,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 23,
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_GT"}]}
        ]
    });
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), calls.len(), "{out}{err}");
    for ((call, want), line) in calls.iter().zip(lines) {
        let nr = call.split(',').next().unwrap();
        assert!(line.starts_with(&format!("{nr} {want}")), "{call}: {line}");
    }
    Ok(())
}

/// The compat ABI is filtered by the rules of its own table when the profile lists it (an errno
/// rule, the ENOSYS stub of Docker's profile), and killed (libseccomp's bad-arch action) when
/// only the native ABI is listed. Where the VM gives a busybox of the compat ABI
/// (CHITIN_COMPAT_BUSYBOX), its libc starts under Docker's profile: arm's private calls
/// (set_tls, cacheflush) lie above its table's ordinary numbers.
pub fn compat_abi_is_filtered() -> TestResult {
    needs_filters()?;
    let (compat, probe) = compat_probe()?;
    let ctx = Ctx::new("compat")?;
    let native = Arch::native();
    assert!(
        native.compat().contains(&compat),
        "{compat:?} on {native:?}"
    );
    let (getpid, getppid) = (nr(compat, "getpid"), nr(compat, "getppid"));
    let script = format!("probe32 {getpid} {getppid}; echo status=$?");
    let mut b = with_probe(&ctx, &script, &probe, "probe32");
    let rule = json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [native.oci_name(), compat.oci_name()],
        "syscalls": rule,
    });
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    // The shell is pid 1, the probe its child.
    assert_eq!(
        out,
        format!("{getpid} ret 2\n{getppid} errno 13\nstatus=0\n"),
        "the compat ABI's own getppid refused: {err}"
    );
    b.config["linux"]["seccomp"]["architectures"] = json!([native.oci_name()]);
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "status=159\n", "killed by SIGSYS: {err}");

    let acct = nr(compat, "acct");
    let busybox = std::env::var_os("CHITIN_COMPAT_BUSYBOX");
    let script = format!(
        "probe32 {acct} {HIGH}; {}",
        if busybox.is_some() {
            "busybox32 echo compat-libc-started"
        } else {
            "true"
        }
    );
    let mut b = with_probe(&ctx, &script, &probe, "probe32");
    if let Some(bb) = &busybox {
        std::fs::copy(bb, b.dir.join("rootfs/bin/busybox32")).unwrap();
    }
    let profile = docker_default();
    let listed: Vec<&str> = profile["architectures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(listed.contains(&compat.oci_name()), "{listed:?}");
    b.config["linux"]["seccomp"] = profile;
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    let mut want = format!("{acct} errno 1\n{HIGH} errno {}\n", compat.enosys());
    if busybox.is_some() {
        want += "compat-libc-started\n";
    }
    assert_eq!(out, want, "{err}");
    Ok(())
}

/// Where the kernel has no seccomp filter (sparc64's, strict mode only), a config with a seccomp
/// section fails before anything is made, naming the annotation that runs it without one; with
/// that annotation it runs, unfiltered, unless it also asks for the hardened profile.
pub fn fails_closed_without_filter_support() -> TestResult {
    if kernel_filters() {
        return skip("this kernel takes seccomp filters (the sparc64 VM has none)");
    }
    let ctx = Ctx::new("nofilter")?;
    let mut b = ctx.bundle("grep -E '^Seccomp:' /proc/self/status");
    b.config["linux"]["seccomp"] = docker_default();
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("linux.seccomp") && err.contains("org.chitin.seccomp.skip-unsupported"),
        "{err}"
    );
    let list = ctx.chitin(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "", "nothing made");
    b.config["annotations"] = json!({"org.chitin.seccomp.skip-unsupported": "true"});
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Seccomp:\t0\n");
    // The hardened profile takes no opt-out.
    b.config["annotations"]["org.chitin.profile.security"] = "hardened".into();
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("org.chitin.profile.security: this kernel has no seccomp filter support"),
        "{err}"
    );
    Ok(())
}
