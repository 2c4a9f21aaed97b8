//! Differential checks against libseccomp, the oracle: profiles are compiled by chitin and by
//! libseccomp, and both BPF programs run through the interpreter over many (ABI, syscall,
//! arguments) inputs; every decision must match. Run for every ABI libseccomp knows of the five
//! ISAs whose byte order is the host's: libseccomp 2.5.4 exports a filter of the other byte
//! order with some return values swapped, so s390 and s390x are checked on an s390x host (under
//! qemu-user, cross/test-qemu.sh). sparc, which libseccomp lacks, is covered by hand-worked
//! tests in compile/tests.rs. One generator makes the profiles and the inputs: the unit test
//! drives it with a seeded PRNG, the fuzz target (tests/fuzz) with libFuzzer's bytes.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::FromRawFd;
use std::sync::OnceLock;

use chitin_arch::Arch;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use super::bpf::{SockFilter, run, seccomp_data};
use super::compile::compile_with;
use super::{Action, ArgCmp, CmpOp, Profile, Rule};
use crate::fuzzing::{Bytes, Choices};

pub fn scmp_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::X86_64 => ScmpArch::X8664,
        Arch::X86 => ScmpArch::X86,
        Arch::X32 => ScmpArch::X32,
        Arch::Aarch64 => ScmpArch::Aarch64,
        Arch::Arm => ScmpArch::Arm,
        Arch::Ppc64le => ScmpArch::Ppc64Le,
        Arch::S390x => ScmpArch::S390X,
        Arch::S390 => ScmpArch::S390,
        Arch::Sparc64 | Arch::Sparc => unreachable!("libseccomp has no sparc"),
    }
}

fn scmp_action(a: Action) -> ScmpAction {
    match a {
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap(_) => ScmpAction::Trap,
        Action::Errno(e) => ScmpAction::Errno(i32::from(e)),
        Action::Trace(d) => ScmpAction::Trace(d),
        Action::Allow => ScmpAction::Allow,
        Action::Log => ScmpAction::Log,
        Action::Notify => ScmpAction::Notify,
    }
}

fn scmp_op(c: &ArgCmp) -> ScmpArgCompare {
    let op = match c.op {
        CmpOp::Ne => ScmpCompareOp::NotEqual,
        CmpOp::Lt => ScmpCompareOp::Less,
        CmpOp::Le => ScmpCompareOp::LessOrEqual,
        CmpOp::Eq => ScmpCompareOp::Equal,
        CmpOp::Ge => ScmpCompareOp::GreaterEqual,
        CmpOp::Gt => ScmpCompareOp::Greater,
        CmpOp::MaskedEq => ScmpCompareOp::MaskedEqual(c.value),
    };
    let datum = if c.op == CmpOp::MaskedEq {
        c.value_two
    } else {
        c.value
    };
    ScmpArgCompare::new(u32::from(c.index), op, datum)
}

/// libseccomp's program for the profile.
pub fn oracle(p: &Profile) -> Vec<SockFilter> {
    let mut ctx = ScmpFilterContext::new(scmp_action(p.default_action)).unwrap();
    // The host's ABI goes first: libseccomp refuses to mix byte orders in one filter (EDOM).
    if !p.archs.contains(&Arch::native()) {
        ctx.remove_arch(ScmpArch::native()).unwrap();
    }
    for a in p.archs.iter().filter(|a| **a != Arch::native()) {
        ctx.add_arch(scmp_arch(*a))
            .unwrap_or_else(|e| panic!("{a:?}: {e}"));
    }
    for r in &p.rules {
        let sys = ScmpSyscall::from_name(&r.names[0]).unwrap();
        let cmps: Vec<ScmpArgCompare> = r.args.iter().map(scmp_op).collect();
        // As runc hands libseccomp a rule with several conditions on one argument: each
        // condition as a rule of its own.
        let repeated = (0..6).any(|i| r.args.iter().filter(|a| a.index == i).count() > 1);
        if repeated {
            for c in cmps {
                ctx.add_rule_conditional(scmp_action(r.action), sys, &[c])
                    .unwrap();
            }
        } else {
            ctx.add_rule_conditional(scmp_action(r.action), sys, &cmps)
                .unwrap();
        }
    }
    // SAFETY: memfd_create with a C string name.
    let fd = unsafe { libc::memfd_create(c"oracle".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a new, open fd that nothing else owns.
    let mut f = unsafe { File::from_raw_fd(fd) };
    ctx.export_bpf(&f).unwrap();
    f.rewind().unwrap();
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| SockFilter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// Names both sides number the same way on every ABI of the set (libseccomp 2.5 predates some
/// newer calls), and that the host's own ABI has: libseccomp resolves a rule's name through the
/// host's ABI, and for names the host lacks its stand-in numbers collide (2.5.4 puts ppc64le's
/// sys_debug_setcontext, 256, on switch_endian's 363).
pub fn common_names(archs: &[Arch]) -> Vec<&'static str> {
    archs[0]
        .syscalls()
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| Arch::native().syscall_nr(n).is_some())
        .filter(|n| {
            archs.iter().all(|a| {
                let ours = a.syscall_nr(n);
                let theirs = ScmpSyscall::from_name_by_arch(n, scmp_arch(*a))
                    .ok()
                    .map(i32::from);
                ours.is_some() && theirs.is_some_and(|t| t >= 0 && Some(t as u32) == ours)
            })
        })
        .collect()
}

const ACTIONS: [Action; 6] = [
    Action::Allow,
    Action::Errno(1),
    Action::Errno(13),
    Action::KillProcess,
    Action::Trap(0),
    Action::Log,
];
const OPS: [CmpOp; 7] = [
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Eq,
    CmpOp::Ge,
    CmpOp::Gt,
    CmpOp::MaskedEq,
];

/// The actions libseccomp takes here: it refuses those the kernel cannot confirm it supports
/// (under QEMU user mode, where seccomp(2) is refused, KILL_PROCESS and LOG).
pub fn usable_actions() -> Vec<Action> {
    ACTIONS
        .into_iter()
        .filter(|a| ScmpFilterContext::new(scmp_action(*a)).is_ok())
        .collect()
}

pub fn random_profile(
    rng: &mut impl Choices,
    actions: &[Action],
    archs: &[Arch],
    names: &[&'static str],
) -> Profile {
    let default_action = actions[rng.below(actions.len())];
    let wide = !archs.iter().any(|a| a.args_are_32bit());
    let value = |rng: &mut dyn Choices| -> u64 {
        let v = match rng.below(4) {
            0 => rng.below(8) as u64,
            1 => rng.next() & 0xffff_ffff,
            2 => (rng.below(3) as u64) << 32 | rng.below(3) as u64,
            _ => rng.next(),
        };
        if wide { v } else { v & 0xffff_ffff }
    };
    let mut used = std::collections::HashSet::new();
    let mut rules = Vec::new();
    for _ in 0..(5 + rng.below(40)) {
        let name = names[rng.below(names.len())];
        if !used.insert(name) {
            continue;
        }
        let others: Vec<Action> = actions
            .iter()
            .copied()
            .filter(|a| *a != default_action)
            .collect();
        let action = others[rng.below(others.len())];
        let mut args: Vec<ArgCmp> = Vec::new();
        for _ in 0..rng.below(4) {
            // Now and then a second condition on an argument already compared: runc's profiles
            // have those, and both sides must read them as runc does.
            let index = match args.last() {
                Some(a) if rng.below(4) == 0 => a.index,
                _ => rng.below(6) as u8,
            };
            let again = args.iter().any(|a| a.index == index);
            if again && rng.below(2) == 0 {
                continue;
            }
            // Alternatives on one argument are equalities in the profiles people write.
            // libseccomp 2.5.4 merges two rules of one syscall ordering one argument (LT, GT...)
            // into a program that decides neither rule's way (found here: arg > X no longer
            // matches once a rule arg < Y is added), so those are left out, not copied.
            let ops: &[CmpOp] = if again {
                &[CmpOp::Eq, CmpOp::MaskedEq]
            } else {
                &OPS
            };
            args.push(ArgCmp {
                index,
                op: ops[rng.below(ops.len())],
                value: value(rng),
                value_two: value(rng),
            });
        }
        rules.push(Rule {
            names: vec![name.to_owned()],
            action,
            args,
        });
    }
    Profile {
        default_action,
        archs: archs.to_vec(),
        flags: 0,
        rules,
        listener_path: None,
        listener_metadata: String::new(),
    }
}

/// Arguments around each comparison's edges, and random ones.
fn inputs(rng: &mut impl Choices, r: &Rule) -> Vec<[u64; 6]> {
    let mut out = vec![[0; 6]];
    for _ in 0..12 {
        let mut args = [0u64; 6];
        for a in args.iter_mut() {
            *a = rng.next();
        }
        for c in &r.args {
            let v = if c.op == CmpOp::MaskedEq {
                c.value_two | (rng.next() & !c.value)
            } else {
                c.value
            };
            args[c.index as usize] = match rng.below(6) {
                0 => v,
                1 => v.wrapping_add(1),
                2 => v.wrapping_sub(1),
                3 => v ^ (1 << 32),
                4 => v ^ 1,
                _ => rng.next(),
            };
        }
        out.push(args);
    }
    out
}

/// The ABI sets a filter is made for: each ISA alone or with the compat ABIs it must cover.
const SETS: [&[Arch]; 6] = [
    &[Arch::X86_64],
    &[Arch::X86_64, Arch::X86, Arch::X32],
    &[Arch::Aarch64, Arch::Arm],
    &[Arch::Ppc64le],
    &[Arch::S390x, Arch::S390],
    &[Arch::X86],
];

/// The sets of the host's byte order, each with the names both sides number alike.
fn sets() -> &'static [(&'static [Arch], Vec<&'static str>)] {
    static SETS_HERE: OnceLock<Vec<(&'static [Arch], Vec<&'static str>)>> = OnceLock::new();
    SETS_HERE.get_or_init(|| {
        SETS.into_iter()
            .filter(|s| s.iter().all(|a| a.endian() == Arch::native().endian()))
            .map(|s| (s, common_names(s)))
            .collect()
    })
}

/// Compiles `p` with chitin and with libseccomp and runs both on inputs around each rule's
/// comparisons, on other syscalls of each ABI, and on an ABI outside the set; panics at the
/// first decision that differs. Returns how many were compared.
pub fn compare(p: &Profile, names: &[&str], rng: &mut impl Choices) -> u64 {
    // What from_json makes of the rules before compiling.
    let split = Profile {
        rules: p
            .rules
            .iter()
            .cloned()
            .flat_map(super::split_like_runc)
            .collect(),
        ..p.clone()
    };
    let ours = compile_with(&split, false).unwrap();
    let theirs = oracle(p);
    let mut checked = 0;
    let mut probe = |arch: Arch, nr: u32, args: [u64; 6]| {
        let d = seccomp_data(arch, nr, args);
        let (a, b) = (run(&ours, &d), run(&theirs, &d));
        assert_eq!(
            a, b,
            "{arch:?} nr {nr} args {args:x?}: chitin {a:#x}, libseccomp {b:#x}\nprofile {p:#?}"
        );
        checked += 1;
    };
    for arch in &p.archs {
        for r in &p.rules {
            let nr = arch.syscall_nr(&r.names[0]).unwrap();
            for args in inputs(rng, r) {
                probe(*arch, nr, args);
            }
        }
        for _ in 0..50 {
            let nr = names[rng.below(names.len())];
            probe(*arch, arch.syscall_nr(nr).unwrap(), [rng.next(); 6]);
        }
    }
    let outsider = if p.archs.contains(&Arch::Aarch64) {
        Arch::X86_64
    } else {
        Arch::Aarch64
    };
    probe(outsider, 1, [0; 6]);
    checked
}

/// One fuzz input: the ABI set, the profile and the probes all chosen by its bytes.
pub fn fuzz(data: &[u8]) {
    static ACTIONS_HERE: OnceLock<Vec<Action>> = OnceLock::new();
    let actions = ACTIONS_HERE.get_or_init(usable_actions);
    // A rule's action differs from the default: at least two are needed.
    assert!(actions.len() >= 2, "libseccomp takes only {actions:?} here");
    let mut src = Bytes(data);
    let (archs, names) = &sets()[src.below(sets().len())];
    let p = random_profile(&mut src, actions, archs, names);
    compare(&p, names, &mut src);
}

#[test]
fn decisions_match_libseccomp() {
    let mut rng = crate::fuzzing::Rng(0x00c0_ffee_d00d_1234);
    let actions = usable_actions();
    assert!(actions.len() >= 3, "{actions:?}");
    let mut checked = 0u64;
    for (archs, names) in sets() {
        assert!(
            names.len() > 200,
            "{archs:?}: {} names in common",
            names.len()
        );
        for _ in 0..40 {
            let p = random_profile(&mut rng, &actions, archs, names);
            checked += compare(&p, names, &mut rng);
        }
    }
    assert!(checked > 10_000, "{checked} decisions compared");
}

/// Compiling Docker's default profile for x86_64 (and its compat ABIs): chitin against
/// libseccomp, same profile, same machine. bench/run.sh runs this in release mode and keeps the
/// figures; the bound here is loose enough for a debug build.
#[test]
fn compile_speed_against_libseccomp() {
    use std::time::Instant;
    let v = crate::profiles::seccomp("docker-default", Arch::X86_64).unwrap();
    let p = super::from_json(v).unwrap();
    let runs = 200;
    let time = |f: &mut dyn FnMut()| {
        let mut samples: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        samples.sort_by(|a, b| a.total_cmp(b));
        samples[runs / 2]
    };
    let ours = time(&mut || {
        std::hint::black_box(super::compile::compile(&p).unwrap());
    });
    let theirs = time(&mut || {
        std::hint::black_box(oracle(&p));
    });
    let insns = super::compile::compile(&p).unwrap().len();
    println!(
        "seccomp-compile docker-default x86_64+x86+x32: chitin {ours:.1} us ({insns} insns), libseccomp {theirs:.1} us (median of {runs})"
    );
    // Timing means nothing under emulation (the s390x run is under QEMU).
    if Arch::native() == Arch::X86_64 {
        assert!(
            ours < if cfg!(debug_assertions) {
                5000.0
            } else {
                1000.0
            },
            "{ours} us"
        );
    }
}
