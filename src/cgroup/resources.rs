//! `linux.resources` as a list of cgroup file writes. Working out the writes is a pure function
//! of the resources and of where each controller lives (v1 or v2), so the same code checks a plan
//! against the host's layout before anything is created, and applies it afterwards. v1 values
//! are converted for v2 the way runc converts them.

use std::fs;
use std::io;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{CgroupError, Ctl};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn err(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Resource {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

struct Writes<'a> {
    out: Vec<Write>,
    kind_of: &'a dyn Fn(&str) -> Option<Kind>,
}

impl Writes<'_> {
    /// Where `controller` lives, or an error naming the field that needs it.
    fn kind(&self, field: &str, controller: &str) -> Result<Kind, CgroupError> {
        (self.kind_of)(controller).ok_or_else(|| {
            err(
                field,
                format!("the {controller} controller is not available on this host"),
            )
        })
    }
    fn push(&mut self, controller: &'static str, file: impl Into<String>, value: impl ToString) {
        self.out.push(Write {
            controller,
            file: file.into(),
            value: value.to_string(),
        });
    }
}

fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), as runc converts.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
    }
}

/// blkio weight (10..1000) to io.weight (1..10000), as runc converts.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        0
    } else {
        1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990
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

/// The writes for `res` (devices excepted: they are rules, see `Placement::apply_device_rules`).
pub fn writes(
    res: &LinuxResources,
    kind_of: &dyn Fn(&str) -> Option<Kind>,
) -> Result<Vec<Write>, CgroupError> {
    let res = &without_unset(res);
    let mut w = Writes {
        out: Vec::new(),
        kind_of,
    };
    if let Some(m) = res.memory() {
        let k = w.kind("memory", "memory")?;
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(err("memory.swappiness", format!("{s} is above 100")));
            }
        }
        match k {
            Kind::V1 => {
                // The kernel keeps memory.limit <= memsw.limit at every write: the limit goes
                // first unless swap becomes unlimited (raising both is sorted out by apply's
                // second pass).
                let swap_first = m.swap() == Some(-1);
                if let (Some(s), true) = (m.swap(), swap_first) {
                    w.push("memory", "memory.memsw.limit_in_bytes", s);
                }
                if let Some(l) = m.limit() {
                    w.push("memory", "memory.limit_in_bytes", l);
                }
                if let (Some(s), false) = (m.swap(), swap_first) {
                    w.push("memory", "memory.memsw.limit_in_bytes", s);
                }
                if let Some(r) = m.reservation() {
                    w.push("memory", "memory.soft_limit_in_bytes", r);
                }
                if let Some(v) = m.kernel() {
                    w.push("memory", "memory.kmem.limit_in_bytes", v);
                }
                if let Some(v) = m.kernel_tcp() {
                    w.push("memory", "memory.kmem.tcp.limit_in_bytes", v);
                }
                if let Some(s) = m.swappiness() {
                    w.push("memory", "memory.swappiness", s);
                }
                if m.disable_oom_killer() == Some(true) {
                    w.push("memory", "memory.oom_control", 1);
                }
                if let Some(h) = m.use_hierarchy() {
                    w.push("memory", "memory.use_hierarchy", u8::from(h));
                }
            }
            Kind::V2 => {
                if let Some(l) = m.limit() {
                    w.push("memory", "memory.max", max_or(l));
                }
                if let Some(s) = m.swap() {
                    // OCI's swap is memory+swap; memory.swap.max is the swap alone.
                    let v = match (s, m.limit()) {
                        (s, _) if s < 0 => "max".to_string(),
                        (s, Some(l)) if l >= 0 && s >= l => (s - l).to_string(),
                        (_, Some(l)) if l >= 0 => {
                            return Err(err("memory.swap", "must not be below memory.limit"));
                        }
                        _ => return Err(err("memory.swap", "needs memory.limit on cgroup v2")),
                    };
                    w.push("memory", "memory.swap.max", v);
                }
                if let Some(r) = m.reservation() {
                    w.push("memory", "memory.low", max_or(r));
                }
                for (f, set) in [
                    ("memory.kernel", m.kernel().is_some()),
                    ("memory.kernelTCP", m.kernel_tcp().is_some()),
                    ("memory.swappiness", m.swappiness().is_some()),
                    (
                        "memory.disableOOMKiller",
                        m.disable_oom_killer() == Some(true),
                    ),
                    ("memory.useHierarchy", m.use_hierarchy() == Some(false)),
                ] {
                    if set {
                        return Err(err(f, "cgroup v2 has no such setting"));
                    }
                }
            }
        }
    }
    if let Some(c) = res.cpu() {
        let needs_cpu = c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.realtime_period().is_some()
            || c.realtime_runtime().is_some()
            || c.idle().is_some();
        if let Some(p) = c.period() {
            if !(1000..=1_000_000).contains(&p) {
                return Err(err(
                    "cpu.period",
                    format!("{p} is outside 1000..1000000 microseconds"),
                ));
            }
        }
        if let Some(q) = c.quota() {
            if q == 0 || (q > 0 && q < 1000) {
                return Err(err(
                    "cpu.quota",
                    format!("{q}: must be -1 or at least 1000 microseconds"),
                ));
            }
        }
        if needs_cpu {
            match w.kind("cpu", "cpu")? {
                Kind::V1 => {
                    if let Some(s) = c.shares() {
                        w.push("cpu", "cpu.shares", s);
                    }
                    // The period first: a quota is checked against the current period.
                    if let Some(p) = c.period() {
                        w.push("cpu", "cpu.cfs_period_us", p);
                    }
                    if let Some(q) = c.quota() {
                        w.push("cpu", "cpu.cfs_quota_us", q);
                    }
                    if let Some(b) = c.burst() {
                        w.push("cpu", "cpu.cfs_burst_us", b);
                    }
                    if let Some(p) = c.realtime_period() {
                        w.push("cpu", "cpu.rt_period_us", p);
                    }
                    if let Some(r) = c.realtime_runtime() {
                        w.push("cpu", "cpu.rt_runtime_us", r);
                    }
                    if let Some(i) = c.idle() {
                        w.push("cpu", "cpu.idle", i);
                    }
                }
                Kind::V2 => {
                    if let Some(s) = c.shares() {
                        w.push("cpu", "cpu.weight", shares_to_weight(s));
                    }
                    if c.quota().is_some() || c.period().is_some() {
                        let q = c
                            .quota()
                            .filter(|q| *q > 0)
                            .map_or("max".to_string(), |q| q.to_string());
                        w.push(
                            "cpu",
                            "cpu.max",
                            format!("{q} {}", c.period().unwrap_or(100_000)),
                        );
                    }
                    if let Some(b) = c.burst() {
                        w.push("cpu", "cpu.max.burst", b);
                    }
                    if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
                        return Err(err(
                            "cpu.realtimeRuntime",
                            "cgroup v2 has no realtime cpu controller",
                        ));
                    }
                    if let Some(i) = c.idle() {
                        w.push("cpu", "cpu.idle", i);
                    }
                }
            }
        }
        for (field, file, v) in [
            ("cpu.cpus", "cpuset.cpus", c.cpus()),
            ("cpu.mems", "cpuset.mems", c.mems()),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                if !valid_list(v) {
                    return Err(err(field, format!("{v:?} is not a list like 0-3,5")));
                }
                w.kind(field, "cpuset")?;
                w.push("cpuset", file, v);
            }
        }
    }
    if let Some(p) = res.pids() {
        w.kind("pids", "pids")?;
        w.push(
            "pids",
            "pids.max",
            if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            },
        );
    }
    if let Some(b) = res.block_io() {
        let k = w.kind(
            "blockIO",
            if (w.kind_of)("blkio").is_some() {
                "blkio"
            } else {
                "io"
            },
        )?;
        for (field, v) in [
            ("blockIO.weight", b.weight()),
            ("blockIO.leafWeight", b.leaf_weight()),
        ] {
            if let Some(v) = v {
                if !(10..=1000).contains(&v) {
                    return Err(err(field, format!("{v} is outside 10..1000")));
                }
            }
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                "rbps",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                "wbps",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                "riops",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                "wiops",
                b.throttle_write_iops_device(),
            ),
        ];
        match k {
            Kind::V1 => {
                if let Some(v) = b.weight() {
                    w.push("blkio", "blkio.weight", v);
                }
                if let Some(v) = b.leaf_weight() {
                    w.push("blkio", "blkio.leaf_weight", v);
                }
                for d in b.weight_device().iter().flatten() {
                    if let Some(v) = d.weight() {
                        w.push(
                            "blkio",
                            "blkio.weight_device",
                            format!("{}:{} {v}", d.major(), d.minor()),
                        );
                    }
                    if let Some(v) = d.leaf_weight() {
                        w.push(
                            "blkio",
                            "blkio.leaf_weight_device",
                            format!("{}:{} {v}", d.major(), d.minor()),
                        );
                    }
                }
                for (file, _, list) in throttles {
                    for t in list.iter().flatten() {
                        w.push(
                            "blkio",
                            file,
                            format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                        );
                    }
                }
            }
            Kind::V2 => {
                if let Some(v) = b.weight() {
                    w.push(
                        "io",
                        "io.weight",
                        format!("default {}", blkio_to_io_weight(v)),
                    );
                }
                if b.leaf_weight().is_some()
                    || b.weight_device()
                        .iter()
                        .flatten()
                        .any(|d| d.leaf_weight().is_some())
                {
                    return Err(err("blockIO.leafWeight", "cgroup v2 has no leaf weights"));
                }
                for d in b.weight_device().iter().flatten() {
                    if let Some(v) = d.weight() {
                        w.push(
                            "io",
                            "io.weight",
                            format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(v)),
                        );
                    }
                }
                for (_, key, list) in throttles {
                    for t in list.iter().flatten() {
                        w.push(
                            "io",
                            "io.max",
                            format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()),
                        );
                    }
                }
            }
        }
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("hugepageLimits[{i}]");
        let size = h.page_size();
        if !size.ends_with("B")
            || size.len() < 3
            || !size[..size.len() - 2].chars().all(|c| c.is_ascii_digit())
        {
            return Err(err(
                &field,
                format!("page size {size:?} is not like 2MB or 1GB"),
            ));
        }
        match w.kind(&field, "hugetlb")? {
            Kind::V1 => w.push(
                "hugetlb",
                format!("hugetlb.{size}.limit_in_bytes"),
                h.limit(),
            ),
            Kind::V2 => w.push("hugetlb", format!("hugetlb.{size}.max"), max_or(h.limit())),
        }
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            if w.kind("network.classID", "net_cls")? == Kind::V2 {
                return Err(err(
                    "network.classID",
                    "cgroup v2 has no net_cls controller",
                ));
            }
            w.push("net_cls", "net_cls.classid", id);
        }
        for p in n.priorities().iter().flatten() {
            if w.kind("network.priorities", "net_prio")? == Kind::V2 {
                return Err(err(
                    "network.priorities",
                    "cgroup v2 has no net_prio controller",
                ));
            }
            w.push(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            );
        }
    }
    for (dev, r) in res.rdma().iter().flatten() {
        w.kind("rdma", "rdma")?;
        let mut v = dev.clone();
        if let Some(h) = r.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = r.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        w.push("rdma", "rdma.max", v);
    }
    let mut unified: Vec<(&String, &String)> = res.unified().iter().flatten().collect();
    unified.sort();
    for (key, value) in unified {
        if key.contains('/') || key.starts_with('.') || !key.contains('.') {
            return Err(err(
                &format!("unified[{key:?}]"),
                "not a cgroup v2 file name",
            ));
        }
        let controller = key.split('.').next().unwrap_or_default();
        // cgroup.* files exist in every v2 cgroup; other keys need their controller there.
        let kind = if controller == "cgroup" {
            (w.kind_of)("")
        } else {
            (w.kind_of)(controller)
        };
        match kind {
            Some(Kind::V2) => {}
            // runc's words, which tools look for.
            Some(Kind::V1) => {
                return Err(err(
                    &format!("unified[{key:?}]"),
                    format!(
                        "invalid configuration: cannot use unified on cgroup v1 ({controller} is a v1 controller here)"
                    ),
                ));
            }
            None => {
                return Err(err(
                    &format!("unified[{key:?}]"),
                    format!("needs the {controller} controller on cgroup v2"),
                ));
            }
        }
        w.push("", key.clone(), value);
    }
    Ok(w.out)
}

/// Block I/O weights live in the BFQ files when BFQ is the scheduler (and CFQ, which had the
/// plain ones on v1, is gone from current kernels).
fn file_name<'a>(dir: &Path, file: &'a str) -> &'a str {
    let bfq = match file {
        "blkio.weight" => "blkio.bfq.weight",
        "blkio.weight_device" => "blkio.bfq.weight_device",
        "io.weight" => "io.bfq.weight",
        _ => return file,
    };
    if !dir.join(file).exists() && dir.join(bfq).exists() {
        bfq
    } else {
        file
    }
}

/// Applies the writes to the container's cgroup. A write the kernel refuses because of the
/// current value of another (memory below memsw, a quota above the period) is retried after the
/// others.
pub fn apply(placement: &super::Placement, writes: &[Write]) -> Result<(), CgroupError> {
    let dir_of = |controller: &str| -> Option<&Path> {
        if controller.is_empty() {
            return placement.unified.as_deref();
        }
        match placement.controller(controller)? {
            Ctl::V1(d) | Ctl::V2(d) => Some(d),
        }
    };
    let mut failed = Vec::new();
    for wr in writes {
        let dir =
            dir_of(wr.controller).ok_or_else(|| err(wr.controller, "controller not available"))?;
        let path = dir.join(file_name(dir, &wr.file));
        if let Err(e) = fs::write(&path, &wr.value) {
            failed.push((wr, path, e));
        }
    }
    for (wr, path, first) in failed {
        let e = if matches!(first.raw_os_error(), Some(libc::EINVAL | libc::EBUSY)) {
            match fs::write(&path, &wr.value) {
                Ok(()) => continue,
                Err(e) => e,
            }
        } else {
            first
        };
        return Err(CgroupError::Io {
            path,
            source: io::Error::new(e.kind(), format!("writing {:?}: {e}", wr.value)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    fn files(ws: &[Write]) -> Vec<String> {
        ws.iter()
            .map(|w| format!("{}={}", w.file, w.value))
            .collect()
    }

    #[test]
    fn zeros_mean_unset() {
        // What Docker sends for `docker run` with no limits, and for `docker update --cpus`.
        let docker = res(serde_json::json!({
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                       "disableOOMKiller": false},
            "cpu": {"shares": 0, "quota": 25000, "period": 0, "realtimePeriod": 0,
                    "realtimeRuntime": 0, "cpus": "", "mems": ""},
            "blockIO": {"weight": 0},
            "pids": {"limit": 0}
        }));
        // No controller but cpu is needed.
        let kind = |c: &str| (c == "cpu").then_some(Kind::V1);
        assert_eq!(
            files(&writes(&docker, &kind).unwrap()),
            ["cpu.cfs_quota_us=25000"]
        );
        let v = serde_json::to_value(without_unset(&docker)).unwrap();
        assert_eq!(v, serde_json::json!({"cpu": {"quota": 25000}}));
    }

    #[test]
    fn v1_and_v2_writes() {
        let r = res(serde_json::json!({
            "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]
        }));
        let v1 = writes(&r, &|_| Some(Kind::V1)).unwrap();
        assert_eq!(
            files(&v1),
            [
                "memory.limit_in_bytes=104857600",
                "memory.memsw.limit_in_bytes=209715200",
                "memory.soft_limit_in_bytes=52428800",
                "cpu.shares=1024",
                "cpu.cfs_period_us=100000",
                "cpu.cfs_quota_us=50000",
                "cpuset.cpus=0-1",
                "pids.max=32",
                "blkio.weight=500",
                "blkio.throttle.read_bps_device=8:0 1048576",
                "hugetlb.2MB.limit_in_bytes=0",
            ]
        );
        let v2 = writes(&r, &|_| Some(Kind::V2)).unwrap();
        assert_eq!(
            files(&v2),
            [
                "memory.max=104857600",
                "memory.swap.max=104857600",
                "memory.low=52428800",
                "cpu.weight=39",
                "cpu.max=50000 100000",
                "cpuset.cpus=0-1",
                "pids.max=32",
                "io.weight=default 4950",
                "io.max=8:0 rbps=1048576",
                "hugetlb.2MB.max=0",
            ]
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let e = writes(
            &res(serde_json::json!({"memory": {"swappiness": 10}})),
            &|_| Some(Kind::V2),
        )
        .unwrap_err();
        assert!(e.to_string().contains("memory.swappiness"), "{e}");
        let e = writes(
            &res(serde_json::json!({"network": {"classID": 1}})),
            &|_| None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("net_cls controller is not available"),
            "{e}"
        );
        let e = writes(
            &res(serde_json::json!({"unified": {"memory.max": "1"}})),
            &|_| Some(Kind::V1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unified[\"memory.max\"]"), "{e}");
        assert!(e.to_string().contains("invalid configuration"), "{e}");
        let e = writes(&res(serde_json::json!({"cpu": {"cpus": "0-x"}})), &|_| {
            Some(Kind::V1)
        })
        .unwrap_err();
        assert!(e.to_string().contains("cpu.cpus"), "{e}");
        let r = res(serde_json::json!({"rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 100}}}));
        assert_eq!(
            files(&writes(&r, &|_| Some(Kind::V2)).unwrap()),
            ["rdma.max=mlx5_0 hca_handle=3 hca_object=100"]
        );
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
