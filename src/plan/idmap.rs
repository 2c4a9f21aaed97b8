//! linux.uidMappings and linux.gidMappings, checked as the kernel checks them when they are
//! written, so that a bad map fails before anything is made.

use oci_spec::runtime::Linux;

use super::PlanError;
use super::host::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The maps as /proc/PID/uid_map (and gid_map) takes them, all in one write.
pub fn id_map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect()
}

/// The uid and gid maps.
pub fn plan(linux: &Linux, host: &dyn Host) -> Result<(Vec<IdMap>, Vec<IdMap>), PlanError> {
    Ok((
        id_maps("linux.uidMappings", linux.uid_mappings().as_ref(), host)?,
        id_maps("linux.gidMappings", linux.gid_mappings().as_ref(), host)?,
    ))
}

pub(super) fn id_maps(
    field: &str,
    v: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>,
    host: &dyn Host,
) -> Result<Vec<IdMap>, PlanError> {
    let maps: Vec<IdMap> = v
        .into_iter()
        .flatten()
        .map(|m| IdMap {
            container: m.container_id(),
            host: m.host_id(),
            size: m.size(),
        })
        .collect();
    // What the kernel refuses when the map is written, refused here before anything is made.
    if maps.len() > MAX_ID_RANGES {
        return Err(PlanError::field(
            field,
            format!(
                "{} ranges; the kernel takes at most {MAX_ID_RANGES}",
                maps.len()
            ),
        ));
    }
    for (i, m) in maps.iter().enumerate() {
        if m.size == 0 {
            return Err(PlanError::field(
                &format!("{field}[{i}].size"),
                "must be greater than zero",
            ));
        }
        for (name, first) in [("containerID", m.container), ("hostID", m.host)] {
            if first.checked_add(m.size).is_none() {
                return Err(PlanError::field(
                    &format!("{field}[{i}]"),
                    format!("{name} {first} + size {} passes 4294967295", m.size),
                ));
            }
        }
        // Earlier ranges passed the check above, so these sums cannot wrap.
        let overlap = |a: u32, b: u32, o: &IdMap| a < b + o.size && b < a + m.size;
        if let Some(j) = maps[..i]
            .iter()
            .position(|o| overlap(m.container, o.container, o) || overlap(m.host, o.host, o))
        {
            return Err(PlanError::field(
                &format!("{field}[{i}]"),
                format!("overlaps {field}[{j}]"),
            ));
        }
    }
    // The kernel takes the map in one write shorter than a page.
    let page = host.page_size();
    let len = id_map_text(&maps).len();
    if len >= page {
        return Err(PlanError::field(
            field,
            format!("{len} bytes as a map; the kernel takes less than a page ({page})"),
        ));
    }
    Ok(maps)
}

/// The kernel's limit on the lines of a uid_map or gid_map (UID_GID_MAP_MAX_EXTENTS).
const MAX_ID_RANGES: usize = 340;
