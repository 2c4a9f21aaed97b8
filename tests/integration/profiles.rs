//! Performance profiles on this machine: `profile list` and `explain`, a container made with
//! one (seen from inside and in the saved config), and one the host cannot meet.

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
    let out = ctx.chitin_ok(&[
        "profile",
        "explain",
        "edge-small",
        "-b",
        b.dir.to_str().unwrap(),
    ]);
    let out = String::from_utf8(out.stdout).unwrap();
    let fields: Value = serde_json::from_str(out.split_once('\n').unwrap().1).unwrap();
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
