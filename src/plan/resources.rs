//! linux.resources as chitin's own values: read as runc reads them (zeros mean unset), and
//! checked wherever they come from (a config, or `update`) before anything is made, for what no
//! cgroup takes whichever its version. What the host's layout cannot do is cgroup::resources's
//! to refuse, as it maps these values to the files of each controller.

use oci_spec::runtime::LinuxResources;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    /// pids.max: a limit, or None for "max".
    pub pids: Option<Option<i64>>,
    pub block_io: Option<BlockIo>,
    pub hugepage_limits: Vec<HugepageLimit>,
    pub net_class_id: Option<u32>,
    /// (interface, priority)
    pub net_priorities: Vec<(String, u32)>,
    /// By device, in order.
    pub rdma: Vec<(String, Rdma)>,
    /// cgroup v2 files by name, in order.
    pub unified: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Bytes; -1 for no limit.
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    /// Memory plus swap (OCI's meaning); -1 for no limit.
    pub swap: Option<i64>,
    pub kernel: Option<i64>,
    pub kernel_tcp: Option<i64>,
    pub swappiness: Option<u64>,
    pub disable_oom_killer: bool,
    pub use_hierarchy: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    pub shares: Option<u64>,
    /// Microseconds per period; -1 for no limit.
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub burst: Option<u64>,
    pub realtime_period: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub idle: Option<i64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

impl Cpu {
    /// Anything for the cpu controller (cpus and mems are cpuset's).
    pub fn needs_cpu(&self) -> bool {
        self.shares.is_some()
            || self.quota.is_some()
            || self.period.is_some()
            || self.burst.is_some()
            || self.realtime_period.is_some()
            || self.realtime_runtime.is_some()
            || self.idle.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    pub weight_device: Vec<WeightDevice>,
    /// Read and write bytes and I/Os per second, in that order.
    pub throttle: [Vec<Throttle>; 4],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepageLimit {
    /// "2MB", "1GB", ...
    pub page_size: String,
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rdma {
    pub hca_handles: Option<u32>,
    pub hca_objects: Option<u32>,
}

/// `res` without the values that mean "not set" to runc: zero limits, shares, periods, quotas
/// and weights, and empty cpusets. Docker and containerd send them so, in create and in update.
pub fn without_unset(res: &LinuxResources) -> LinuxResources {
    fn nz<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
        v.filter(|v| *v != T::default())
    }
    let mut r = res.clone();
    if let Some(o) = res.memory() {
        let mut m = *o;
        m.set_limit(nz(o.limit()))
            .set_reservation(nz(o.reservation()))
            .set_swap(nz(o.swap()))
            .set_kernel(nz(o.kernel()))
            .set_kernel_tcp(nz(o.kernel_tcp()))
            .set_disable_oom_killer(o.disable_oom_killer().filter(|d| *d));
        let empty = m == Default::default();
        r.set_memory((!empty).then_some(m));
    }
    if let Some(o) = res.cpu() {
        let mut c = o.clone();
        c.set_shares(nz(o.shares()))
            .set_quota(nz(o.quota()))
            .set_period(nz(o.period()))
            .set_realtime_period(nz(o.realtime_period()))
            .set_realtime_runtime(nz(o.realtime_runtime()))
            .set_cpus(o.cpus().clone().filter(|s| !s.is_empty()))
            .set_mems(o.mems().clone().filter(|s| !s.is_empty()));
        let empty = c == Default::default();
        r.set_cpu((!empty).then_some(c));
    }
    if let Some(o) = res.block_io() {
        let mut b = o.clone();
        b.set_weight(nz(o.weight()))
            .set_leaf_weight(nz(o.leaf_weight()));
        let empty = b == Default::default();
        r.set_block_io((!empty).then_some(b));
    }
    if res.pids().is_some_and(|p| p.limit() == 0) {
        r.set_pids(None);
    }
    r
}

impl Resources {
    /// `res` (its device rules aside: they are planned apart) as runc reads it, checked.
    pub fn from_oci(res: &LinuxResources) -> Result<Resources, Invalid> {
        let res = &without_unset(res);
        let mut unified: Vec<(String, String)> = res
            .unified()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        unified.sort();
        let mut rdma: Vec<(String, Rdma)> = res
            .rdma()
            .iter()
            .flatten()
            .map(|(d, r)| {
                let r = Rdma {
                    hca_handles: r.hca_handles(),
                    hca_objects: r.hca_objects(),
                };
                (d.clone(), r)
            })
            .collect();
        rdma.sort_by(|a, b| a.0.cmp(&b.0));
        let network = res.network().as_ref();
        let r = Resources {
            memory: res.memory().map(|m| Memory {
                limit: m.limit(),
                reservation: m.reservation(),
                swap: m.swap(),
                kernel: m.kernel(),
                kernel_tcp: m.kernel_tcp(),
                swappiness: m.swappiness(),
                disable_oom_killer: m.disable_oom_killer() == Some(true),
                use_hierarchy: m.use_hierarchy(),
            }),
            cpu: res.cpu().as_ref().map(cpu),
            pids: res.pids().map(|p| Some(p.limit()).filter(|l| *l > 0)),
            block_io: res.block_io().as_ref().map(block_io),
            hugepage_limits: (res.hugepage_limits().iter().flatten())
                .map(|h| HugepageLimit {
                    page_size: h.page_size().clone(),
                    limit: h.limit(),
                })
                .collect(),
            net_class_id: network.and_then(|n| n.class_id()),
            net_priorities: (network.iter().flat_map(|n| n.priorities()).flatten())
                .map(|p| (p.name().clone(), p.priority()))
                .collect(),
            rdma,
            unified,
        };
        r.check()?;
        Ok(r)
    }
}

fn cpu(c: &oci_spec::runtime::LinuxCpu) -> Cpu {
    Cpu {
        shares: c.shares(),
        quota: c.quota(),
        period: c.period(),
        burst: c.burst(),
        realtime_period: c.realtime_period(),
        realtime_runtime: c.realtime_runtime(),
        idle: c.idle(),
        cpus: c.cpus().clone(),
        mems: c.mems().clone(),
    }
}

fn block_io(b: &oci_spec::runtime::LinuxBlockIo) -> BlockIo {
    let throttle = |l: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>| {
        l.iter()
            .flatten()
            .map(|t| Throttle {
                major: t.major(),
                minor: t.minor(),
                rate: t.rate(),
            })
            .collect()
    };
    BlockIo {
        weight: b.weight(),
        leaf_weight: b.leaf_weight(),
        weight_device: (b.weight_device().iter().flatten())
            .map(|d| WeightDevice {
                major: d.major(),
                minor: d.minor(),
                weight: d.weight(),
                leaf_weight: d.leaf_weight(),
            })
            .collect(),
        throttle: [
            throttle(b.throttle_read_bps_device()),
            throttle(b.throttle_write_bps_device()),
            throttle(b.throttle_read_iops_device()),
            throttle(b.throttle_write_iops_device()),
        ],
    }
}

/// A value no cgroup takes, by its field below linux.resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// "0-3,5" style lists, as cpuset.cpus and cpuset.mems take them.
fn valid_list(s: &str) -> bool {
    s.split(',').all(|part| {
        let mut it = part.splitn(2, '-');
        let a = it.next().is_some_and(|n| n.trim().parse::<u32>().is_ok());
        a && it.next().is_none_or(|n| n.trim().parse::<u32>().is_ok())
    })
}

impl Resources {
    fn check(&self) -> Result<(), Invalid> {
        if let Some(s) = self.memory.as_ref().and_then(|m| m.swappiness) {
            if s > 100 {
                return Err(invalid("memory.swappiness", format!("{s} is above 100")));
            }
        }
        if let Some(c) = &self.cpu {
            if let Some(p) = c.period.filter(|p| !(1000..=1_000_000).contains(p)) {
                let reason = format!("{p} is outside 1000..1000000 microseconds");
                return Err(invalid("cpu.period", reason));
            }
            if let Some(q) = c.quota.filter(|&q| q == 0 || (q > 0 && q < 1000)) {
                let reason = format!("{q}: must be -1 or at least 1000 microseconds");
                return Err(invalid("cpu.quota", reason));
            }
            for (field, v) in [("cpu.cpus", &c.cpus), ("cpu.mems", &c.mems)] {
                if let Some(v) = v.as_deref().filter(|v| !valid_list(v)) {
                    return Err(invalid(field, format!("{v:?} is not a list like 0-3,5")));
                }
            }
        }
        if let Some(b) = &self.block_io {
            for (field, v) in [
                ("blockIO.weight", b.weight),
                ("blockIO.leafWeight", b.leaf_weight),
            ] {
                if let Some(v) = v.filter(|v| !(10..=1000).contains(v)) {
                    return Err(invalid(field, format!("{v} is outside 10..1000")));
                }
            }
        }
        for (i, h) in self.hugepage_limits.iter().enumerate() {
            let size = &h.page_size;
            let digits = ["KB", "MB", "GB", "TB", "PB"]
                .iter()
                .find_map(|u| size.strip_suffix(u));
            if !digits.is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())) {
                let reason = format!("page size {size:?} is not like 2MB or 1GB");
                return Err(invalid(&format!("hugepageLimits[{i}]"), reason));
            }
        }
        for (key, _) in &self.unified {
            if key.contains('/') || key.starts_with('.') || !key.contains('.') {
                return Err(invalid(
                    &format!("unified[{key:?}]"),
                    "not a cgroup v2 file name",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_json(v: serde_json::Value) -> Result<(), String> {
        Resources::from_oci(&serde_json::from_value(v).unwrap())
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.field, e.reason))
    }

    #[test]
    fn values_no_cgroup_takes_are_refused() {
        for (v, want) in [
            (
                serde_json::json!({"memory": {"swappiness": 101}}),
                "memory.swappiness: 101 is above 100",
            ),
            (
                serde_json::json!({"cpu": {"period": 999}}),
                "cpu.period: 999 is outside",
            ),
            (
                serde_json::json!({"cpu": {"quota": 999}}),
                "cpu.quota: 999: must be -1",
            ),
            (
                serde_json::json!({"cpu": {"cpus": "0-x"}}),
                "cpu.cpus: \"0-x\" is not a list",
            ),
            (
                serde_json::json!({"blockIO": {"weight": 5}}),
                "blockIO.weight: 5 is outside 10..1000",
            ),
            (
                serde_json::json!({"hugepageLimits": [{"pageSize": "2ZB", "limit": 1}]}),
                "hugepageLimits[0]: page size \"2ZB\"",
            ),
            (
                serde_json::json!({"hugepageLimits": [{"pageSize": "MB", "limit": 1}]}),
                "hugepageLimits[0]",
            ),
            (
                serde_json::json!({"unified": {"../memory.max": "1"}}),
                "unified[\"../memory.max\"]: not a cgroup v2 file name",
            ),
        ] {
            let e = check_json(v).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
        let ok = serde_json::json!({"memory": {"swappiness": 100}, "cpu": {"period": 0, "quota": -1, "cpus": "0-3,5"},
            "blockIO": {"weight": 0}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "64KB", "limit": 0}],
            "unified": {"memory.high": "1"}});
        check_json(ok).unwrap();
    }
}
