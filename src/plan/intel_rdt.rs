//! `linux.intelRdt`: the resctrl group (class of service) the container's processes go in, the
//! schemata written to it, and its monitoring group, by the runtime-spec's rules.

use std::path::Path;

use oci_spec::runtime::LinuxIntelRdt;

use super::PlanError;
use super::host::Host;
use crate::resctrl::RdtGroup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdtPlan {
    pub group: RdtGroup,
    /// Written to the group's schemata in order: l3CacheSchema with memBwSchema, then schemata.
    pub schemata: Vec<String>,
}

fn bad(field: &str, why: impl Into<String>) -> PlanError {
    PlanError::field(&format!("linux.intelRdt{field}"), why)
}

#[allow(deprecated)] // enableCMT and enableMBM: runtime-spec 1.2's spelling of enableMonitoring.
pub fn plan(rdt: &LinuxIntelRdt, id: &str, host: &dyn Host) -> Result<RdtPlan, PlanError> {
    let root = host.resctrl_root().ok_or_else(|| {
        bad(
            "",
            "no resctrl filesystem is mounted (Intel RDT or AMD QoS, mounted at /sys/fs/resctrl)",
        )
    })?;
    let schemata = schemata(rdt)?;
    let (group, made) = match rdt.clos_id().as_deref() {
        None => (root.join(id), !host.exists(&root.join(id))),
        // The root group (runc 1.4): its schemata are the host's, never the container's.
        Some("/") if !schemata.is_empty() => {
            return Err(bad(
                ".closID",
                "\"/\" is the root group, whose schemata are not a container's to set",
            ));
        }
        Some("/") => (root.clone(), false),
        Some(c) if c.is_empty() || c == "." || c == ".." || c.contains('/') => {
            return Err(bad(".closID", format!("{c:?} is not a group name")));
        }
        Some(c) => {
            let dir = root.join(c);
            match (host.exists(&dir), schemata.is_empty()) {
                (false, true) => {
                    return Err(bad(
                        ".closID",
                        format!(
                            "{c:?}: no such group in {}, and no schemata to make it",
                            root.display()
                        ),
                    ));
                }
                (true, false) => same_schemata(host, &dir, &schemata)?,
                _ => {}
            }
            (dir.clone(), !host.exists(&dir))
        }
    };
    let monitor = rdt.enable_monitoring().unwrap_or(false)
        || rdt.enable_cmt().unwrap_or(false)
        || rdt.enable_mbm().unwrap_or(false);
    Ok(RdtPlan {
        group: RdtGroup {
            monitor: monitor.then(|| group.join("mon_groups").join(id)),
            dir: group,
            made,
        },
        schemata,
    })
}

/// What goes to the schemata file, in the runtime-spec's order.
fn schemata(rdt: &LinuxIntelRdt) -> Result<Vec<String>, PlanError> {
    let mut first: Vec<String> = Vec::new();
    if let Some(mb) = rdt.mem_bw_schema() {
        if !mb.starts_with("MB:") || mb.contains('\n') {
            return Err(bad(
                ".memBwSchema",
                "must be one line starting with \"MB:\"",
            ));
        }
    }
    if let Some(l3) = rdt.l3_cache_schema() {
        // An MB: line of l3CacheSchema gives way to memBwSchema's.
        first.extend(
            l3.lines()
                .filter(|l| !(rdt.mem_bw_schema().is_some() && l.trim_start().starts_with("MB:")))
                .map(str::to_owned),
        );
    }
    first.extend(rdt.mem_bw_schema().clone());
    let mut out = Vec::new();
    if !first.is_empty() {
        out.push(first.join("\n"));
    }
    if let Some(lines) = rdt.schemata().as_ref().filter(|l| !l.is_empty()) {
        out.push(lines.join("\n"));
    }
    Ok(out)
}

/// An existing group is joined only if it already has the schemata asked for: each asked
/// domain's value equal to the group's (the kernel pads masks with zeros).
fn same_schemata(host: &dyn Host, dir: &Path, asked: &[String]) -> Result<(), PlanError> {
    let path = dir.join("schemata");
    let text = host
        .read_file(&path)
        .map_err(|e| bad(".closID", format!("{}: {e}", path.display())))?;
    let have = resources(&text);
    for (res, domains) in asked.iter().flat_map(|s| resources(s)) {
        let theirs = have.iter().find(|(r, _)| *r == res).map(|(_, d)| d);
        let same = theirs.is_some_and(|t| domains.iter().all(|d| t.contains(d)));
        if !same {
            return Err(bad(
                ".closID",
                format!(
                    "group {} exists with other {res} schemata than the config's",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// "L3:0=7f0;1=1f" lines as (resource, [(domain, value without leading zeros)]).
fn resources(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(res, doms)| {
            let doms = doms
                .split(';')
                .filter_map(|d| d.split_once('='))
                .map(|(k, v)| {
                    let v = v.trim().trim_start_matches('0').to_ascii_lowercase();
                    (
                        k.trim().to_owned(),
                        if v.is_empty() { "0".into() } else { v },
                    )
                })
                .collect();
            (res.trim().to_owned(), doms)
        })
        .collect()
}

#[cfg(test)]
mod tests;
