//! The device rules as systemd's DevicePolicy and DeviceAllow. systemd can say "deny all but
//! these" only, in the forms "/dev/char/M:m", "char-M" and "char-*" (and "char-NAME" of
//! /proc/devices before systemd 240). What the list must be depends on who enforces it:
//!
//! - cgroup v1: systemd writes the devices files from its properties whenever it applies the unit
//!   (a daemon-reload): the list is the kernel's own state after chitin's writes, never wider.
//!   The rules are played as the kernel plays them (devices.allow/deny: "a" resets, others add
//!   or take back access of the exception with the same type and numbers). "*:m" has no systemd
//!   form and is left out; "allow all but these" is strict with nothing, as runc does. Both are
//!   narrower, never wider.
//! - cgroup v2: chitin's own eBPF program stays attached beside systemd's and both must allow, so
//!   the container's rules hold whatever systemd's list says, and a list narrower than the rules
//!   would deny at once. systemd gets every allow after the last "allow/deny all", each in its
//!   widest form ("*:m" as "char-*"), and "auto" where the rules start from allow all.

use crate::dbus::Value;
use crate::plan::DeviceRule;

use super::props::{Property, prop};

/// An exception to the default: (type, major, minor) and its access.
#[derive(Debug, Clone, PartialEq)]
struct Exception {
    kind: char,
    major: Option<i64>,
    minor: Option<i64>,
    access: String,
}

impl Exception {
    fn of(r: &DeviceRule) -> Exception {
        Exception {
            kind: r.kind,
            major: r.major,
            minor: r.minor,
            access: r.access.clone(),
        }
    }

    fn same_device(&self, o: &Exception) -> bool {
        (self.kind, self.major, self.minor) == (o.kind, o.major, o.minor)
    }
}

pub fn properties(rules: &[DeviceRule], v2: bool) -> Vec<Property> {
    let (allow_all, exceptions) = if v2 { allows(rules) } else { played(rules) };
    let policy = |p: &str| prop("DevicePolicy", Value::str(p));
    let list = |e: Vec<(String, String)>| prop("DeviceAllow", allow_list(e));
    match (allow_all, exceptions.is_empty()) {
        (true, true) => vec![policy("auto"), list(vec![])],
        (true, false) => vec![policy("strict"), list(vec![])],
        (false, _) => vec![policy("strict"), list(entries(&exceptions, v2))],
    }
}

/// v1: the kernel's default and exceptions after the rules (security/device_cgroup.c).
fn played(rules: &[DeviceRule]) -> (bool, Vec<Exception>) {
    let mut allow_all = true;
    let mut exceptions: Vec<Exception> = Vec::new();
    for r in rules {
        let e = Exception::of(r);
        if r.kind == 'a' {
            // Any "a" line resets, whatever follows it.
            allow_all = r.allow;
            exceptions.clear();
        } else if r.allow != allow_all {
            match exceptions.iter_mut().find(|x| x.same_device(&e)) {
                Some(x) => union(&mut x.access, &e.access),
                None => exceptions.push(e),
            }
        } else if let Some(x) = exceptions.iter_mut().find(|x| x.same_device(&e)) {
            x.access.retain(|c| !e.access.contains(c));
        }
        exceptions.retain(|x| !x.access.is_empty());
    }
    (allow_all, exceptions)
}

/// v2: the allows after the last reset, for a list no narrower than the rules.
fn allows(rules: &[DeviceRule]) -> (bool, Vec<Exception>) {
    let reset = |r: &DeviceRule| {
        r.kind == 'a'
            && r.major.is_none()
            && r.minor.is_none()
            && "rwm".chars().all(|c| r.access.contains(c))
    };
    let start = rules.iter().rposition(reset);
    let allow_all = start.is_none_or(|i| rules[i].allow);
    let after = start.map_or(0, |i| i + 1);
    let exceptions = rules[after..]
        .iter()
        .filter(|r| r.allow)
        .map(Exception::of)
        .collect();
    // Denies only narrow chitin's program; allows after an allow-all add nothing.
    (allow_all, if allow_all { Vec::new() } else { exceptions })
}

/// The exceptions in systemd's forms, one entry a device with its access united (systemd keeps
/// the last access given for a device, the kernel their union).
fn entries(exceptions: &[Exception], v2: bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for x in exceptions {
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
                (None, Some(_)) if v2 => format!("{word}-*"),
                (None, Some(_)) => continue,
            };
            match out.iter_mut().find(|(p, _)| *p == path) {
                Some((_, a)) => union(a, &x.access),
                None => out.push((path, x.access.clone())),
            }
        }
    }
    for (_, a) in &mut out {
        *a = "rwm".chars().filter(|c| a.contains(*c)).collect();
    }
    out
}

fn union(into: &mut String, more: &str) {
    for c in more.chars() {
        if !into.contains(c) {
            into.push(c);
        }
    }
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

/// Before systemd 240 a whole major is "char-NAME", NAME its group in /proc/devices: "char-M"
/// entries are renamed so, or left out where the major has no name (on v2 "char-*" instead,
/// as there the list must not be narrower).
pub fn for_old_systemd(list: &Value, proc_devices: &str, v2: bool) -> Value {
    let Value::Array(sig, items) = list else {
        return list.clone();
    };
    let name_of = |section: &str, major: &str| -> Option<String> {
        let heading = if section == "char" {
            "Character devices:"
        } else {
            "Block devices:"
        };
        proc_devices
            .split("\n\n")
            .find(|s| s.trim_start().starts_with(heading))?
            .lines()
            .skip(1)
            .find_map(|l| {
                let (m, n) = l.trim().split_once(' ')?;
                (m == major).then(|| n.trim().to_owned())
            })
    };
    let renamed = items.iter().filter_map(|item| {
        let Value::Struct(f) = item else {
            return Some(item.clone());
        };
        let path = f.first().and_then(Value::as_str).unwrap_or_default();
        let Some((word, major)) = path
            .split_once('-')
            .filter(|(_, m)| m.parse::<u32>().is_ok())
        else {
            return Some(item.clone());
        };
        let new = match name_of(word, major) {
            Some(name) => format!("{word}-{name}"),
            None if v2 => format!("{word}-*"),
            None => return None,
        };
        Some(Value::Struct(vec![Value::Str(new), f[1].clone()]))
    });
    Value::Array(sig.clone(), renamed.collect())
}

#[cfg(test)]
mod tests;
