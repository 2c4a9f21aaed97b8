//! Resource usage for `events --stats`, in the JSON shape runc 1.1 prints (its Go structs, with
//! their `omitempty` zeros left out), and OOM kill counts.

use std::fs;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{Ctl, Placement};

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn num(p: &Path) -> u64 {
    read(p).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn signed(p: &Path) -> i64 {
    read(p).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, memory.events) as a map.
fn keyed(p: &Path) -> Map<String, Value> {
    read(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), json!(v.trim().parse::<u64>().ok()?)))
        })
        .collect()
}

/// An object of `fields`, the zero values of those marked `omitempty` left out, as Go's
/// encoding/json does.
fn object(fields: &[(&str, u64, bool)]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter(|(_, v, omit)| !(*omit && *v == 0))
            .map(|(k, v, _)| ((*k).to_owned(), json!(v)))
            .collect(),
    )
}

/// How many tasks the kernel's OOM killer has killed in the container's cgroup.
pub fn oom_kills(p: &Placement) -> u64 {
    match p.controller("memory") {
        Some(Ctl::V1(d)) => keyed(&d.join("memory.oom_control"))
            .get("oom_kill")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        Some(Ctl::V2(d)) => keyed(&d.join("memory.events"))
            .get("oom_kill")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        None => 0,
    }
}

/// runc's stats object: every key, empty where the host has nothing to say.
pub fn stats(p: &Placement) -> Value {
    json!({
        "cpu": cpu(p),
        "cpuset": cpuset(p),
        "memory": memory(p),
        "pids": pids(p),
        "blkio": blkio(p),
        "hugetlb": hugetlb(p),
        "intel_rdt": {},
        // runc fills this only for the veth pairs it made itself, never for an OCI bundle.
        "network_interfaces": null,
    })
}

fn numbers(p: &Path) -> Vec<u64> {
    read(p)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn cpu(p: &Placement) -> Value {
    let throttling = |st: &Map<String, Value>, scale: u64, time: &str| {
        let get = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0);
        object(&[
            ("periods", get("nr_periods"), true),
            ("throttled_periods", get("nr_throttled"), true),
            ("throttled_time", get(time) * scale, true),
        ])
    };
    if let Some(d) = p.v1_dir("cpuacct") {
        // cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
        let st = keyed(&d.join("cpuacct.stat"));
        let tick = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0) * 10_000_000;
        // usage_all: "cpu user system" then a line per cpu.
        let all: Vec<Vec<u64>> = read(&d.join("cpuacct.usage_all"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .collect();
        let column =
            |i: usize| -> Vec<u64> { all.iter().filter_map(|r| r.get(i).copied()).collect() };
        let cpu_stat = p
            .v1_dir("cpu")
            .map(|c| keyed(&c.join("cpu.stat")))
            .unwrap_or_default();
        return json!({
            "usage": {"total": num(&d.join("cpuacct.usage")), "percpu": numbers(&d.join("cpuacct.usage_percpu")),
                      "percpu_kernel": column(2), "percpu_user": column(1),
                      "kernel": tick("system"), "user": tick("user")},
            "throttling": throttling(&cpu_stat, 1, "throttled_time"),
        });
    }
    let Some(Ctl::V2(d)) = p.controller("cpu").or(p.unified.as_deref().map(Ctl::V2)) else {
        return json!({"usage": {"total": 0, "kernel": 0, "user": 0}, "throttling": {}});
    };
    let st = keyed(&d.join("cpu.stat"));
    let us = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0) * 1000;
    json!({
        "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
        "throttling": throttling(&st, 1000, "throttled_usec"),
    })
}

/// "0-2,4" as [0, 1, 2, 4]. Numbers past the kernel's limit on CPUs (8192) are left out before
/// any range is expanded, and what does not parse is skipped.
pub(crate) fn cpu_list(text: &str) -> Vec<u64> {
    const MAX: u64 = 8192;
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
            out.extend(a.min(MAX)..=b.min(MAX - 1));
        }
    }
    out
}

fn cpuset(p: &Placement) -> Value {
    match p.controller("cpuset") {
        Some(Ctl::V1(d)) => {
            let n = |f: &str| num(&d.join(format!("cpuset.{f}")));
            json!({
                "cpus": cpu_list(&read(&d.join("cpuset.cpus")).unwrap_or_default()),
                "cpu_exclusive": n("cpu_exclusive"),
                "mems": cpu_list(&read(&d.join("cpuset.mems")).unwrap_or_default()),
                "mem_hardwall": n("mem_hardwall"), "mem_exclusive": n("mem_exclusive"),
                "memory_migrate": n("memory_migrate"), "memory_spread_page": n("memory_spread_page"),
                "memory_spread_slab": n("memory_spread_slab"), "memory_pressure": n("memory_pressure"),
                "sched_load_balance": n("sched_load_balance"),
                "sched_relax_domain_level": signed(&d.join("cpuset.sched_relax_domain_level")),
            })
        }
        // runc 1.1 reports v2's cpuset as the v1 fields' zeros; the cpus and mems in effect are
        // added.
        Some(Ctl::V2(d)) => json!({
            "cpus": cpu_list(&read(&d.join("cpuset.cpus.effective")).unwrap_or_default()),
            "mems": cpu_list(&read(&d.join("cpuset.mems.effective")).unwrap_or_default()),
            "cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0,
            "memory_spread_page": 0, "memory_spread_slab": 0, "memory_pressure": 0,
            "sched_load_balance": 0, "sched_relax_domain_level": 0,
        }),
        None => json!({}),
    }
}

fn memory(p: &Placement) -> Value {
    match p.controller("memory") {
        Some(Ctl::V1(d)) => {
            let entry = |pre: &str| {
                let f = |s: &str| num(&d.join(format!("{pre}{s}")));
                object(&[
                    ("limit", f("limit_in_bytes"), false),
                    ("usage", f("usage_in_bytes"), true),
                    ("max", f("max_usage_in_bytes"), true),
                    ("failcnt", f("failcnt"), false),
                ])
            };
            json!({"usage": entry("memory."), "swap": entry("memory.memsw."), "kernel": entry("memory.kmem."),
                   "kernelTCP": entry("memory.kmem.tcp."), "raw": keyed(&d.join("memory.stat"))})
        }
        Some(Ctl::V2(d)) => {
            let max = |f: &str| {
                read(&d.join(f))
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            };
            // As runc: swap as memory+swap, the way v1 counts it.
            let (limit, usage) = (max("memory.max"), num(&d.join("memory.current")));
            let swap_limit = match max("memory.swap.max") {
                u64::MAX => u64::MAX,
                l => l.saturating_add(limit),
            };
            json!({
                "usage": object(&[("limit", limit, false), ("usage", usage, true), ("failcnt", 0, false)]),
                "swap": object(&[("limit", swap_limit, false),
                                 ("usage", num(&d.join("memory.swap.current")) + usage, true),
                                 ("failcnt", 0, false)]),
                "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0},
                "raw": keyed(&d.join("memory.stat")),
            })
        }
        None => json!({"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                       "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}}),
    }
}

fn pids(p: &Placement) -> Value {
    let Some(Ctl::V1(d) | Ctl::V2(d)) = p.controller("pids") else {
        return json!({});
    };
    // "max" is no limit: 0, left out.
    let limit = read(&d.join("pids.max"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    object(&[
        ("current", num(&d.join("pids.current")), true),
        ("limit", limit, true),
    ])
}

/// runc's blkio entries: {major, minor, op, value} from "MAJ:MIN Op value" lines (v1) or
/// io.stat's "MAJ:MIN rbytes=.. wbytes=.." (v2).
fn blkio(p: &Placement) -> Value {
    let entry = |dev: &str, op: &str, value: u64| {
        let (ma, mi) = dev.split_once(':').unwrap_or(("0", "0"));
        json!({"major": ma.parse::<u64>().unwrap_or(0), "minor": mi.parse::<u64>().unwrap_or(0), "op": op, "value": value})
    };
    let mut out = Map::new();
    match p.controller("blkio").or(p.controller("io")) {
        Some(Ctl::V1(d)) => {
            // The proportional (CFQ/BFQ) files where the scheduler keeps them, as runc reads
            // them, else the throttling layer's.
            for (key, files) in [
                (
                    "ioServiceBytesRecursive",
                    [
                        "blkio.io_service_bytes_recursive",
                        "blkio.throttle.io_service_bytes_recursive",
                    ],
                ),
                (
                    "ioServicedRecursive",
                    [
                        "blkio.io_serviced_recursive",
                        "blkio.throttle.io_serviced_recursive",
                    ],
                ),
            ] {
                let lines: Vec<Value> = files
                    .iter()
                    .filter_map(|f| read(&d.join(f)))
                    .find(|t| t.lines().any(|l| l.split_whitespace().count() == 3))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        (f.len() == 3).then(|| entry(f[0], f[1], f[2].parse().unwrap_or(0)))
                    })
                    .collect();
                if !lines.is_empty() {
                    out.insert(key.into(), Value::Array(lines));
                }
            }
        }
        Some(Ctl::V2(d)) => {
            let (mut bytes, mut ios) = (Vec::new(), Vec::new());
            for l in read(&d.join("io.stat")).unwrap_or_default().lines() {
                let mut f = l.split_whitespace();
                let Some(dev) = f.next() else { continue };
                for kv in f {
                    let Some((k, v)) = kv.split_once('=') else {
                        continue;
                    };
                    let v = v.parse().unwrap_or(0);
                    match k {
                        "rbytes" => bytes.push(entry(dev, "Read", v)),
                        "wbytes" => bytes.push(entry(dev, "Write", v)),
                        "rios" => ios.push(entry(dev, "Read", v)),
                        "wios" => ios.push(entry(dev, "Write", v)),
                        _ => {}
                    }
                }
            }
            for (key, list) in [
                ("ioServiceBytesRecursive", bytes),
                ("ioServicedRecursive", ios),
            ] {
                if !list.is_empty() {
                    out.insert(key.into(), Value::Array(list));
                }
            }
        }
        None => {}
    }
    Value::Object(out)
}

/// Per page size ("2MB"): usage, max and failcnt, from whichever hierarchy holds hugetlb (the
/// unified one on a hybrid host, where chitin sets the limits).
fn hugetlb(p: &Placement) -> Value {
    let Some(ctl) = p.controller("hugetlb") else {
        return json!({});
    };
    let (d, v2) = match ctl {
        Ctl::V1(d) => (d, false),
        Ctl::V2(d) => (d, true),
    };
    let mut sizes: Vec<String> = fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix("hugetlb.")?;
            let (size, file) = rest.split_once('.')?;
            (file == if v2 { "current" } else { "usage_in_bytes" }).then(|| size.to_owned())
        })
        .collect();
    sizes.sort();
    sizes
        .into_iter()
        .map(|size| {
            let f = |s: &str| d.join(format!("hugetlb.{size}.{s}"));
            let v = if v2 {
                let failcnt = keyed(&f("events"))
                    .get("max")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                object(&[
                    ("usage", num(&f("current")), true),
                    ("failcnt", failcnt, false),
                ])
            } else {
                object(&[
                    ("usage", num(&f("usage_in_bytes")), true),
                    ("max", num(&f("max_usage_in_bytes")), true),
                    ("failcnt", num(&f("failcnt")), false),
                ])
            };
            (size, v)
        })
        .collect::<Map<String, Value>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_shapes() {
        assert_eq!(cpu_list("0-2,4\n"), vec![0, 1, 2, 4]);
        assert_eq!(cpu_list(""), Vec::<u64>::new());
        assert_eq!(
            object(&[("limit", 0, false), ("usage", 0, true), ("max", 3, true)]),
            json!({"limit": 0, "max": 3})
        );
    }
}
