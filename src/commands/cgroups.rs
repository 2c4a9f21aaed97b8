//! The commands that work on a running container's cgroup: update, pause, resume, ps, events.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde_json::{Value, json};

use crate::cgroup::resources::{self, Kind};
use crate::cgroup::{CgroupError, Ctl, freezer, stats};
use crate::cli::UpdateFlags;
use crate::container::{ContainerError, io_ctx};
use crate::plan::resources::Resources;
use crate::state::{Record, StateDir, Status};

fn running(dir: &StateDir, r: &crate::state::Record, what: &str) -> Result<Status, ContainerError> {
    match dir.status(r) {
        s @ (Status::Running | Status::Paused | Status::Created) => Ok(s),
        s => Err(ContainerError::Status(format!(
            "cannot {what} a container that is {}",
            s.as_str()
        ))),
    }
}

/// What needs the container's cgroup is refused, saying why, for one made without (rootless
/// mode where nothing was delegated).
fn has_cgroup(r: &Record, what: &str) -> Result<(), ContainerError> {
    match r.cgroup.is_empty() {
        false => Ok(()),
        true => Err(ContainerError::Status(format!(
            "cannot {what} {}: it has no cgroup of its own (rootless mode, and no cgroup was \
             delegated to its creator)",
            r.id
        ))),
    }
}

pub fn pause(root: &Path, id: &str, freeze: bool) -> Result<(), ContainerError> {
    let dir = StateDir::open(root, id)?;
    let r = dir.read()?;
    let what = if freeze { "pause" } else { "resume" };
    has_cgroup(&r, what)?;
    match (running(&dir, &r, what)?, freeze) {
        // As runc: a created container may be paused too (and reads as created once resumed).
        (Status::Running | Status::Created, true) | (Status::Paused, false) => {
            Ok(freezer::set(&r.cgroup, freeze)?)
        }
        (s, _) => Err(ContainerError::Status(format!(
            "cannot {what} a container that is {}",
            s.as_str()
        ))),
    }
}

/// runc's memory values: bytes, or with a k/m/g/t suffix (powers of 1024); -1 for unlimited.
fn ram_in_bytes(flag: &str, s: &str) -> Result<i64, ContainerError> {
    let bad = || ContainerError::Status(format!("--{flag}: {s:?} is not a size like 512m"));
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as i64)
}

/// As runc: `--memory -1` without a swap limit lifts the swap limit too (the kernel would refuse
/// a memory limit above memory+swap), where the host accounts swap.
fn unlimited_swap_with_memory(delta: &mut Value, cgroup: &crate::cgroup::Placement) {
    // get_mut: indexing would insert a null "memory", which the merge takes as "no memory limits".
    let Some(m) = delta.get_mut("memory") else {
        return;
    };
    if m["limit"] != json!(-1) || !m["swap"].is_null() {
        return;
    }
    let accounted = match cgroup.controller("memory") {
        Some(Ctl::V1(d)) => d.join("memory.memsw.limit_in_bytes").exists(),
        Some(Ctl::V2(d)) => d.join("memory.swap.max").exists(),
        None => false,
    };
    if accounted {
        m["swap"] = json!(-1);
    }
}

/// The changed resources, with the values they are written together with taken from the merged
/// ones: cgroup v2's cpu.max holds quota and period, and memory.swap.max is derived from the
/// memory limit. An update of one must not lose the other.
fn with_coupled_fields(mut change: Value, merged: &Value) -> Value {
    for (section, coupled) in [("cpu", ["quota", "period"]), ("memory", ["limit", "swap"])] {
        let Some(c) = change.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        if coupled.iter().any(|k| c.contains_key(*k)) {
            for k in coupled {
                if let Some(v) = merged[section].get(k).filter(|v| !v.is_null()) {
                    c.insert(k.to_string(), v.clone());
                }
            }
        }
    }
    change
}

/// The block I/O device lists of `change` as the record keeps them: an entry replaces that
/// device's entry in `old`, the other devices' stay, and a throttle of rate 0 (which lifts the
/// kernel's rule) leaves none.
fn per_device_lists(mut change: Value, old: &Value) -> Value {
    const LISTS: [&str; 5] = [
        "weightDevice",
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    ];
    let Some(b) = change.get_mut("blockIO").and_then(Value::as_object_mut) else {
        return change;
    };
    let dev = |e: &Value| (e["major"].as_i64(), e["minor"].as_i64());
    for key in LISTS {
        let Some(new) = b.get(key).and_then(Value::as_array) else {
            continue;
        };
        let mut list: Vec<Value> = old["blockIO"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| !new.iter().any(|n| dev(n) == dev(o)))
            .cloned()
            .collect();
        list.extend(new.iter().filter(|n| n["rate"] != 0).cloned());
        b.insert(key.into(), list.into());
    }
    change
}

/// Objects merge key by key; anything else replaces.
fn merge(base: &mut Value, new: Value) {
    match (base, new) {
        (Value::Object(b), Value::Object(n)) => {
            for (k, v) in n {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, n) => *b = n,
    }
}

/// `--l3-cache-schema` and `--mem-bw-schema`: the container's resctrl group with the text for
/// its schemata. Refused, as runc 1.4 does, for a container made without linux.intelRdt.
fn rdt_schemata<'a>(
    f: &UpdateFlags,
    r: &'a Record,
) -> Result<Option<(&'a crate::resctrl::RdtGroup, String)>, ContainerError> {
    let lines: Vec<&str> = [&f.l3_cache_schema, &f.mem_bw_schema]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if lines.is_empty() {
        return Ok(None);
    }
    if f.mem_bw_schema
        .as_ref()
        .is_some_and(|m| !m.starts_with("MB:") || m.contains('\n'))
    {
        return Err(ContainerError::Status(
            "--mem-bw-schema: one line starting with \"MB:\"".into(),
        ));
    }
    let group = r.intel_rdt.as_ref().ok_or_else(|| {
        ContainerError::Status(
            "--l3-cache-schema/--mem-bw-schema: the container was made without linux.intelRdt"
                .into(),
        )
    })?;
    // Only resctrl's root has info/: closID "/", whose schemata are the host's.
    if group.dir.join("info").is_dir() {
        return Err(ContainerError::Status(
            "--l3-cache-schema/--mem-bw-schema: the container is in resctrl's root group, whose schemata are the host's".into(),
        ));
    }
    Ok(Some((group, lines.join("\n"))))
}

/// The resources that `update`'s flags ask for, as runtime-spec JSON.
fn from_flags(f: &UpdateFlags) -> Result<Value, ContainerError> {
    let mut v = json!({});
    let mut set = |path: &[&str], value: Value| {
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(*p)
                .or_insert(json!({}));
        }
        cur[path[path.len() - 1]] = value;
    };
    if let Some(w) = f.blkio_weight {
        set(&["blockIO", "weight"], json!(w));
    }
    for (path, val) in [
        (&["cpu", "period"][..], f.cpu_period.map(|v| json!(v))),
        (&["cpu", "quota"], f.cpu_quota.map(|v| json!(v))),
        (&["cpu", "burst"], f.cpu_burst.map(|v| json!(v))),
        (&["cpu", "shares"], f.cpu_share.map(|v| json!(v))),
        (
            &["cpu", "realtimePeriod"],
            f.cpu_rt_period.map(|v| json!(v)),
        ),
        (
            &["cpu", "realtimeRuntime"],
            f.cpu_rt_runtime.map(|v| json!(v)),
        ),
        (&["cpu", "cpus"], f.cpuset_cpus.clone().map(Value::from)),
        (&["cpu", "mems"], f.cpuset_mems.clone().map(Value::from)),
        (&["pids", "limit"], f.pids_limit.map(|v| json!(v))),
    ] {
        if let Some(val) = val {
            set(path, val);
        }
    }
    for (flag, key, val) in [
        ("memory", "limit", &f.memory),
        ("memory-reservation", "reservation", &f.memory_reservation),
        ("memory-swap", "swap", &f.memory_swap),
        ("kernel-memory", "kernel", &f.kernel_memory),
        ("kernel-memory-tcp", "kernelTCP", &f.kernel_memory_tcp),
    ] {
        if let Some(s) = val {
            set(&["memory", key], json!(ram_in_bytes(flag, s)?));
        }
    }
    Ok(v)
}

pub fn update(root: &Path, id: &str, f: &UpdateFlags) -> Result<(), ContainerError> {
    let mut delta = match f.resources.as_deref() {
        None => json!({}),
        Some(p) => {
            let mut text = String::new();
            if p == Path::new("-") {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(io_ctx("reading resources from stdin"))?;
            } else {
                text = std::fs::read_to_string(p)
                    .map_err(io_ctx(format!("reading {}", p.display())))?;
            }
            serde_json::from_str(&text)
                .map_err(|e| ContainerError::Status(format!("--resources: {e}")))?
        }
    };
    merge(&mut delta, from_flags(f)?);
    let parsed = |v: Value| -> Result<LinuxResources, ContainerError> {
        serde_path_to_error::deserialize(v)
            .map_err(|e| ContainerError::Status(format!("resources: {}: {}", e.path(), e.inner())))
    };
    // Zeros mean "unchanged" (Docker sends every field), so they must not reach the record.
    let change = crate::plan::resources::without_unset(&parsed(delta)?);
    let delta = serde_json::to_value(&change).expect("resources serialize");
    if change.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(ContainerError::Status(
            "update: device rules cannot be changed on a running container".into(),
        ));
    }

    let dir = StateDir::open(root, id)?;
    let mut r = dir.read()?;
    running(&dir, &r, "update")?;
    has_cgroup(&r, "update")?;
    let rdt = rdt_schemata(f, &r)?;
    let mut delta = delta;
    unlimited_swap_with_memory(&mut delta, &r.cgroup);
    let mut merged =
        serde_json::to_value(r.resources.clone().unwrap_or_default()).expect("resources serialize");
    let lists = per_device_lists(delta.clone(), &merged);
    merge(&mut merged, lists);
    let view = parsed(with_coupled_fields(delta, &merged))?;
    let merged = parsed(merged)?;
    let kind = |c: &str| match (c, &r.cgroup) {
        ("", p) => p.unified.as_ref().map(|_| Kind::V2),
        (c, p) => p.controller(c).map(|k| {
            if matches!(k, Ctl::V1(_)) {
                Kind::V1
            } else {
                Kind::V2
            }
        }),
    };
    let view = Resources::from_oci(&view).map_err(CgroupError::from)?;
    let writes = resources::writes(&view, &kind)?;
    if let (Some(limit), true) = (
        change.memory().as_ref().and_then(|m| m.limit()),
        merged
            .memory()
            .as_ref()
            .and_then(|m| m.check_before_update())
            .unwrap_or(false),
    ) {
        let usage = stats::stats(&r.cgroup)["memory"]["usage"]["usage"]
            .as_i64()
            .unwrap_or(0);
        if limit >= 0 && limit < usage {
            return Err(ContainerError::Status(format!(
                "memory.limit {limit} is below the current usage {usage} (checkBeforeUpdate)"
            )));
        }
    }
    // systemd's properties first, as runc: the files then have the last word.
    set_unit_properties(&r.cgroup, &view, &kind)?;
    resources::apply(&r.cgroup, &writes)?;
    if let Some((group, text)) = rdt {
        group.set_schemata(&text)?;
    }
    r.resources = Some(merged);
    dir.write(&r)?;
    Ok(())
}

/// The systemd driver's unit properties for the resources `update` changes.
fn set_unit_properties(
    p: &crate::cgroup::Placement,
    view: &Resources,
    kind: &dyn Fn(&str) -> Option<Kind>,
) -> Result<(), CgroupError> {
    let Some(unit) = &p.unit else { return Ok(()) };
    let props = crate::cgroup::systemd::props::resources(view, kind);
    if props.is_empty() {
        return Ok(());
    }
    let v2 = p.v1_dir("devices").is_none();
    crate::cgroup::systemd::Systemd::connect(unit.user)
        .and_then(|mut s| s.set(&unit.name, props, v2))
        .map_err(CgroupError::from)
}

/// `ps`: the container's processes, as pids (json) or as ps(1) lines (table).
pub fn ps(root: &Path, id: &str, format: &str, args: &[String]) -> Result<String, ContainerError> {
    let dir = StateDir::open(root, id)?;
    let r = dir.read()?;
    has_cgroup(&r, "list the processes of")?;
    let pids = r.cgroup.pids();
    if format == "json" {
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&pids).expect("pids serialize")
        ));
    }
    let args: Vec<&str> = if args.is_empty() {
        vec!["-ef"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    // Found on PATH here and run by its path, as runc's Go finds it: glibc's own search
    // (posix_spawnp) failed with ENAMETOOLONG in chitin on a sparc64 kernel.
    let path = std::env::var("PATH").unwrap_or_else(|_| crate::fsutil::DEFAULT_PATH.into());
    let prog = crate::fsutil::find_in_path("ps", &path)
        .ok_or_else(|| ContainerError::Status("ps: not found in $PATH".into()))?;
    let out = std::process::Command::new(prog)
        .args(&args)
        .output()
        .map_err(io_ctx("running ps"))?;
    if !out.status.success() {
        return Err(ContainerError::Status(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| ContainerError::Status("ps output has no PID column".into()))?;
    let mut result = format!("{header}\n");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            result.push_str(l);
            result.push('\n');
        }
    }
    Ok(result)
}

fn parse_interval(s: &str) -> Result<Duration, ContainerError> {
    let bad = || {
        ContainerError::Status(format!(
            "--interval: {s:?} is not a duration like 5s or 500ms"
        ))
    };
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One line of `events`, its fields in runc's order (containerd and scripts read them so); an
/// OOM event has no data.
#[derive(serde::Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

/// `events`: stats every interval and OOM events as they happen, one JSON object a line,
/// until the container stops; with --stats, one stats object and done.
pub fn events(
    root: &Path,
    id: &str,
    once: bool,
    interval: &str,
    out: &mut dyn std::io::Write,
) -> Result<(), ContainerError> {
    let interval = parse_interval(interval)?;
    let (path, r) = {
        let dir = StateDir::open(root, id)?;
        let r = dir.read()?;
        running(&dir, &r, "get events from")?;
        has_cgroup(&r, "get events from")?;
        (dir.path.clone(), r)
    };
    let emit = |out: &mut dyn std::io::Write, e: Event<'_>| {
        let line = serde_json::to_string(&e).expect("events serialize");
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    };
    let stats_event = || Event {
        kind: "stats",
        id,
        data: Some(stats::stats(&r.cgroup)),
    };
    let oom = || Event {
        kind: "oom",
        id,
        data: None,
    };
    if once {
        emit(out, stats_event());
        return Ok(());
    }
    let mut ooms = stats::oom_kills(&r.cgroup);
    let mut next = Instant::now() + interval;
    while crate::state::status_of(&path, &r) != Status::Stopped {
        let now = stats::oom_kills(&r.cgroup);
        if now > ooms {
            ooms = now;
            emit(out, oom());
        }
        if Instant::now() >= next {
            emit(out, stats_event());
            next += interval;
        }
        std::thread::sleep(Duration::from_millis(50).min(interval));
    }
    // An OOM kill that ended the container is reported too.
    if stats::oom_kills(&r.cgroup) > ooms {
        emit(out, oom());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_intervals() {
        assert_eq!(ram_in_bytes("memory", "512m").unwrap(), 512 << 20);
        assert_eq!(ram_in_bytes("memory", "1G").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("memory", "4096").unwrap(), 4096);
        assert_eq!(ram_in_bytes("memory", "-1").unwrap(), -1);
        assert!(ram_in_bytes("memory", "lots").is_err());
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_interval("0s").is_err());
    }

    #[test]
    fn merging_keeps_what_is_not_given() {
        let mut base = json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 3}});
        merge(&mut base, json!({"memory": {"limit": 5}}));
        assert_eq!(
            base,
            json!({"memory": {"limit": 5, "swap": 2}, "pids": {"limit": 3}})
        );
    }

    #[test]
    fn coupled_fields_come_from_the_merged_resources() {
        let merged =
            json!({"memory": {"limit": 64, "swap": 256}, "cpu": {"quota": 5000, "period": 20000}});
        let view = with_coupled_fields(
            json!({"memory": {"swap": 256}, "cpu": {"period": 20000}}),
            &merged,
        );
        assert_eq!(
            view,
            json!({"memory": {"limit": 64, "swap": 256}, "cpu": {"quota": 5000, "period": 20000}})
        );
        let res: LinuxResources = serde_json::from_value(view).unwrap();
        let res = Resources::from_oci(&res).unwrap();
        let w = resources::writes(&res, &|_| Some(Kind::V2)).unwrap();
        let file = |f: &str| w.iter().find(|w| w.file == f).map(|w| w.value.clone());
        assert_eq!(file("memory.swap.max").as_deref(), Some("192"));
        assert_eq!(file("cpu.max").as_deref(), Some("5000 20000"));
    }

    #[test]
    fn an_update_without_memory_leaves_memory_alone() {
        let mut delta = json!({"cpu": {"period": 20000}});
        unlimited_swap_with_memory(&mut delta, &crate::cgroup::Placement::default());
        assert_eq!(
            delta,
            json!({"cpu": {"period": 20000}}),
            "no null memory to merge"
        );
    }
}
