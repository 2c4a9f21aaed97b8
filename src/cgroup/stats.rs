//! Resource usage for `events --stats`, in the JSON shape runc prints, and OOM kill counts.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use super::{Ctl, Placement};

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn num(p: &Path) -> u64 {
    read(p).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, memory.events) as a map.
fn keyed(p: &Path) -> serde_json::Map<String, Value> {
    read(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), json!(v.trim().parse::<u64>().ok()?)))
        })
        .collect()
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

pub fn stats(p: &Placement) -> Value {
    let mut data = serde_json::Map::new();
    if let Some(d) = p.v1_dir("cpuacct") {
        let percpu: Vec<u64> = read(&d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let st = keyed(&d.join("cpuacct.stat"));
        // cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
        let tick = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0) * 10_000_000;
        data.insert("cpu".into(), json!({"usage": {"total": num(&d.join("cpuacct.usage")), "percpu": percpu, "kernel": tick("system"), "user": tick("user")}}));
    } else if let Some(Ctl::V2(d)) = p.controller("cpu").or(p.unified.as_deref().map(Ctl::V2)) {
        let st = keyed(&d.join("cpu.stat"));
        let us = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0) * 1000;
        data.insert("cpu".into(), json!({"usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
            "throttling": {"periods": st.get("nr_periods"), "throttled_periods": st.get("nr_throttled"), "throttled_time": us("throttled_usec")}}));
    }
    match p.controller("memory") {
        Some(Ctl::V1(d)) => {
            let entry = |pre: &str| {
                json!({"usage": num(&d.join(format!("{pre}usage_in_bytes"))), "max": num(&d.join(format!("{pre}max_usage_in_bytes"))),
                "failcnt": num(&d.join(format!("{pre}failcnt"))), "limit": num(&d.join(format!("{pre}limit_in_bytes")))})
            };
            data.insert("memory".into(), json!({"usage": entry("memory."), "swap": entry("memory.memsw."), "kernel": entry("memory.kmem."),
                "kernelTCP": entry("memory.kmem.tcp."), "raw": keyed(&d.join("memory.stat"))}));
        }
        Some(Ctl::V2(d)) => {
            let limit = read(&d.join("memory.max"))
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            data.insert("memory".into(), json!({"usage": {"usage": num(&d.join("memory.current")), "max": num(&d.join("memory.peak")), "limit": limit},
                "swap": {"usage": num(&d.join("memory.swap.current"))}, "raw": keyed(&d.join("memory.stat"))}));
        }
        None => {}
    }
    if let Some(Ctl::V1(d) | Ctl::V2(d)) = p.controller("pids") {
        let limit = read(&d.join("pids.max"))
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        data.insert(
            "pids".into(),
            json!({"current": num(&d.join("pids.current")), "limit": limit}),
        );
    }
    Value::Object(data)
}
