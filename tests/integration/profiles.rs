//! Performance profiles on this machine: `profile list` and `explain`, a container made with
//! one (seen from inside and in the saved config), and one the host cannot meet.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::TestResult;
use crate::support::Ctx;

const ANNOTATION: &str = "org.chitin.profile.performance";

/// The memory of the NUMA node (or of the machine, without NUMA) holding CPU `cpu`.
fn node_mem_bytes(node: usize) -> u64 {
    let (path, key) =
        match std::fs::read_to_string(format!("/sys/devices/system/node/node{node}/meminfo")) {
            Ok(t) => (t, "MemTotal:"),
            Err(_) => (
                std::fs::read_to_string("/proc/meminfo").unwrap(),
                "MemTotal:",
            ),
        };
    let kb: u64 = path
        .lines()
        .find_map(|l| {
            l.split_once(key)
                .map(|(_, r)| r.trim().trim_end_matches("kB").trim().to_owned())
        })
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// `profile explain NAME -b BUNDLE`: the fields, as JSON.
fn explain(ctx: &Ctx, name: &str, b: &crate::support::Bundle) -> Value {
    let dir = b.dir.to_str().unwrap();
    let out = ctx.chitin_ok(&["profile", "explain", name, "-b", dir]);
    let out = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(out.split_once('\n').unwrap().1).unwrap()
}

pub fn performance_profile_from_an_annotation() -> TestResult {
    let ctx = Ctx::new("perf")?;
    let list = String::from_utf8(ctx.chitin_ok(&["profile", "list"]).stdout).unwrap();
    for name in [
        "latency-pinned",
        "throughput",
        "numa-local-dpdk",
        "mpi-rank-per-node",
        "edge-small",
    ] {
        assert!(list.contains(&format!("{name}\n    ")), "{list}");
    }
    let out =
        String::from_utf8(ctx.chitin_ok(&["profile", "explain", "edge-small"]).stdout).unwrap();
    let (head, json) = out.split_once('\n').unwrap();
    assert!(head.starts_with("edge-small: A small service"), "{head}");
    let fields: Value = serde_json::from_str(json).unwrap();
    // One whole core: the first of node 0 (CPU 0 here, and its SMT siblings where it has some).
    let cpus = fields["linux"]["resources"]["cpu"]["cpus"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cpus.starts_with('0'), "{fields}");
    assert_eq!(fields["linux"]["resources"]["cpu"]["mems"], "0");
    // 10% of the node, in whole MiB.
    let limit = ((node_mem_bytes(0) * 10 / 100) >> 20) << 20;
    assert_eq!(fields["linux"]["resources"]["memory"]["limit"], limit);

    // A container with it: the same fields from inside, and in the config saved at create.
    let mut b = ctx.bundle(
        "grep Cpus_allowed_list /proc/self/status; ionice; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         head -n 1 /proc/self/numa_maps 2>/dev/null | cut -d' ' -f2",
    );
    b.config["annotations"] = json!({ANNOTATION: "edge-small"});
    // Its own cgroup namespace (chitin spec gives one on cgroup v2 already): the limit file is
    // the container's at the top of /sys/fs/cgroup.
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    if !ns.iter().any(|n| n["type"] == "cgroup") {
        ns.push(json!({"type": "cgroup"}));
    }
    let id = ctx.id();
    let (code, out, err) = ctx.run(&b, &id);
    assert_eq!(code, 0, "{err}");
    let numa = std::path::Path::new("/sys/devices/system/node/online").exists();
    // A kernel without NUMA has no numa_maps, and the profile sets no memory policy there.
    let want = format!(
        "Cpus_allowed_list:\t{cpus}\nidle\n{limit}\n{}",
        if numa { "bind:0\n" } else { "" }
    );
    assert_eq!(out, want);

    // explain -b shows the bundle's effective fields: the profile's replace the config's.
    b.config["linux"]["resources"]["cpu"] = json!({"cpus": "0-1", "mems": "0"});
    b.save();
    let fields = explain(&ctx, "edge-small", &b);
    assert_eq!(fields["linux"]["resources"]["cpu"]["cpus"], cpus.as_str());
    assert_eq!(
        fields["process"]["ioPriority"]["class"],
        "IOPRIO_CLASS_IDLE"
    );
    Ok(())
}

/// A profile this host cannot meet fails before anything is made, naming the annotation and
/// what is missing; so does a name chitin does not ship.
pub fn unmet_profile_fails_first() -> TestResult {
    let ctx = Ctx::new("perfno")?;
    let isolated = std::fs::read_to_string("/sys/devices/system/cpu/isolated").unwrap_or_default();
    if !isolated.trim().is_empty() {
        return crate::harness::skip("this host has isolated CPUs: numa-local-dpdk may fit");
    }
    for (name, why) in [
        (
            "numa-local-dpdk",
            "numa-local-dpdk: needs 4 whole isolated cores on one NUMA node; the most here is 0",
        ),
        (
            "no-such",
            "no-such: no such profile (chitin ships latency-pinned",
        ),
    ] {
        let mut b = ctx.bundle("true");
        b.config["annotations"] = json!({ANNOTATION: name});
        let id = ctx.id();
        let (code, _, err) = ctx.run(&b, &id);
        assert_ne!(code, 0);
        let err = err.replace("\\\"", "\"");
        assert!(
            err.contains(&format!("annotations[\"{ANNOTATION}\"]: {why}")),
            "{err}"
        );
        assert!(!ctx.root.join(&id).exists(), "nothing left");
    }
    Ok(())
}

/// A profile given as a file: one core, memory interleaved over every node (both of the VM's,
/// which QEMU gives two), exec'd processes on the first core; seen from inside the init and an
/// exec'd process.
pub fn profile_from_a_file_spreads_memory_over_the_nodes() -> TestResult {
    let ctx = Ctx::new("perffile")?;
    let file = ctx.base.join("spread.json");
    std::fs::write(
        &file,
        r#"{"description": "one core, memory everywhere", "cpus": {"cores": 1},
            "memory": {"placement": "interleave"}, "execCpus": "first-core"}"#,
    )
    .unwrap();
    let nodes = std::fs::read_to_string("/sys/devices/system/node/online")
        .map(|t| t.trim().to_owned())
        .ok();
    let mut b = ctx.bundle("sleep 30");
    b.config["annotations"] = json!({ANNOTATION: file.to_str().unwrap()});
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    // The effective config saved at create says what was chosen.
    let text = std::fs::read_to_string(ctx.root.join(&id).join("config.json")).unwrap();
    let effective: Value = serde_json::from_str(&text).unwrap();
    let first = effective["process"]["execCPUAffinity"]["final"]
        .as_str()
        .unwrap_or_else(|| panic!("no execCPUAffinity: {text}"))
        .to_owned();
    let exec = ctx.chitin_ok(&[
        "exec",
        &id,
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        format!("Cpus_allowed_list:\t{first}\n")
    );
    ctx.chitin_ok(&["delete", "-f", &id]);
    // The init's view, in the foreground.
    let mut b = ctx.bundle(
        "grep Mems_allowed_list /proc/self/status; \
         head -n 1 /proc/self/numa_maps 2>/dev/null | cut -d' ' -f2",
    );
    b.config["annotations"] = json!({ANNOTATION: file.to_str().unwrap()});
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    let want = match &nodes {
        Some(n) => format!("Mems_allowed_list:\t{n}\ninterleave:{n}\n"),
        None => "Mems_allowed_list:\t0\n".to_owned(),
    };
    assert_eq!(out, want);
    Ok(())
}

/// The cpuset hierarchy's mount point, and whether it is cgroup v1's: the v1 cpuset controller
/// where there is one (a hybrid host's unified hierarchy has no cpuset), else cgroup2 with it.
fn cpuset_mount() -> Option<(PathBuf, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<(PathBuf, String, String)> = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            let (fstype, opts) = (r.next()?, r.nth(1)?);
            Some((
                left.split(' ').nth(4)?.into(),
                fstype.to_owned(),
                opts.to_owned(),
            ))
        })
        .collect();
    let v1 = mounts
        .iter()
        .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == "cpuset"));
    if let Some((m, _, _)) = v1 {
        return Some((m.clone(), true));
    }
    mounts
        .iter()
        .find(|(m, t, _)| {
            t == "cgroup2"
                && std::fs::read_to_string(m.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpuset"))
        })
        .map(|(m, _, _)| (m.clone(), false))
}

/// The NUMA node of CPU `cpu` (0 without NUMA).
fn node_of(cpu: usize) -> usize {
    let dir = format!("/sys/devices/system/cpu/cpu{cpu}");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0)
}

/// Makes `rel` below the cpuset mount, its cpuset CPU `cpu` and that CPU's memory node; returns
/// its directory. v1's levels start empty and get their parent's; v2's parents delegate cpuset.
fn cpuset_parent(mount: &Path, v1: bool, rel: &str, cpu: usize) -> PathBuf {
    let mut dir = mount.to_path_buf();
    for part in rel.split('/') {
        if !v1 {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpuset");
        }
        let parent = dir.clone();
        dir.push(part);
        let _ = std::fs::create_dir(&dir);
        if v1 {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if std::fs::read_to_string(dir.join(f))
                    .unwrap()
                    .trim()
                    .is_empty()
                {
                    std::fs::write(dir.join(f), std::fs::read(parent.join(f)).unwrap()).unwrap();
                }
            }
        }
    }
    std::fs::write(dir.join("cpuset.mems"), node_of(cpu).to_string()).unwrap();
    std::fs::write(dir.join("cpuset.cpus"), cpu.to_string()).unwrap();
    dir
}

/// A profile resolves within the parent cgroup's cpuset: with the parent allowed only the last
/// CPU, edge-small's one whole core is that one (not CPU 0), in `profile explain -b` and from
/// inside.
pub fn profile_within_the_parent_cgroup_s_cpuset() -> TestResult {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let last: usize = online
        .trim()
        .rsplit(['-', ','])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let siblings = format!("/sys/devices/system/cpu/cpu{last}/topology/thread_siblings_list");
    if last == 0 || std::fs::read_to_string(siblings).is_ok_and(|s| s.trim() != last.to_string()) {
        return crate::harness::skip("needs two CPUs, the last a core of its own");
    }
    let Some((mount, v1)) = cpuset_mount() else {
        return crate::harness::skip("no cgroup hierarchy with the cpuset controller");
    };
    let ctx = Ctx::new("perfcg")?;
    let rel = format!("chitin-tests/perf-parent-{}", ctx.id());
    let parent = cpuset_parent(&mount, v1, &rel, last);
    let mut b = ctx.bundle("grep Cpus_allowed_list /proc/self/status");
    b.config["annotations"] = json!({ANNOTATION: "edge-small"});
    let id = ctx.id();
    b.config["linux"]["cgroupsPath"] = format!("/{rel}/{id}").into();
    b.save();
    let fields = explain(&ctx, "edge-small", &b);
    assert_eq!(
        fields["linux"]["resources"]["cpu"]["cpus"],
        last.to_string()
    );
    let (code, out, err) = ctx.run(&b, &id);
    let _ = std::fs::remove_dir(&parent);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("Cpus_allowed_list:\t{last}\n"));
    Ok(())
}

/// latency-pinned asks its cgroup for 5% of each second of real-time budget where the kernel
/// keeps one per cgroup: below a parent with none to give it fails before anything is made;
/// right below the root it gets it, and runs SCHED_FIFO 10.
pub fn latency_pinned_within_the_rt_budget() -> TestResult {
    if !Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        return crate::harness::skip(
            "no cgroup v1 cpu hierarchy with rt budgets (CONFIG_RT_GROUP_SCHED) here",
        );
    }
    let ctx = Ctx::new("perfrt")?;
    let explain = ctx.chitin(&["profile", "explain", "latency-pinned"]);
    if String::from_utf8_lossy(&explain.stderr).contains("whole cores") {
        return crate::harness::skip("fewer than 2 whole cores on one node here");
    }
    let mut b = ctx
        .bundle("cat /sys/fs/cgroup/cpu/cpu.rt_runtime_us; awk '{print $40, $41}' /proc/self/stat");
    b.config["annotations"] = json!({ANNOTATION: "latency-pinned"});
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/rt-{}", ctx.id()).into();
    let id = ctx.id();
    let (code, _, err) = ctx.run(&b, &id);
    assert_ne!(code, 0);
    assert!(
        err.contains("latency-pinned: needs an rt budget of 50000"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing made");
    b.config["linux"]["cgroupsPath"] = format!("/chitin-rt-{}", ctx.id()).into();
    let (code, out, err) = ctx.run(&b, &ctx.id());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "50000\n10 1\n");
    Ok(())
}
