//! The cpu and cpuset controllers: v1's CFS and RT files, or v2's weight and max (shares and
//! the period converted as runc converts them).

use crate::plan::resources::Cpu;

use super::{Kind, Writes, err};
use crate::cgroup::CgroupError;

/// cpu.shares (2..262144) to cpu.weight (1..10000), as runc converts.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
    }
}

pub(super) fn writes(c: &Cpu, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    if c.needs_cpu() {
        match w.kind("cpu", "cpu")? {
            Kind::V1 => v1(c, w),
            Kind::V2 => v2(c, w)?,
        }
    }
    for (field, file, v) in [
        ("cpu.cpus", "cpuset.cpus", &c.cpus),
        ("cpu.mems", "cpuset.mems", &c.mems),
    ] {
        if let Some(v) = v {
            w.kind(field, "cpuset")?;
            w.push("cpuset", file, v);
        }
    }
    Ok(())
}

fn v1(c: &Cpu, w: &mut Writes<'_>) {
    if let Some(s) = c.shares {
        w.push("cpu", "cpu.shares", s);
    }
    // The period first: a quota is checked against the current period.
    if let Some(p) = c.period {
        w.push("cpu", "cpu.cfs_period_us", p);
    }
    if let Some(q) = c.quota {
        w.push("cpu", "cpu.cfs_quota_us", q);
    }
    if let Some(b) = c.burst {
        w.push("cpu", "cpu.cfs_burst_us", b);
    }
    if let Some(p) = c.realtime_period {
        w.push("cpu", "cpu.rt_period_us", p);
    }
    if let Some(r) = c.realtime_runtime {
        w.push("cpu", "cpu.rt_runtime_us", r);
    }
    if let Some(i) = c.idle {
        w.push("cpu", "cpu.idle", i);
    }
}

fn v2(c: &Cpu, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    if let Some(s) = c.shares {
        w.push("cpu", "cpu.weight", shares_to_weight(s));
    }
    if c.quota.is_some() || c.period.is_some() {
        let q = c
            .quota
            .filter(|q| *q > 0)
            .map_or("max".to_string(), |q| q.to_string());
        w.push(
            "cpu",
            "cpu.max",
            format!("{q} {}", c.period.unwrap_or(100_000)),
        );
    }
    if let Some(b) = c.burst {
        w.push("cpu", "cpu.max.burst", b);
    }
    if c.realtime_period.is_some() || c.realtime_runtime.is_some() {
        return Err(err(
            "cpu.realtimeRuntime",
            "cgroup v2 has no realtime cpu controller",
        ));
    }
    if let Some(i) = c.idle {
        w.push("cpu", "cpu.idle", i);
    }
    Ok(())
}
