//! The unit properties of a container: the scope's own, the resources systemd has properties
//! for (v1 or v2 names, by where each controller lives), the device rules in systemd's syntax,
//! and the raw `org.systemd.property.*` annotations. chitin writes every cgroup file itself as
//! well (as runc does); the properties are what systemd puts back when it re-applies a unit
//! (`systemctl daemon-reload`), so they must never be looser than the files.

use std::collections::BTreeMap;

use crate::cgroup::resources::{Kind, blkio_to_io_weight, shares_to_weight};
use crate::dbus::Value;
use crate::plan::cgroups::Unit;
use crate::plan::resources::Resources;

pub type Property = (String, Value);

pub(super) fn prop(name: &str, v: Value) -> Property {
    (name.to_owned(), v)
}

pub const ANNOTATION: &str = "org.systemd.property.";
const INFINITY: u64 = u64::MAX;

/// The scope's identity and accounting, as runc sets them (its process is added by
/// Systemd::start).
pub fn scope(unit: &Unit, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Vec<Property> {
    let io = match io_kind(kind_of) {
        Some(Kind::V1) => "BlockIOAccounting",
        _ => "IOAccounting",
    };
    let mut props = vec![
        prop("Description", Value::str(&unit.description)),
        prop("Slice", Value::str(&unit.slice)),
        prop("Delegate", Value::Bool(true)),
        // No Conflicts=shutdown.target and the like: the engine stops its containers.
        prop("DefaultDependencies", Value::Bool(false)),
    ];
    for a in ["MemoryAccounting", "CPUAccounting", io, "TasksAccounting"] {
        props.push(prop(a, Value::Bool(true)));
    }
    props
}

/// Where IO weights go: v2's io, or v1's blkio.
fn io_kind(kind_of: &dyn Fn(&str) -> Option<Kind>) -> Option<Kind> {
    kind_of("io").or(kind_of("blkio"))
}

/// The resources systemd has properties for; the rest exist only as files.
pub fn resources(r: &Resources, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Vec<Property> {
    let mut p = Vec::new();
    let u = |v: i64| if v < 0 { INFINITY } else { v as u64 };
    if let Some(m) = &r.memory {
        match kind_of("memory") {
            Some(Kind::V2) => {
                if let Some(l) = m.limit {
                    p.push(prop("MemoryMax", Value::U64(u(l))));
                }
                if let Some(l) = m.reservation {
                    p.push(prop("MemoryLow", Value::U64(u(l))));
                }
                // OCI's swap is memory+swap; systemd's is the swap alone.
                match (m.swap, m.limit) {
                    (Some(-1), _) => p.push(prop("MemorySwapMax", Value::U64(INFINITY))),
                    (Some(s), Some(l)) if l >= 0 && s >= l => {
                        p.push(prop("MemorySwapMax", Value::U64((s - l) as u64)))
                    }
                    _ => {}
                }
            }
            Some(Kind::V1) => {
                if let Some(l) = m.limit {
                    p.push(prop("MemoryLimit", Value::U64(u(l))));
                }
            }
            None => {}
        }
    }
    if let Some(c) = &r.cpu {
        let v2 = kind_of("cpu") == Some(Kind::V2);
        match (c.shares, v2) {
            (Some(s), true) => p.push(prop("CPUWeight", Value::U64(shares_to_weight(s)))),
            (Some(s), false) => p.push(prop("CPUShares", Value::U64(s))),
            _ => {}
        }
        if let Some(q) = c.quota {
            let period = c.period.unwrap_or(100_000).max(1);
            p.push(prop(
                "CPUQuotaPerSecUSec",
                Value::U64(quota_per_sec(q, period)),
            ));
        }
        if let Some(period) = c.period {
            p.push(prop("CPUQuotaPeriodUSec", Value::U64(period)));
        }
        // systemd's cpuset properties exist on cgroup v2 only.
        if kind_of("cpuset") == Some(Kind::V2) {
            for (name, list) in [("AllowedCPUs", &c.cpus), ("AllowedMemoryNodes", &c.mems)] {
                if let Some(list) = list {
                    p.push(prop(name, bitmask(list)));
                }
            }
        }
    }
    match r.pids {
        Some(Some(n)) if n > 0 => p.push(prop("TasksMax", Value::U64(n as u64))),
        Some(None) => p.push(prop("TasksMax", Value::U64(INFINITY))),
        _ => {}
    }
    if let Some(w) = r.block_io.as_ref().and_then(|b| b.weight) {
        match io_kind(kind_of) {
            Some(Kind::V2) => p.push(prop("IOWeight", Value::U64(blkio_to_io_weight(w)))),
            Some(Kind::V1) => p.push(prop("BlockIOWeight", Value::U64(u64::from(w)))),
            None => {}
        }
    }
    p.extend(r.unified.iter().filter_map(|(k, v)| unified(k, v)));
    if let Some((_, v)) = r.unified.iter().find(|(k, _)| k == "cpu.max") {
        p.extend(cpu_max(v));
    }
    p
}

/// A `linux.resources.unified` file that systemd also writes, as its property; systemd would put
/// its own value back on a reload otherwise. The others (memory.oom.group, io.max, ...) systemd
/// leaves alone.
fn unified(file: &str, value: &str) -> Option<Property> {
    let v = value.trim();
    let bytes = || match v {
        "max" => Some(Value::U64(INFINITY)),
        n => n.parse().ok().map(Value::U64),
    };
    let name = match file {
        "memory.max" => "MemoryMax",
        "memory.high" => "MemoryHigh",
        "memory.low" => "MemoryLow",
        "memory.min" => "MemoryMin",
        "memory.swap.max" => "MemorySwapMax",
        "pids.max" => "TasksMax",
        "cpu.weight" => "CPUWeight",
        "cpuset.cpus" => return Some(prop("AllowedCPUs", bitmask(v))),
        "cpuset.mems" => return Some(prop("AllowedMemoryNodes", bitmask(v))),
        // Two properties: cpu_max.
        _ => return None,
    };
    bytes().map(|b| prop(name, b))
}

/// cgroup v2's "QUOTA PERIOD" (or "max PERIOD"; the period may be left out) as systemd's quota
/// per second and period.
fn cpu_max(v: &str) -> Vec<Property> {
    let mut it = v.split_whitespace();
    let period = it.clone().nth(1);
    let quota = match it.next() {
        Some("max") => -1,
        Some(q) => match q.parse() {
            Ok(q) => q,
            Err(_) => return Vec::new(),
        },
        None => return Vec::new(),
    };
    let Some(period) = period.map_or(Some(100_000), |p| p.parse::<u64>().ok()) else {
        return Vec::new();
    };
    let per_sec = quota_per_sec(quota, period.max(1));
    vec![
        prop("CPUQuotaPerSecUSec", Value::U64(per_sec)),
        prop("CPUQuotaPeriodUSec", Value::U64(period)),
    ]
}

/// CFS quota per period as systemd's quota per second. systemd keeps it as a whole percentage of
/// a CPU, so a fraction rounds up to the next 10 ms: never below what the files say.
fn quota_per_sec(quota: i64, period: u64) -> u64 {
    if quota < 0 {
        return INFINITY;
    }
    let per_sec = (quota as u64).saturating_mul(1_000_000) / period;
    per_sec.div_ceil(10_000) * 10_000
}

/// "0-2,5" as systemd's CPU set: a byte array, bit n for CPU n.
fn bitmask(list: &str) -> Value {
    let mut bytes: Vec<u8> = Vec::new();
    for n in crate::cgroup::stats::cpu_list(list) {
        let (i, bit) = ((n / 8) as usize, n % 8);
        if bytes.len() <= i {
            bytes.resize(i + 1, 0);
        }
        bytes[i] |= 1 << bit;
    }
    Value::Array("y".into(), bytes.into_iter().map(Value::Byte).collect())
}

/// The properties that `version` of systemd knows (a unit with one it does not know is
/// refused whole): CPUQuotaPeriodUSec came in 242, AllowedCPUs and AllowedMemoryNodes in 244,
/// MemoryMin and "char-MAJOR" device entries in 240.
pub fn for_version(
    props: Vec<Property>,
    version: u32,
    proc_devices: &dyn Fn() -> String,
    v2: bool,
) -> Vec<Property> {
    let since = |name: &str| match name {
        "CPUQuotaPeriodUSec" => 242,
        "AllowedCPUs" | "AllowedMemoryNodes" => 244,
        "MemoryMin" => 240,
        _ => 0,
    };
    props
        .into_iter()
        .filter(|(name, _)| since(name) <= version)
        .map(|(name, v)| match name.as_str() {
            "DeviceAllow" if version < 240 => {
                let list = super::devices::for_old_systemd(&v, &proc_devices(), v2);
                (name, list)
            }
            _ => (name, v),
        })
        .collect()
}

/// A raw property annotation that cannot be passed on: the annotation and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAnnotation {
    pub key: String,
    pub reason: String,
}

/// `org.systemd.property.NAME=VALUE` annotations, VALUE in GVariant's text form (`true`,
/// `'text'`, `uint64 5`, `['a', 'b']`); NAMEs ending in Sec take seconds and become USec, as in
/// runc.
pub fn annotations(a: &BTreeMap<String, String>) -> Result<Vec<Property>, BadAnnotation> {
    let mut out = Vec::new();
    for (key, text) in a {
        let Some(name) = key.strip_prefix(ANNOTATION) else {
            continue;
        };
        let bad = |reason: &str| BadAnnotation {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad("not a property name"));
        }
        // The scope's processes are the container's: no annotation adds host processes to it.
        if matches!(name, "PIDs" | "PIDFDs") {
            return Err(bad("chitin sets the scope's processes itself"));
        }
        if name == "Description" {
            return Err(bad("chitin names the container in it (delete checks it)"));
        }
        if name == "Slice" {
            return Err(bad("the slice is linux.cgroupsPath's (slice:prefix:name)"));
        }
        let value = parse_variant(text.trim()).ok_or_else(|| {
            bad("the value is not in GVariant's text form (true, 'text', uint64 5, ['a'])")
        })?;
        match name.strip_suffix("Sec").filter(|n| !n.ends_with('U')) {
            Some(stem) => {
                let usec = seconds_to_usec(&value, text)
                    .ok_or_else(|| bad("a *Sec property takes a number of seconds"))?;
                out.push(prop(&format!("{stem}USec"), Value::U64(usec)));
            }
            None => out.push(prop(name, value)),
        }
    }
    Ok(out)
}

fn seconds_to_usec(v: &Value, text: &str) -> Option<u64> {
    let secs: f64 = match v {
        Value::U64(n) => *n as f64,
        Value::I64(n) => *n as f64,
        Value::I32(n) => f64::from(*n),
        Value::U32(n) => f64::from(*n),
        _ => text.trim().parse().ok()?,
    };
    (secs >= 0.0).then_some((secs * 1e6) as u64)
}

/// The subset of GVariant's text format that unit properties need.
fn parse_variant(t: &str) -> Option<Value> {
    match t {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Some(s) = quoted(t) {
        return Some(Value::Str(s));
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let items: Option<Vec<Value>> = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| quoted(s).map(Value::Str))
            .collect();
        return Some(Value::Array("s".into(), items?));
    }
    if let Some((ty, n)) = t.split_once(char::is_whitespace) {
        let n = n.trim();
        return match ty {
            "uint64" | "@t" => n.parse().ok().map(Value::U64),
            "int64" | "@x" => n.parse().ok().map(Value::I64),
            "uint32" | "@u" => n.parse().ok().map(Value::U32),
            "int32" | "@i" => n.parse().ok().map(Value::I32),
            "byte" | "@y" => n.parse().ok().map(Value::Byte),
            "boolean" | "@b" => parse_variant(n).filter(|v| matches!(v, Value::Bool(_))),
            _ => None,
        };
    }
    // A bare number is GVariant's int32, or a double; the *Sec conversion takes both.
    if let Ok(n) = t.parse::<i32>() {
        return Some(Value::I32(n));
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::F64)
}

fn quoted(t: &str) -> Option<String> {
    let q = t.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = t.strip_prefix(q)?.strip_suffix(q)?;
    (!inner.contains(q) && !inner.contains('\\')).then(|| inner.to_owned())
}

#[cfg(test)]
mod tests;
