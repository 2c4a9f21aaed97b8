//! The hardened security profile (org.chitin.profile.security=hardened): what it blocks, seen
//! from inside against the same config without it; what it refuses; and that ordinary work (a
//! shell, a compiler, a network server) runs under it.

use std::path::Path;

use chitin_arch::Arch;
use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::seccomp_abi::{native_probe, needs_filters};
use crate::support::{Bundle, Ctx, mount_count};

pub const ANNOTATION: &str = "org.chitin.profile.security";

fn hardened(b: &mut Bundle) {
    b.config["annotations"] = json!({ANNOTATION: "hardened"});
}

/// The calls the profile denies that exploits start with, as the probe's arguments, and what
/// each gives under the profile: EPERM, and ENOSYS for clone3 (whose flags a filter cannot see).
fn preconditions() -> Vec<(String, String)> {
    let arch = Arch::native();
    let nr = |n: &str| {
        arch.syscall_nr(n)
            .unwrap_or_else(|| panic!("{n} on {arch:?}"))
    };
    let mut v = Vec::new();
    for name in [
        "io_uring_setup",
        "userfaultfd",
        "keyctl",
        "add_key",
        "perf_event_open",
        "bpf",
    ] {
        v.push((nr(name).to_string(), "errno 1".to_owned()));
    }
    // unshare(CLONE_NEWUSER): a user namespace, where the caller is root of a fresh world.
    v.push((format!("{},0x10000000", nr("unshare")), "errno 1".into()));
    v.push((nr("clone3").to_string(), format!("errno {}", arch.enosys())));
    v
}

/// Under a config whose own profile allows every call, the profile's filter still refuses each
/// precondition (while the same config without the annotation reaches the kernel: io_uring_setup
/// of a null pointer is EFAULT, and a user namespace is made); no_new_privs, two filters, the minimal
/// capabilities, a masked /proc/kallsyms, a read-only /sys and a nosuid, nodev root.
pub fn hardened_blocks_exploit_preconditions() -> TestResult {
    needs_filters()?;
    let probe = native_probe()?;
    let ctx = Ctx::new("hardened")?;
    let calls = preconditions();
    let args: Vec<&str> = calls.iter().map(|(a, _)| a.as_str()).collect();
    let script = format!(
        "probe {}; grep -E '^(CapEff|NoNewPrivs|Seccomp_filters)' /proc/self/status; \
         wc -c < /proc/kallsyms; touch /sys/x 2>/dev/null || echo sys-ro; \
         awk '$5 == \"/\" {{print $6}}' /proc/self/mountinfo | tr , '\\n' | grep -E '^no(suid|dev)$'; true",
        args.join(" ")
    );
    let bundle = |harden: bool| {
        let mut b = ctx.bundle(&script);
        std::fs::copy(&probe, b.dir.join("rootfs/bin/probe")).unwrap();
        b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW"});
        if harden {
            hardened(&mut b);
        }
        b
    };
    let (code, out, err) = ctx.run(&bundle(true), &ctx.id());
    assert_eq!(code, 0, "{out}{err}");
    let mut want: String = calls
        .iter()
        .map(|(a, r)| format!("{} {r}\n", a.split(',').next().unwrap()))
        .collect();
    // KILL and NET_BIND_SERVICE of chitin spec's three; AUDIT_WRITE is narrowed away.
    want += "CapEff:\t0000000000000420\nNoNewPrivs:\t1\nSeccomp_filters:\t2\n0\nsys-ro\nnosuid\nnodev\n";
    assert_eq!(out, want, "{err}");

    let (code, out, err) = ctx.run(&bundle(false), &ctx.id());
    assert_eq!(code, 0, "{err}");
    let line = |call: &str| {
        let nr = Arch::native().syscall_nr(call).unwrap();
        out.lines()
            .find(|l| l.starts_with(&format!("{nr} ")))
            .unwrap_or_default()
            .to_owned()
    };
    // EFAULT: the kernel read the (null) parameters.
    assert!(line("io_uring_setup").ends_with("errno 14"), "{out}");
    assert!(line("unshare").ends_with("ret 0"), "{out}");
    assert!(out.contains("Seccomp_filters:\t1\n"), "{out}");
    Ok(())
}

/// A shell, a compiler (the host's gcc, its /usr bound in read-only) and a network server
/// (busybox httpd on port 80, which needs NET_BIND_SERVICE) work under the profile.
pub fn hardened_runs_a_shell_a_compiler_and_a_server() -> TestResult {
    needs_filters()?;
    if !Path::new("/usr/bin/gcc").exists() {
        return skip("no /usr/bin/gcc on this machine to bind into the container");
    }
    let ctx = Ctx::new("hardened-work")?;
    let mut b = ctx.bundle(
        "printf '#include <stdio.h>\\nint main(void) { puts(\"compiled\"); return 0; }\\n' > /tmp/h.c \
         && gcc -o /tmp/h /tmp/h.c && /tmp/h; \
         httpd -p 127.0.0.1:80 -h /www && wget -q -O - http://127.0.0.1/ && \
         for i in 1 2 3; do echo $((i * i)); done | tr '\\n' ' '; \
         grep -E '^(NoNewPrivs|Seccomp_filters)' /proc/self/status",
    );
    hardened(&mut b);
    std::fs::create_dir_all(b.rootfs().join("www")).unwrap();
    std::fs::write(b.rootfs().join("www/index.html"), "served\n").unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    for dir in ["/usr", "/lib", "/lib64", "/lib32"] {
        if Path::new(dir).exists() {
            mounts.push(json!({"destination": dir, "type": "bind", "source": dir, "options": ["rbind", "ro"]}));
        }
    }
    b.config["process"]["env"] = json!(["PATH=/usr/bin:/bin"]);
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{out}{err}");
    // Under the profile: both filters and no_new_privs.
    assert_eq!(
        out, "compiled\nserved\n1 4 9 NoNewPrivs:\t1\nSeccomp_filters:\t2\n",
        "{err}"
    );
    Ok(())
}

/// A config field, what it asks for, and the edit that asks.
type Case = (&'static str, &'static str, fn(&mut serde_json::Value));

/// What a config or an exec asks for that the profile forbids fails before anything is made,
/// naming the field and the profile; what clients give unasked is narrowed.
pub fn hardened_refuses_what_it_forbids() -> TestResult {
    needs_filters()?;
    let ctx = Ctx::new("hardened-refuse")?;
    let why = "is forbidden by security profile hardened (org.chitin.profile.security)";
    let mounts_before = mount_count();
    let cases: [Case; 3] = [
        ("process.capabilities.bounding", "CAP_SYS_ADMIN", |c| {
            c["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN"]);
        }),
        ("process.noNewPrivileges", "false", |c| {
            c["process"]["noNewPrivileges"] = false.into();
        }),
        ("mounts[7].options", "\"suid\" on /data", |c| {
            let m = json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["suid"]});
            c["mounts"].as_array_mut().unwrap().push(m);
        }),
    ];
    for (field, what, edit) in cases {
        let mut b = ctx.bundle("true");
        hardened(&mut b);
        edit(&mut b.config);
        let id = ctx.id();
        let (code, err) = ctx.create(&b, &id, &[]);
        assert_ne!(code, 0);
        let want = format!("config.json: {field}: {what} {why}");
        assert!(
            err.contains(&format!("msg=\"{}\"", want.replace('"', "\\\""))),
            "{err}"
        );
        assert!(!ctx.root.join(&id).exists(), "{id}: state left behind");
    }
    assert_eq!(mount_count(), mounts_before);

    // An exec into a hardened container: --cap CAP_NET_RAW is narrowed away, SYS_PTRACE refused.
    let mut b = ctx.bundle("sleep 30");
    hardened(&mut b);
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let out = ctx.chitin_ok(&[
        "exec",
        "--cap",
        "CAP_NET_RAW",
        &id,
        "grep",
        "-E",
        "^(CapEff|NoNewPrivs|Seccomp_filters)",
        "/proc/self/status",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "CapEff:\t0000000000000420\nNoNewPrivs:\t1\nSeccomp_filters:\t2\n"
    );
    let out = ctx.chitin(&["exec", "--cap", "CAP_SYS_PTRACE", &id, "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("msg=\"--cap: CAP_SYS_PTRACE {why}\"")),
        "{err}"
    );
    ctx.chitin_ok(&["delete", "-f", &id]);
    Ok(())
}
