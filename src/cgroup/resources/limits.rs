//! The controllers with one kind of file each: pids, hugetlb, net_cls and net_prio (v1 only),
//! rdma, and cgroup v2's `unified` files by name.

use crate::plan::resources::Resources;

use super::{Kind, Writes, err, max_or};
use crate::cgroup::CgroupError;

pub(super) fn pids(res: &Resources, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    if let Some(limit) = res.pids {
        w.kind("pids", "pids")?;
        w.push(
            "pids",
            "pids.max",
            limit.map_or("max".into(), |l| l.to_string()),
        );
    }
    Ok(())
}

pub(super) fn hugetlb(res: &Resources, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    for (i, h) in res.hugepage_limits.iter().enumerate() {
        let size = &h.page_size;
        match w.kind(&format!("hugepageLimits[{i}]"), "hugetlb")? {
            Kind::V1 => w.push("hugetlb", format!("hugetlb.{size}.limit_in_bytes"), h.limit),
            Kind::V2 => w.push("hugetlb", format!("hugetlb.{size}.max"), max_or(h.limit)),
        }
    }
    Ok(())
}

pub(super) fn network(res: &Resources, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    if let Some(id) = res.net_class_id {
        if w.kind("network.classID", "net_cls")? == Kind::V2 {
            return Err(err(
                "network.classID",
                "cgroup v2 has no net_cls controller",
            ));
        }
        w.push("net_cls", "net_cls.classid", id);
    }
    for (name, priority) in &res.net_priorities {
        if w.kind("network.priorities", "net_prio")? == Kind::V2 {
            return Err(err(
                "network.priorities",
                "cgroup v2 has no net_prio controller",
            ));
        }
        w.push(
            "net_prio",
            "net_prio.ifpriomap",
            format!("{name} {priority}"),
        );
    }
    Ok(())
}

pub(super) fn rdma(res: &Resources, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    for (dev, r) in &res.rdma {
        w.kind("rdma", "rdma")?;
        let mut v = dev.clone();
        if let Some(h) = r.hca_handles {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = r.hca_objects {
            v.push_str(&format!(" hca_object={o}"));
        }
        w.push("rdma", "rdma.max", v);
    }
    Ok(())
}

/// `unified`: files of cgroup v2 by name, each needing its controller there (cgroup.* files
/// exist in every v2 cgroup).
pub(super) fn unified(res: &Resources, w: &mut Writes<'_>) -> Result<(), CgroupError> {
    for (key, value) in &res.unified {
        let field = format!("unified[{key:?}]");
        let controller = key.split('.').next().unwrap_or_default();
        let kind = match controller {
            "cgroup" => (w.kind_of)(""),
            c => (w.kind_of)(c),
        };
        match kind {
            Some(Kind::V2) => {}
            // runc's words, which tools look for.
            Some(Kind::V1) => {
                return Err(err(
                    &field,
                    format!(
                        "invalid configuration: cannot use unified on cgroup v1 ({controller} is a v1 controller here)"
                    ),
                ));
            }
            None => {
                let reason = format!("needs the {controller} controller on cgroup v2");
                return Err(err(&field, reason));
            }
        }
        w.push("", key.clone(), value);
    }
    Ok(())
}
