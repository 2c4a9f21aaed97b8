//! A user namespace joined by path with mappings in the config (Docker's `--userns-remap` with
//! `--network container:X` writes both): accepted when the mappings are the namespace's own, as
//! what the config says of its ids is then true.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::host::Host;
use super::{IdMap, PlanError};

/// Checks `uid_map` and `gid_map` against those of the user namespace at `path`.
pub fn check_joined(
    host: &dyn Host,
    path: &Path,
    uid_map: &[IdMap],
    gid_map: &[IdMap],
) -> Result<(), PlanError> {
    let (uids, gids) = host
        .userns_maps(path)
        .map_err(|e| PlanError::field("linux.uidMappings", e))?;
    for (field, have, want) in [
        ("linux.uidMappings", uids, uid_map),
        ("linux.gidMappings", gids, gid_map),
    ] {
        if !same(&have, want) {
            return Err(PlanError::field(
                field,
                format!(
                    "differ from those of the joined user namespace {}",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The maps of the container's user namespace: the config's for a new one, else (a joined one
/// whose maps the config leaves out) the namespace's own; None without one.
pub fn container_maps(
    ns: &super::Namespaces,
    uid_map: &[IdMap],
    gid_map: &[IdMap],
    host: &dyn Host,
) -> Option<(Vec<IdMap>, Vec<IdMap>)> {
    match ns.joined(super::NsKind::User) {
        Some(path) if uid_map.is_empty() => host.userns_maps(path).ok(),
        Some(_) => Some((uid_map.to_vec(), gid_map.to_vec())),
        None if ns.is_new(super::NsKind::User) => Some((uid_map.to_vec(), gid_map.to_vec())),
        None => None,
    }
}

/// The maps of the user namespace at `path`, read from a process in it.
pub fn maps_of(path: &Path) -> Result<(Vec<IdMap>, Vec<IdMap>), String> {
    let ns = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pid = member(path, ns.dev(), ns.ino()).ok_or_else(|| {
        format!(
            "no process is in the user namespace {} to read its mappings from",
            path.display()
        )
    })?;
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map(|t| parse(&t))
            .map_err(|e| format!("reading {file} of pid {pid}: {e}"))
    };
    Ok((read("uid_map")?, read("gid_map")?))
}

/// A process in the namespace whose file has this device and inode: the one a /proc/PID/ns/user
/// path names, else (a bind-mounted namespace) one found in /proc.
fn member(path: &Path, dev: u64, ino: u64) -> Option<u32> {
    let is_in = |pid: &u32| {
        std::fs::metadata(format!("/proc/{pid}/ns/user"))
            .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    };
    let named = path.strip_prefix("/proc").ok().and_then(|p| {
        p.components()
            .next()?
            .as_os_str()
            .to_str()?
            .parse::<u32>()
            .ok()
    });
    if let Some(pid) = named.filter(is_in) {
        return Some(pid);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(is_in)
}

pub fn parse(text: &str) -> Vec<IdMap> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>());
            Some(IdMap {
                container: f.next()?.ok()?,
                host: f.next()?.ok()?,
                size: f.next()?.ok()?,
            })
        })
        .collect()
}

fn same(a: &[IdMap], b: &[IdMap]) -> bool {
    let key = |m: &IdMap| (m.container, m.host, m.size);
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_compare_as_sets() {
        let text = "         0     100000      65536\n     65536          0          1\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        let want = [
            IdMap {
                container: 65536,
                host: 0,
                size: 1,
            },
            IdMap {
                container: 0,
                host: 100000,
                size: 65536,
            },
        ];
        assert!(same(&m, &want));
        assert!(!same(&m, &want[..1]));
    }

    #[test]
    fn own_namespace_matches_its_maps() {
        let own = parse(&std::fs::read_to_string("/proc/self/uid_map").unwrap());
        let host = crate::plan::host::RealHost;
        check_joined(&host, Path::new("/proc/self/ns/user"), &own, &own).unwrap();
        let other = [IdMap {
            container: 0,
            host: 1,
            size: 1,
        }];
        let err = check_joined(&host, Path::new("/proc/self/ns/user"), &other, &own).unwrap_err();
        assert!(err.to_string().contains("linux.uidMappings"), "{err}");
    }
}
