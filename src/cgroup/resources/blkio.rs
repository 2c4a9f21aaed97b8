//! Block I/O: v1's blkio weights and throttles, or v2's io.weight and io.max (weights
//! converted as runc converts them).

use crate::plan::resources::BlockIo;

use super::{Kind, Writes, err};
use crate::cgroup::CgroupError;

/// blkio weight (10..1000) to io.weight (1..10000), as runc converts.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        0
    } else {
        1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990
    }
}

/// The throttles' v1 files and v2 io.max keys, in BlockIo::throttle's order.
const THROTTLES: [(&str, &str); 4] = [
    ("blkio.throttle.read_bps_device", "rbps"),
    ("blkio.throttle.write_bps_device", "wbps"),
    ("blkio.throttle.read_iops_device", "riops"),
    ("blkio.throttle.write_iops_device", "wiops"),
];

pub(super) fn writes(b: &BlockIo, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    let controller = match (w.kind_of)("blkio") {
        Some(_) => "blkio",
        None => "io",
    };
    match w.kind("blockIO", controller)? {
        Kind::V1 => v1(b, w),
        Kind::V2 => v2(b, w)?,
    }
    Ok(())
}

fn v1(b: &BlockIo, w: &mut Writes<'_>) {
    if let Some(v) = b.weight {
        w.push("blkio", "blkio.weight", v);
    }
    if let Some(v) = b.leaf_weight {
        w.push("blkio", "blkio.leaf_weight", v);
    }
    for d in b.weight_device.iter() {
        let dev = format!("{}:{}", d.major, d.minor);
        if let Some(v) = d.weight {
            w.push("blkio", "blkio.weight_device", format!("{dev} {v}"));
        }
        if let Some(v) = d.leaf_weight {
            w.push("blkio", "blkio.leaf_weight_device", format!("{dev} {v}"));
        }
    }
    for ((file, _), list) in THROTTLES.iter().zip(&b.throttle) {
        for t in list {
            let v = format!("{}:{} {}", t.major, t.minor, t.rate);
            w.push("blkio", *file, v);
        }
    }
}

fn v2(b: &BlockIo, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    if let Some(v) = b.weight {
        w.push(
            "io",
            "io.weight",
            format!("default {}", blkio_to_io_weight(v)),
        );
    }
    let leaf = b.weight_device.iter().any(|d| d.leaf_weight.is_some());
    if b.leaf_weight.is_some() || leaf {
        return Err(err("blockIO.leafWeight", "cgroup v2 has no leaf weights"));
    }
    for d in b.weight_device.iter() {
        if let Some(v) = d.weight {
            let v = format!("{}:{} {}", d.major, d.minor, blkio_to_io_weight(v));
            w.push("io", "io.weight", v);
        }
    }
    for ((_, key), list) in THROTTLES.iter().zip(&b.throttle) {
        for t in list {
            let v = format!("{}:{} {key}={}", t.major, t.minor, t.rate);
            w.push("io", "io.max", v);
        }
    }
    Ok(())
}
