//! Seccomp: the profile from `linux.seccomp` as plain data, compiled to BPF by chitin itself over
//! the arch crate's tables (`compile`), and loaded with seccomp(2) (`load`).
//!
//! The OCI section is parsed here rather than by oci-spec, whose architecture list has no
//! SCMP_ARCH_SPARC64 (chitin's own extension).

pub mod bpf;
pub mod compile;
#[cfg(any(
    feature = "fuzzing",
    all(
        test,
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "s390x")
    )
))]
pub mod differential;
pub mod load;

use std::path::PathBuf;

use chitin_arch::Arch;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("linux.seccomp: {0}")]
    Compile(#[from] bpf::TooLong),
    #[error(
        "linux.seccomp: this kernel has no seccomp filter support (sparc64 kernels have only strict mode); to run without the filter, set the annotation {SKIP_ANNOTATION}=true"
    )]
    Unsupported,
    #[error(
        "{}: this kernel has no seccomp filter support, which the security profile needs",
        crate::plan::hardening::ANNOTATION
    )]
    ProfileUnsupported,
}

/// The explicit opt-out for kernels without seccomp filters.
pub const SKIP_ANNOTATION: &str = "org.chitin.seccomp.skip-unsupported";

/// A compiled filter and how to load it.
#[derive(Debug, Clone)]
pub struct Filter {
    pub prog: Vec<bpf::SockFilter>,
    pub flags: u32,
    /// SCMP_ACT_NOTIFY is used: the listener fd goes to the agent at listenerPath.
    pub listener: bool,
    /// A security profile's program, loaded first (crate::plan::hardening).
    pub beneath: Option<Vec<bpf::SockFilter>>,
}

/// Compiles the profile for loading, or, on a kernel without filter support, fails closed
/// unless the config opts out with the annotation (then no filter: `Ok(None)`).
pub fn prepare(
    p: Option<&Profile>,
    beneath: Option<&Profile>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Filter>, SeccompError> {
    if p.is_none() && beneath.is_none() {
        return Ok(None);
    }
    let supported = load::filters_supported();
    // A security profile takes no opt-out: it would be a promise the kernel cannot keep.
    if beneath.is_some() && !supported {
        return Err(SeccompError::ProfileUnsupported);
    }
    let main = p
        .map(|p| prepare_for(p, annotations, supported))
        .transpose()?;
    let Some(b) = beneath else {
        return Ok(main.flatten());
    };
    let prog = compile::compile(b)?;
    Ok(Some(match main.flatten() {
        Some(f) => Filter {
            beneath: Some(prog),
            ..f
        },
        None => Filter {
            prog,
            flags: 0,
            listener: false,
            beneath: None,
        },
    }))
}

fn prepare_for(
    p: &Profile,
    annotations: &std::collections::BTreeMap<String, String>,
    supported: bool,
) -> Result<Option<Filter>, SeccompError> {
    if !supported {
        return match annotations.get(SKIP_ANNOTATION).map(String::as_str) {
            Some("true") => Ok(None),
            _ => Err(SeccompError::Unsupported),
        };
    }
    // Only where every listed ABI has the other byte order (which libseccomp, so runc, refuses
    // outright): the init would be killed at its first system call.
    if !p.archs.contains(&Arch::native()) {
        return Err(field(
            "architectures",
            format!(
                "none is this host's ABI ({:?}) or of its byte order",
                Arch::native()
            ),
        ));
    }
    let listener = p.needs_listener();
    let flags = p.flags | if listener { FLAG_NEW_LISTENER } else { 0 };
    Ok(Some(Filter {
        prog: compile::compile(p)?,
        flags,
        listener,
        beneath: None,
    }))
}

fn field(f: impl Into<String>, reason: impl Into<String>) -> SeccompError {
    SeccompError::Field {
        field: f.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KillThread,
    KillProcess,
    Trap(u16),
    Errno(u16),
    Trace(u16),
    Allow,
    Log,
    Notify,
}

impl Action {
    /// The SECCOMP_RET_* value the filter returns.
    pub fn ret(self) -> u32 {
        match self {
            Action::KillThread => 0x0000_0000,
            Action::KillProcess => 0x8000_0000,
            Action::Trap(d) => 0x0003_0000 | u32::from(d),
            Action::Errno(e) => 0x0005_0000 | u32::from(e),
            Action::Trace(d) => 0x7ff0_0000 | u32::from(d),
            Action::Log => 0x7ffc_0000,
            Action::Notify => 0x7fc0_0000,
            Action::Allow => 0x7fff_0000,
        }
    }

    /// Actions after which a syscall the profile does not know may simply run, so that the
    /// ENOSYS fallback is not needed (runc treats TRACE the same: a tracer handles new calls).
    pub fn lets_through(self) -> bool {
        matches!(self, Action::Allow | Action::Log | Action::Trace(_))
    }

    fn parse(f: &str, name: &str, errno: Option<u32>) -> Result<Action, SeccompError> {
        let data = |what: &str, default: u16| -> Result<u16, SeccompError> {
            match errno {
                None => Ok(default),
                Some(v) if v <= 0xffff => Ok(v as u16),
                Some(v) => Err(field(f, format!("{what} {v} does not fit in 16 bits"))),
            }
        };
        Ok(match name {
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
            "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
            "SCMP_ACT_TRAP" => Action::Trap(data("errnoRet", 0)?),
            "SCMP_ACT_ERRNO" => Action::Errno(data("errnoRet", libc::EPERM as u16)?),
            "SCMP_ACT_TRACE" => Action::Trace(data("errnoRet", libc::EPERM as u16)?),
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_LOG" => Action::Log,
            "SCMP_ACT_NOTIFY" => Action::Notify,
            other => return Err(field(f, format!("unknown action {other:?}"))),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// (arg & value) == value_two
    MaskedEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCmp {
    pub index: u8,
    pub op: CmpOp,
    pub value: u64,
    pub value_two: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<ArgCmp>,
}

/// SECCOMP_FILTER_FLAG_*.
pub const FLAG_TSYNC: u32 = 1;
pub const FLAG_LOG: u32 = 2;
pub const FLAG_SPEC_ALLOW: u32 = 4;
pub const FLAG_NEW_LISTENER: u32 = 8;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// The runtime-spec names of the filter flags chitin takes.
pub const FLAG_NAMES: [(&str, u32); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", FLAG_LOG),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", FLAG_SPEC_ALLOW),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        FLAG_WAIT_KILLABLE_RECV,
    ),
];

pub const ACTION_NAMES: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];

pub const OPERATOR_NAMES: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub default_action: Action,
    /// The ABIs the filter decides for; any other gets SECCOMP_RET_KILL_THREAD, as libseccomp's
    /// default bad-arch action.
    pub archs: Vec<Arch>,
    pub flags: u32,
    pub rules: Vec<Rule>,
    pub listener_path: Option<PathBuf>,
    pub listener_metadata: String,
}

impl Profile {
    pub fn needs_listener(&self) -> bool {
        self.default_action == Action::Notify
            || self.rules.iter().any(|r| r.action == Action::Notify)
    }
}

// The OCI shape of linux.seccomp.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciSeccomp {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    flags: Vec<String>,
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: String,
    #[serde(default)]
    syscalls: Vec<OciSyscall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciSyscall {
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<OciArg>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// Parses the `linux.seccomp` object of a config.
pub fn from_json(v: serde_json::Value) -> Result<Profile, SeccompError> {
    let oci: OciSeccomp = serde_path_to_error::deserialize(v)
        .map_err(|e| field(e.path().to_string(), e.inner().to_string()))?;
    let default_action =
        Action::parse("defaultAction", &oci.default_action, oci.default_errno_ret)?;
    let archs = archs(&oci.architectures)?;
    let flags = flags(&oci.flags)?;
    let mut rules = Vec::new();
    for (i, s) in oci.syscalls.into_iter().enumerate() {
        rules.extend(split_like_runc(rule(&format!("syscalls[{i}]"), s)?));
    }
    let profile = Profile {
        default_action,
        archs,
        flags,
        rules,
        listener_path: oci.listener_path,
        listener_metadata: oci.listener_metadata,
    };
    check_listener(&profile)?;
    Ok(profile)
}

/// The listed ABIs, and the native one: the filter always covers it, as libseccomp's does (its
/// context starts with it and runc only adds to it), so that a profile listing only
/// SCMP_ARCH_X86 does not kill the init on its first x86_64 call. Only where the listed ABIs
/// share its byte order, which libseccomp requires of one filter.
fn archs(names: &[String]) -> Result<Vec<Arch>, SeccompError> {
    let mut archs = Vec::new();
    for (i, a) in names.iter().enumerate() {
        let arch = Arch::from_oci_name(a).ok_or_else(|| {
            field(
                format!("architectures[{i}]"),
                format!("unknown architecture {a:?}"),
            )
        })?;
        if !archs.contains(&arch) {
            archs.push(arch);
        }
    }
    let native = Arch::native();
    if !archs.contains(&native) && archs.iter().all(|a| a.endian() == native.endian()) {
        archs.push(native);
    }
    Ok(archs)
}

fn flags(names: &[String]) -> Result<u32, SeccompError> {
    let mut flags = 0;
    for (i, f) in names.iter().enumerate() {
        flags |= match f.as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => FLAG_TSYNC,
            "SECCOMP_FILTER_FLAG_LOG" => FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => FLAG_SPEC_ALLOW,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => FLAG_WAIT_KILLABLE_RECV,
            other => {
                return Err(field(
                    format!("flags[{i}]"),
                    format!("unknown flag {other:?}"),
                ));
            }
        };
    }
    Ok(flags)
}

/// One entry of `syscalls`, at field `f`.
fn rule(f: &str, s: OciSyscall) -> Result<Rule, SeccompError> {
    if s.names.is_empty() {
        return Err(field(format!("{f}.names"), "empty"));
    }
    let action = Action::parse(&format!("{f}.action"), &s.action, s.errno_ret)?;
    let args = s
        .args
        .into_iter()
        .enumerate()
        .map(|(j, a)| arg(&format!("{f}.args[{j}]"), a))
        .collect::<Result<_, _>>()?;
    if action == Action::Notify {
        if let Some(j) = s.names.iter().position(|n| n == "write") {
            return Err(field(
                format!("{f}.names[{j}]"),
                "SCMP_ACT_NOTIFY cannot be used for write (the runtime's own writes would wait on the agent)",
            ));
        }
    }
    Ok(Rule {
        names: s.names,
        action,
        args,
    })
}

fn arg(af: &str, a: OciArg) -> Result<ArgCmp, SeccompError> {
    if a.index > 5 {
        return Err(field(
            format!("{af}.index"),
            format!("{} is not an argument index (0..5)", a.index),
        ));
    }
    let op = match a.op.as_str() {
        "SCMP_CMP_NE" => CmpOp::Ne,
        "SCMP_CMP_LT" => CmpOp::Lt,
        "SCMP_CMP_LE" => CmpOp::Le,
        "SCMP_CMP_EQ" => CmpOp::Eq,
        "SCMP_CMP_GE" => CmpOp::Ge,
        "SCMP_CMP_GT" => CmpOp::Gt,
        "SCMP_CMP_MASKED_EQ" => CmpOp::MaskedEq,
        other => {
            return Err(field(
                format!("{af}.op"),
                format!("unknown operator {other:?}"),
            ));
        }
    };
    Ok(ArgCmp {
        index: a.index as u8,
        op,
        value: a.value,
        value_two: a.value_two,
    })
}

/// The rules of a profile with NOTIFY actions: a listener path, absolute; the killable-wait flag
/// only with them; never NOTIFY by default.
fn check_listener(profile: &Profile) -> Result<(), SeccompError> {
    match (&profile.listener_path, profile.needs_listener()) {
        (None, true) => {
            return Err(field(
                "listenerPath",
                "SCMP_ACT_NOTIFY needs a listenerPath",
            ));
        }
        (Some(p), _) if !p.is_absolute() => {
            return Err(field(
                "listenerPath",
                format!("{} is not an absolute path", p.display()),
            ));
        }
        _ => {}
    }
    if profile.flags & FLAG_WAIT_KILLABLE_RECV != 0 && !profile.needs_listener() {
        return Err(field(
            "flags",
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule",
        ));
    }
    if profile.default_action == Action::Notify {
        return Err(field(
            "defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action (the runtime's own calls would wait on the agent)",
        ));
    }
    Ok(())
}

/// A rule with several conditions on one argument becomes one rule per condition, each alone,
/// as runc hands such rules to libseccomp (which cannot AND comparisons of one argument): the
/// conditions are then alternatives, not a conjunction that could never hold.
pub fn split_like_runc(r: Rule) -> Vec<Rule> {
    let repeated = r
        .args
        .iter()
        .enumerate()
        .any(|(i, a)| r.args[..i].iter().any(|b| b.index == a.index));
    if !repeated {
        return vec![r];
    }
    r.args
        .iter()
        .map(|a| Rule {
            names: r.names.clone(),
            action: r.action,
            args: vec![*a],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_semantics_native_abi_split_conditions_notify_write() {
        let p = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]}]}))
        .unwrap();
        if Arch::native().endian() == Arch::X86.endian() {
            assert!(p.archs.contains(&Arch::native()));
        }
        let added = Arch::native().endian() == Arch::X86.endian() && Arch::native() != Arch::X86;
        assert_eq!(p.archs.len(), if added { 3 } else { 2 });
        assert_eq!(p.rules.len(), 3, "one rule per condition");
        assert!(p.rules.iter().all(|r| r.args.len() == 1));
        let one = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]}]}))
        .unwrap();
        assert_eq!(one.rules.len(), 1, "different arguments stay a conjunction");
        let e = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]}))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("syscalls[0].names[1]") && e.contains("write"),
            "{e}"
        );
    }

    #[test]
    fn kernels_without_filters_fail_closed_unless_opted_out() {
        let p = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_SPARC64"]})).unwrap();
        let mut ann = std::collections::BTreeMap::new();
        let e = prepare_for(&p, &ann, false).unwrap_err().to_string();
        assert!(
            e.contains("no seccomp filter support") && e.contains(SKIP_ANNOTATION),
            "{e}"
        );
        ann.insert(SKIP_ANNOTATION.to_owned(), "yes".to_owned());
        assert!(
            prepare_for(&p, &ann, false).is_err(),
            "only \"true\" opts out"
        );
        ann.insert(SKIP_ANNOTATION.to_owned(), "true".to_owned());
        assert!(
            prepare_for(&p, &ann, false).unwrap().is_none(),
            "no filter, by request"
        );
        let native = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"})).unwrap();
        assert!(
            prepare_for(&native, &ann, true).unwrap().is_some(),
            "the opt-out changes nothing where filters work"
        );
        if Arch::native().endian() != Arch::Sparc64.endian() {
            let e = prepare_for(&p, &ann, true).unwrap_err().to_string();
            assert!(e.contains("linux.seccomp.architectures"), "{e}");
        }
    }
}
