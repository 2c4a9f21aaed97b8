use super::*;
use crate::seccomp::bpf::{run, seccomp_data as data};
use crate::seccomp::from_json;

fn profile(v: serde_json::Value) -> Profile {
    from_json(v).unwrap()
}

const ERRNO_EPERM: u32 = 0x0005_0001;
const ALLOW: u32 = 0x7fff_0000;

#[test]
fn actions_defaults_and_enosys() {
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getpid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22},
            {"names": ["gettid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
            {"names": ["openat2"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    let prog = compile(&p).unwrap();
    let x = |name: &str| Arch::X86_64.syscall_nr(name).unwrap();
    let on = |arch: Arch, nr: u32| run(&prog, &data(arch, nr, [0; 6]));
    assert_eq!(on(Arch::X86_64, x("read")), ALLOW);
    assert_eq!(on(Arch::X86_64, x("kill")), 0x8000_0000);
    assert_eq!(on(Arch::X86_64, x("getpid")), 0x0003_0000);
    assert_eq!(on(Arch::X86_64, x("getppid")), 0x0005_0016);
    assert_eq!(on(Arch::X86_64, x("gettid")), 0x7ff0_0007);
    assert_eq!(on(Arch::X86_64, x("uname")), 0x7ffc_0000);
    assert_eq!(on(Arch::X86_64, x("mkdir")), 0);
    assert_eq!(
        on(Arch::X86_64, x("close")),
        ERRNO_EPERM,
        "the default action"
    );
    // openat2 (437) is the highest named: clone3 (435) is below it, so it gets the default;
    // anything above gets ENOSYS.
    assert_eq!(on(Arch::X86_64, x("clone3")), ERRNO_EPERM);
    assert_eq!(on(Arch::X86_64, 1000), 0x0005_0000 | 38);
    // The compat ABIs have their own numbers.
    assert_eq!(on(Arch::X86, Arch::X86.syscall_nr("read").unwrap()), ALLOW);
    assert_eq!(
        on(Arch::X86, x("read")),
        ERRNO_EPERM,
        "x86_64's read number is not x86's read"
    );
    assert_eq!(on(Arch::X32, Arch::X32.syscall_nr("write").unwrap()), ALLOW);
    // An ABI the profile does not list (nor the host's, which is always filtered) is killed.
    let outsider = if Arch::native() == Arch::Aarch64 {
        Arch::Ppc64le
    } else {
        Arch::Aarch64
    };
    assert_eq!(on(outsider, 63), 0);
}

#[test]
fn x32_bit_without_x32_is_a_bad_arch() {
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let prog = compile(&p).unwrap();
    assert_eq!(
        run(&prog, &data(Arch::X86_64, X32_SYSCALL_BIT | 83, [0; 6])),
        0
    );
    assert_eq!(run(&prog, &data(Arch::X86_64, 83, [0; 6])), ERRNO_EPERM);
    assert_eq!(
        run(&prog, &data(Arch::X86_64, 2000, [0; 6])),
        ALLOW,
        "no ENOSYS stub when the default allows"
    );
}

#[test]
fn argument_operators_on_both_byte_orders() {
    type Case = (&'static str, u64, u64, &'static [(u64, bool)]);
    let cases: [Case; 7] = [
        (
            "SCMP_CMP_EQ",
            0x1_0000_0002,
            0,
            &[(0x1_0000_0002, true), (2, false), (0x1_0000_0000, false)],
        ),
        (
            "SCMP_CMP_NE",
            0x1_0000_0002,
            0,
            &[(0x1_0000_0002, false), (2, true), (0x2_0000_0002, true)],
        ),
        (
            "SCMP_CMP_GT",
            0x1_0000_0002,
            0,
            &[
                (0x1_0000_0003, true),
                (0x1_0000_0002, false),
                (0x2_0000_0000, true),
                (0xffff_ffff, false),
            ],
        ),
        (
            "SCMP_CMP_GE",
            0x1_0000_0002,
            0,
            &[
                (0x1_0000_0002, true),
                (0x1_0000_0001, false),
                (u64::MAX, true),
            ],
        ),
        (
            "SCMP_CMP_LT",
            0x1_0000_0002,
            0,
            &[
                (0x1_0000_0001, true),
                (0x1_0000_0002, false),
                (0xffff_ffff, true),
                (0x2_0000_0000, false),
            ],
        ),
        (
            "SCMP_CMP_LE",
            0x1_0000_0002,
            0,
            &[(0x1_0000_0002, true), (0x1_0000_0003, false), (0, true)],
        ),
        (
            "SCMP_CMP_MASKED_EQ",
            0xff_0000_00ff,
            0x12_0000_0034,
            &[
                (0x12_abcd_ef34, true),
                (0x13_0000_0034, false),
                (0x12_0000_0035, false),
            ],
        ),
    ];
    for arch in Arch::HOSTS {
        for (op, value, value_two, inputs) in cases {
            let p = profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": [arch.oci_name()],
                "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}]}]
            }));
            let prog = compile(&p).unwrap();
            let nr = arch.syscall_nr("write").unwrap();
            for (arg, matches) in inputs {
                let got = run(&prog, &data(arch, nr, [0, 0, *arg, 0, 0, 0]));
                assert_eq!(
                    got == ERRNO_EPERM,
                    *matches,
                    "{arch:?} {op} {value:#x} on {arg:#x}"
                );
            }
        }
    }
}

#[test]
fn s390_call_zero_and_sparc_enosys() {
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390", "SCMP_ARCH_SPARC64", "SCMP_ARCH_SPARC"],
        "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let prog = compile(&p).unwrap();
    for arch in [Arch::S390x, Arch::S390] {
        assert_eq!(
            run(&prog, &data(arch, 0, [0; 6])),
            0x0005_0000 | 38,
            "{arch:?}: unknown calls arrive as 0"
        );
    }
    let sparc_enosys = 0x0005_0000 | 90;
    assert_eq!(
        run(&prog, &data(Arch::Sparc64, 600, [0; 6])),
        sparc_enosys,
        "ENOSYS is 90 on sparc"
    );
    assert_eq!(
        run(
            &prog,
            &data(
                Arch::Sparc64,
                Arch::Sparc64.syscall_nr("read").unwrap(),
                [0; 6]
            )
        ),
        ALLOW
    );
    assert_eq!(
        run(
            &prog,
            &data(
                Arch::Sparc,
                Arch::Sparc.syscall_nr("write").unwrap(),
                [0; 6]
            )
        ),
        ALLOW
    );
    assert_eq!(
        run(
            &prog,
            &data(
                Arch::Sparc64,
                Arch::Sparc64.syscall_nr("mkdir").unwrap(),
                [0; 6]
            )
        ),
        0x8000_0000
    );
}

#[test]
fn bad_profiles_name_the_field() {
    let e = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"}))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("defaultAction") && e.contains("SCMP_ACT_NOPE"),
        "{e}"
    );
    let e = from_json(
        serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_MIPS"]}),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("architectures[0]"), "{e}");
    let e = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]})).unwrap_err().to_string();
    assert!(e.contains("syscalls[0].args[0].index"), "{e}");
    let e = from_json(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]})).unwrap_err().to_string();
    assert!(e.contains("listenerPath"), "{e}");
}
