//! What rootless mode refuses while planning, each naming its field: what needs the host's root
//! (an idmapped mount, a filesystem only root may mount, a sysctl of a namespace the container
//! does not own), and for an ordinary user, a container without a user namespace or with id
//! maps the user may not write. Also how the maps are written.

use std::path::Path;

use super::host::Host;
use super::{IdMap, NsKind, Plan, PlanError};

/// How the runtime writes a new user namespace's id maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapWith {
    /// Itself, as root.
    #[default]
    Root,
    /// Itself, as an ordinary user mapping only its own uid and gid: the kernel takes that
    /// only once setgroups(2) is denied in the namespace.
    OwnIds,
    /// newuidmap and newgidmap, which check the ranges against /etc/subuid and /etc/subgid.
    Helpers,
}

/// Filesystems a user namespace's root may mount (FS_USERNS_MOUNT), and binds.
const USERNS_MOUNTABLE: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay", "ramfs", "fuse",
    "fuse3", "binderfs",
];

/// The rules of rootless mode; how the maps will be written.
pub fn check(p: &Plan, host: &dyn Host) -> Result<MapWith, PlanError> {
    if host.is_root() {
        return Ok(MapWith::Root);
    }
    for (i, m) in p.mounts.iter().enumerate() {
        if m.idmap.is_some() {
            return Err(PlanError::field(
                &format!("mounts[{i}]"),
                "an idmapped mount needs chitin run as root (CAP_SYS_ADMIN over the filesystem)",
            ));
        }
        match m.fstype.as_deref() {
            Some(fs) if !m.is_bind() && !USERNS_MOUNTABLE.contains(&fs) => {
                return Err(PlanError::field(
                    &format!("mounts[{i}].type"),
                    format!("{fs} can be mounted only by root; rootless mode cannot"),
                ));
            }
            _ => {}
        }
    }
    for (key, _) in &p.sysctls {
        if let Some(kind) = joined_owner(key, p) {
            return Err(PlanError::field(
                &format!("linux.sysctl[{key:?}]"),
                format!(
                    "the {} namespace is joined, and rootless mode may set sysctls only in \
                     namespaces of the container's own",
                    kind.spec_name()
                ),
            ));
        }
    }
    let (uid, gid) = host.caller();
    if uid == 0 {
        // Root of a user namespace (rootless Podman): its maps are written as root's.
        return Ok(MapWith::Root);
    }
    let ns = &p.namespaces;
    if !ns.is_new(NsKind::User) {
        if ns.joined(NsKind::User).is_some() {
            return Ok(MapWith::Root);
        }
        return Err(PlanError::field(
            "linux.namespaces",
            "rootless mode needs a user namespace of the container's own (chitin spec \
             --rootless writes one)",
        ));
    }
    let own = |maps: &[IdMap], id: u32| matches!(maps, [m] if m.host == id && m.size == 1);
    if own(&p.uid_map, uid) && own(&p.gid_map, gid) {
        if !p.process.additional_gids.is_empty() {
            return Err(PlanError::field(
                "process.user.additionalGids",
                "with only the caller's own gid mapped the kernel denies setgroups(2); map \
                 ranges from /etc/subgid to set supplementary groups",
            ));
        }
        return Ok(MapWith::OwnIds);
    }
    subordinate(
        host,
        "linux.uidMappings",
        &p.uid_map,
        uid,
        "/etc/subuid",
        "newuidmap",
    )?;
    subordinate(
        host,
        "linux.gidMappings",
        &p.gid_map,
        gid,
        "/etc/subgid",
        "newgidmap",
    )?;
    Ok(MapWith::Helpers)
}

/// The namespace a sysctl belongs to, when the container joins it rather than making it.
fn joined_owner(key: &str, p: &Plan) -> Option<NsKind> {
    let kind = if key.starts_with("net.") {
        NsKind::Net
    } else if key.starts_with("kernel.") || key.starts_with("fs.mqueue.") {
        // check::sysctl admits only the ipc and uts ones of these.
        match key {
            "kernel.hostname" | "kernel.domainname" => NsKind::Uts,
            _ => NsKind::Ipc,
        }
    } else {
        NsKind::User
    };
    (!p.namespaces.is_new(kind)).then_some(kind)
}

/// Maps with more than the caller's own id: each host range must be the caller's own id or in
/// its subordinate ranges, which the setuid helper checks too (and then writes the map).
fn subordinate(
    host: &dyn Host,
    field: &str,
    maps: &[IdMap],
    id: u32,
    file: &str,
    helper: &str,
) -> Result<(), PlanError> {
    // As Command finds it: on PATH, or where Debian's uidmap puts it.
    let path = std::env::var("PATH").unwrap_or_default();
    let found =
        (path.split(':').chain(["/usr/bin"])).any(|d| host.exists(&Path::new(d).join(helper)));
    if !found {
        return Err(PlanError::field(
            field,
            format!(
                "mapping more than the caller's own id needs {helper} (Debian's uidmap package)"
            ),
        ));
    }
    let name = user_name(host, id);
    let text = host.read_file(Path::new(file)).unwrap_or_default();
    let ranges: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let owner = f.next()?;
            let (start, count) = (f.next()?.parse().ok()?, f.next()?.parse::<u64>().ok()?);
            (owner == id.to_string() || Some(owner) == name.as_deref())
                .then_some((start, start + count))
        })
        .collect();
    for (i, m) in maps.iter().enumerate() {
        let (lo, hi) = (m.host as u64, m.host as u64 + m.size as u64);
        let own = m.host == id && m.size == 1;
        if own || ranges.iter().any(|(s, e)| *s <= lo && hi <= *e) {
            continue;
        }
        let who = name.clone().unwrap_or_else(|| id.to_string());
        return Err(PlanError::field(
            &format!("{field}[{i}]"),
            format!(
                "host ids {lo}-{} are not {who}'s: {file} gives {who} {}",
                hi - 1,
                match ranges.is_empty() {
                    true => "no range".to_owned(),
                    false => ranges
                        .iter()
                        .map(|(s, e)| format!("{s}-{}", e - 1))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            ),
        ));
    }
    Ok(())
}

/// The host's name for `uid`, which /etc/subuid lines may use in place of the number.
fn user_name(host: &dyn Host, uid: u32) -> Option<String> {
    let passwd = host.read_file(Path::new("/etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::host::FakeHost;
    use super::super::tests::{base, fails, on};
    use super::*;

    /// An ordinary user (uid 1500) with subordinate ids 200000-265535 and the helpers.
    fn user() -> FakeHost {
        let mut h = FakeHost::bundle();
        // The rootless spec binds the host's /sys.
        h.dirs.insert("/sys".into());
        h.rootless = true;
        h.caller = (1500, 1500);
        h.files
            .insert("/etc/passwd".into(), "u:x:1500:1500::/:/bin/sh\n".into());
        for f in ["/etc/subuid", "/etc/subgid"] {
            h.files.insert(f.into(), "u:200000:65536\n".into());
        }
        for helper in ["newuidmap", "newgidmap"] {
            h.files
                .insert(Path::new("/usr/bin").join(helper), String::new());
        }
        h
    }

    fn rootless(maps: Value) -> Value {
        let mut c: Value =
            serde_json::from_value(crate::commands::spec::default_spec(true)).unwrap();
        c["process"]["terminal"] = false.into();
        c["linux"]["uidMappings"] = maps.clone();
        c["linux"]["gidMappings"] = maps;
        c
    }

    fn own() -> Value {
        json!([{"containerID": 0, "hostID": 1500, "size": 1}])
    }

    fn ranges(host: u32, size: u32) -> Value {
        json!([{"containerID": 0, "hostID": 1500, "size": 1},
               {"containerID": 1, "hostID": host, "size": size}])
    }

    #[test]
    fn maps_are_written_as_the_caller_may() {
        assert_eq!(
            on(&FakeHost::bundle(), base()).unwrap().map_with,
            MapWith::Root
        );
        let h = user();
        assert_eq!(on(&h, rootless(own())).unwrap().map_with, MapWith::OwnIds);
        assert_eq!(
            on(&h, rootless(ranges(200000, 65536))).unwrap().map_with,
            MapWith::Helpers
        );
        // Root of a user namespace (rootless Podman) writes maps as root does.
        let mut in_userns = user();
        in_userns.caller = (0, 0);
        let p = on(&in_userns, rootless(ranges(200000, 65536))).unwrap();
        assert_eq!(p.map_with, MapWith::Root);
    }

    #[test]
    fn what_needs_real_root_is_refused_by_field() {
        let h = user();
        fails(
            &h,
            rootless(ranges(300000, 10)),
            "linux.uidMappings[1]: host ids 300000-300009 are not u's: /etc/subuid gives u \
             200000-265535",
        );
        let mut none = user();
        none.files.insert("/etc/subgid".into(), String::new());
        fails(
            &none,
            rootless(ranges(200000, 10)),
            "linux.gidMappings[1]: host ids 200000-200009 are not u's: /etc/subgid gives u no range",
        );
        let mut bare = user();
        bare.files.remove(Path::new("/usr/bin/newuidmap"));
        fails(
            &bare,
            rootless(ranges(200000, 10)),
            "linux.uidMappings: mapping more than",
        );
        let mut groups = rootless(own());
        groups["process"]["user"]["additionalGids"] = json!([5]);
        fails(
            &h,
            groups,
            "process.user.additionalGids: with only the caller's own gid",
        );
        let mut shared = base();
        shared["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "user");
        fails(
            &h,
            shared,
            "linux.namespaces: rootless mode needs a user namespace",
        );
        let n = rootless(own())["mounts"].as_array().unwrap().len();
        let mut ext4 = rootless(own());
        let m = json!({"destination": "/d", "type": "ext4", "source": "/dev/sda1"});
        ext4["mounts"].as_array_mut().unwrap().push(m);
        fails(
            &h,
            ext4,
            &format!("mounts[{n}].type: ext4 can be mounted only by root"),
        );
        // Root of a user namespace joining a network namespace it does not own.
        let mut sysctl = base();
        sysctl["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        let ns = sysctl["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": "/proc/7/ns/net"}));
        let mut h = user();
        h.caller = (0, 0);
        h.files.insert("/proc/7/ns/net".into(), String::new());
        fails(
            &h,
            sysctl,
            "linux.sysctl[\"net.ipv4.ip_forward\"]: the network namespace is joined",
        );
    }
}
