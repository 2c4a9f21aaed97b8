//! Where and how the container's processes run, seen from inside: process.scheduler,
//! process.ioPriority, process.execCPUAffinity, linux.personality and linux.memoryPolicy, and
//! the CPU affinity a container gets when it asks for none.

use std::process::Command;

use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::support::Ctx;

/// nice, rt_priority and policy of the process reading /proc/self/stat (fields 19, 40, 41).
const STAT: &str = "awk '{print $19, $40, $41}' /proc/self/stat";

fn cpus_online() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .unwrap()
        .trim()
        .to_owned()
}

/// What `uname -m` says under PER_LINUX32 here (i686 on x86_64, armv8l on aarch64, ...).
fn linux32_machine() -> String {
    let out = Command::new(crate::support::BUSYBOX)
        .args(["linux32", "uname", "-m"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn scheduler_io_priority_personality_memory_policy() -> TestResult {
    let ctx = Ctx::new("tuning")?;
    let script =
        format!("{STAT}; ionice; uname -m; head -n 1 /proc/self/numa_maps | cut -d' ' -f2");
    let mut b = ctx.bundle(&script);
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": -5,
                                              "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    // A kernel without NUMA (s390x's, say) has no memory policies: refused, naming the field.
    let numa = std::path::Path::new("/sys/devices/system/node/online").exists();
    // The line numa_maps gives the policy on, or none where the kernel has no numa_maps.
    let policy = |b: &mut crate::support::Bundle, v: serde_json::Value, shown: &str| {
        b.config["linux"]["memoryPolicy"] = v;
        if numa {
            return format!("{shown}\n");
        }
        let (code, _, err) = ctx.run(b, &ctx.id());
        assert!(code != 0 && err.contains("(CONFIG_NUMA)"), "{err}");
        let linux = b.config["linux"].as_object_mut().unwrap();
        linux.remove("memoryPolicy");
        String::new()
    };
    let shown = policy(
        &mut b,
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
        "interleave:0",
    );
    // SCHED_FLAG_RESET_ON_FORK: the shell's children (awk) keep SCHED_BATCH but not the
    // negative nice.
    let out = ctx.run_ok(&b);
    let want = format!("0 0 3\nidle\n{}\n{shown}", linux32_machine());
    assert_eq!(out, want, "flags reset the children");

    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    b.config["linux"]["personality"] = json!({"domain": "LINUX"});
    let bind = json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
    let shown = policy(&mut b, bind, "bind=static:0");
    let out = ctx.run_ok(&b);
    let machine = nix::sys::utsname::uname().unwrap();
    let machine = machine.machine().to_string_lossy();
    let want = format!("7 0 3\nbest-effort: prio 6\n{machine}\n{shown}");
    assert_eq!(out, want);

    // exec'd processes have the container's personality and policy, and their own scheduler.
    let id = ctx.id();
    b.config["process"]["args"] = json!(["sleep", "100"]);
    assert_eq!(ctx.run_detached(&b, &id), 0);
    let process = ctx.base.join("p.json");
    let p = json!({"cwd": "/", "args": ["sh", "-c", &script], "env": ["PATH=/bin"],
                   "user": {"uid": 0, "gid": 0},
                   "scheduler": {"policy": "SCHED_IDLE"},
                   "ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 2}});
    std::fs::write(&process, p.to_string()).unwrap();
    let out = ctx.chitin_ok(&["exec", "--process", process.to_str().unwrap(), &id]);
    let want = format!("0 0 5\nrealtime: prio 2\n{machine}\n{shown}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want, "exec");
    ctx.chitin_ok(&["delete", "-f", &id]);
    Ok(())
}

/// A real-time policy runs within the cgroup's rt budget, and without one fails naming the field.
pub fn real_time_within_the_rt_budget() -> TestResult {
    if !std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        return skip("no cgroup v1 cpu hierarchy with rt budgets (CONFIG_RT_GROUP_SCHED) here");
    }
    let ctx = Ctx::new("rt")?;
    let mut b = ctx.bundle(&format!("cat /sys/fs/cgroup/cpu/cpu.rt_runtime_us; {STAT}"));
    // Right below the root, which has the budget to give (a parent without one refuses it).
    b.config["linux"]["cgroupsPath"] = format!("/chitin-rt-{}", ctx.id()).into();
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_ne!(code, 0);
    assert!(
        err.contains("process.scheduler: sched_setattr")
            && err.contains("linux.resources.cpu.realtimeRuntime"),
        "{err}"
    );
    b.config["linux"]["resources"]["cpu"] = json!({"realtimeRuntime": 10000,
                                                    "realtimePeriod": 1000000});
    assert_eq!(ctx.run_ok(&b), "10000\n0 10 1\n");
    Ok(())
}

fn cpus_allowed(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:\t"))
        .unwrap_or("")
}

/// A runtime pinned by its caller does not pin the container: the init and exec'd processes may
/// run on every CPU their cpuset allows. execCPUAffinity sets an exec'd process's.
pub fn cpu_affinity_of_init_and_exec() -> TestResult {
    let online = cpus_online();
    if online == "0" {
        return skip("one CPU: no affinity to tell apart");
    }
    let ctx = Ctx::new("affinity")?;
    let mut b = ctx.bundle("grep Cpus_allowed_list /proc/self/status; sleep 100");
    let id = ctx.id();
    b.save();
    // Pinned to CPU 0 by its caller.
    let pinned = |args: &[&str]| {
        let mut c = Command::new(crate::support::bin());
        c.arg("--root").arg(&ctx.root).args(args);
        c.stdin(std::process::Stdio::null())
            // Not create's: its init keeps the stdio it is given.
            .stderr(std::process::Stdio::null())
            .stdout(if args[0] == "create" {
                std::process::Stdio::null()
            } else {
                std::process::Stdio::piped()
            });
        crate::support::pin_to_cpu0(&mut c);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    pinned(&["create", "-b", b.dir.to_str().unwrap(), &id]);
    let init = ctx.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert_eq!(cpus_allowed(&status), online, "init");
    ctx.chitin_ok(&["start", &id]);
    let out = pinned(&[
        "exec",
        &id,
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(cpus_allowed(&out), online, "exec");

    let process = ctx.base.join("p.json");
    let exec_with = |affinity: serde_json::Value| {
        let p = json!({"cwd": "/", "args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
                       "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
                       "execCPUAffinity": affinity});
        std::fs::write(&process, p.to_string()).unwrap();
        let out = ctx.chitin_ok(&["exec", "--process", process.to_str().unwrap(), &id]);
        cpus_allowed(&String::from_utf8_lossy(&out.stdout)).to_owned()
    };
    assert_eq!(exec_with(json!({"initial": "0", "final": "1"})), "1");
    assert_eq!(exec_with(json!({"final": "0"})), "0");
    // initial alone: the process starts on those CPUs outside the cgroup and is moved in, with
    // no reset after. Since Linux 6.2 the kernel keeps an asked-for affinity across the move;
    // before, the move gives the cpuset's CPUs.
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy().into_owned();
    let mut v = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let kept = (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 2);
    let want = if kept { "1" } else { online.as_str() };
    assert_eq!(exec_with(json!({"initial": "1"})), want, "Linux {release}");
    assert_eq!(
        exec_with(json!({"final": ""})),
        online,
        "empty: the kernel's"
    );
    ctx.chitin_ok(&["delete", "-f", &id]);

    // In a cpuset of CPU 1 only, the init runs there, though its runtime was pinned to CPU 0.
    let id = ctx.id();
    b.config["linux"]["resources"]["cpu"] = json!({"cpus": "1", "mems": "0"});
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    b.save();
    pinned(&["create", "-b", b.dir.to_str().unwrap(), &id]);
    let init = ctx.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert_eq!(cpus_allowed(&status), "1", "init in a cpuset");
    ctx.chitin_ok(&["delete", "-f", &id]);
    Ok(())
}

/// Each field's bad values fail before anything is made, naming the field.
pub fn bad_tuning_is_refused_by_field() -> TestResult {
    let ctx = Ctx::new("badtuning")?;
    let cases = [
        (
            "/process/scheduler",
            json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 9}),
            "process.ioPriority.priority",
        ),
        (
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            "/linux/personality",
            json!({"domain": "LINUX", "flags": ["X"]}),
            "linux.personality.flags",
        ),
    ];
    for (at, value, field) in cases {
        let mut b = ctx.bundle("true");
        let (parent, key) = at.rsplit_once('/').unwrap();
        b.config.pointer_mut(parent).unwrap()[key] = value;
        let id = ctx.id();
        let (code, _, err) = ctx.run(&b, &id);
        assert_ne!(code, 0);
        assert!(err.contains(field), "{field}: {err}");
        assert!(!ctx.root.join(&id).exists(), "{field}: nothing left");
    }
    Ok(())
}
