//! The unit properties of a container: the scope's own, the resources systemd has properties
//! for (v1 or v2 names, by where each controller lives), the device rules in systemd's syntax,
//! and the raw `org.systemd.property.*` annotations. chitin writes every cgroup file itself as
//! well (as runc does); the properties are what systemd puts back when it re-applies a unit
//! (`systemctl daemon-reload`), so they must never be looser than the files.

use std::collections::BTreeMap;

use crate::cgroup::resources::{Kind, blkio_to_io_weight, shares_to_weight};
use crate::dbus::Value;
use crate::plan::DeviceRule;
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
    let io = match kind_of("io").or(kind_of("blkio")) {
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
        match kind_of("io").or(kind_of("blkio")) {
            Some(Kind::V2) => p.push(prop("IOWeight", Value::U64(blkio_to_io_weight(w)))),
            Some(Kind::V1) => p.push(prop("BlockIOWeight", Value::U64(u64::from(w)))),
            None => {}
        }
    }
    p.extend(r.unified.iter().filter_map(|(k, v)| unified(k, v)));
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
        // "QUOTA PERIOD", or "max PERIOD".
        "cpu.max" => {
            let mut it = v.split_whitespace();
            let quota = it.next()?;
            let period = it.next().map_or(Some(100_000), |p| p.parse().ok())?.max(1);
            let q = if quota == "max" {
                -1
            } else {
                quota.parse().ok()?
            };
            return Some(prop(
                "CPUQuotaPerSecUSec",
                Value::U64(quota_per_sec(q, period)),
            ));
        }
        _ => return None,
    };
    bytes().map(|b| prop(name, b))
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
    // The kernel's limit on CPUs (and so on a sane list): 8192.
    for n in crate::cgroup::stats::cpu_list(list)
        .into_iter()
        .filter(|n| *n < 8192)
    {
        let (i, bit) = ((n / 8) as usize, n % 8);
        if bytes.len() <= i {
            bytes.resize(i + 1, 0);
        }
        bytes[i] |= 1 << bit;
    }
    Value::Array("y".into(), bytes.into_iter().map(Value::Byte).collect())
}

/// One exception to the default of the device rules: (type, major, minor, access).
#[derive(Debug, Clone, PartialEq)]
struct Exception {
    kind: char,
    major: Option<i64>,
    minor: Option<i64>,
    access: String,
}

impl Exception {
    /// `self` and `other` name some device in common.
    fn overlaps(&self, other: &Exception) -> bool {
        let field = |a: Option<i64>, b: Option<i64>| a.is_none() || b.is_none() || a == b;
        (self.kind == 'a' || other.kind == 'a' || self.kind == other.kind)
            && field(self.major, other.major)
            && field(self.minor, other.minor)
    }
}

/// The device rules as DevicePolicy and DeviceAllow. The rules are played in order, as the
/// kernel plays them, to a default and its exceptions. systemd can say "deny but these" only:
/// - allow all with no exceptions is DevicePolicy=auto;
/// - deny all but some is DevicePolicy=strict with the exceptions, each in the narrowest form
///   systemd has ("/dev/char/M:m", "char-M", "char-*"); a deny that overlaps an allow takes its
///   access from the whole allow, and "*:m" (no systemd form) is left out: narrower, never wider;
/// - allow all but some cannot be said. On cgroup v2 chitin's own eBPF program enforces the
///   rules whatever systemd's says, so systemd is told auto; on v1, where systemd would rewrite
///   the devices files, strict with no exceptions, as runc does (safe, if narrower).
pub fn devices(rules: &[DeviceRule], v2: bool) -> Vec<Property> {
    let mut allow_all = true;
    let mut exceptions: Vec<Exception> = Vec::new();
    for r in rules {
        let e = Exception {
            kind: r.kind,
            major: r.major,
            minor: r.minor,
            access: r.access.clone(),
        };
        if r.kind == 'a' && r.major.is_none() && r.minor.is_none() && has_all(&r.access) {
            allow_all = r.allow;
            exceptions.clear();
        } else if r.allow != allow_all {
            exceptions.push(e);
        } else {
            // Back to the default for what it names.
            for x in exceptions.iter_mut().filter(|x| x.overlaps(&e)) {
                x.access.retain(|c| !e.access.contains(c));
            }
            exceptions.retain(|x| !x.access.is_empty());
        }
    }
    let policy = |p: &str| prop("DevicePolicy", Value::str(p));
    if allow_all {
        if exceptions.is_empty() || v2 {
            return vec![policy("auto"), prop("DeviceAllow", allow_list(vec![]))];
        }
        return vec![policy("strict"), prop("DeviceAllow", allow_list(vec![]))];
    }
    let mut entries = Vec::new();
    for x in &exceptions {
        let words: &[&str] = match x.kind {
            'c' => &["char"],
            'b' => &["block"],
            _ => &["char", "block"],
        };
        for word in words {
            let path = match (x.major, x.minor) {
                (Some(ma), Some(mi)) => format!("/dev/{word}/{ma}:{mi}"),
                (Some(ma), None) => format!("{word}-{ma}"),
                (None, None) => format!("{word}-*"),
                (None, Some(_)) => continue,
            };
            entries.push((path, x.access.clone()));
        }
    }
    vec![policy("strict"), prop("DeviceAllow", allow_list(entries))]
}

fn has_all(access: &str) -> bool {
    "rwm".chars().all(|c| access.contains(c))
}

fn allow_list(entries: Vec<(String, String)>) -> Value {
    Value::Array(
        "(ss)".into(),
        entries
            .into_iter()
            .map(|(p, a)| Value::Struct(vec![Value::Str(p), Value::Str(a)]))
            .collect(),
    )
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
