//! Idmapped mounts (runtime-spec 1.2): a mount's `uidMappings` and `gidMappings`, or its
//! `idmap`/`ridmap` option alone, which takes the container's maps. The runtime makes such a
//! mount on the host's side, detached, and idmaps it there (container::create::idmapped).

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::PlanError;
use super::host::Host;
use super::idmap::{IdMap, id_maps};
use super::mount_options::{Effect, MountOptions, OPTIONS};

/// The maps a mount is seen through: an on-disk id N that a map's containerID range holds
/// appears as the host id the map gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountIdmap {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
    /// "ridmap": what is mounted below a recursive bind is idmapped too.
    pub recursive: bool,
}

/// Filesystems mounted inside the container's own namespaces (its pid, ipc, cgroup or devpts
/// instance), which the runtime cannot make beforehand; none of them allows an idmap either.
const NAMESPACED: &[&str] = &["proc", "sysfs", "mqueue", "cgroup", "cgroup2", "devpts"];

/// Flags a filesystem made by fsmount(2) takes (as MOUNT_ATTR_*) or its superblock does.
const FSMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::MS_SYNCHRONOUS)
    .union(MsFlags::MS_DIRSYNC)
    .union(MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW));

/// The idmap of mount `field`; `container` holds the container's user namespace maps, where it
/// has one.
pub fn plan(
    field: &str,
    m: &Mount,
    options: &MountOptions,
    fstype: Option<&str>,
    container: Option<&(Vec<IdMap>, Vec<IdMap>)>,
    host: &dyn Host,
) -> Result<Option<MountIdmap>, PlanError> {
    let given = m.uid_mappings().is_some() || m.gid_mappings().is_some();
    // Maps without the option make a plain idmap, as runc takes them.
    let recursive = match (options.idmap, given) {
        (None, false) => return Ok(None),
        (r, _) => r.unwrap_or(false),
    };
    check_filesystem(field, options, fstype, host)?;
    let (uids, gids) = match given {
        true => (
            id_maps(
                &format!("{field}.uidMappings"),
                m.uid_mappings().as_ref(),
                host,
            )?,
            id_maps(
                &format!("{field}.gidMappings"),
                m.gid_mappings().as_ref(),
                host,
            )?,
        ),
        false => container.cloned().unwrap_or_default(),
    };
    if uids.is_empty() || gids.is_empty() {
        let reason = match given {
            true => "an idmapped mount needs both uidMappings and gidMappings",
            false => {
                "idmap without the mount's own uidMappings and gidMappings takes the container's \
                 user namespace maps, and it has none"
            }
        };
        return Err(PlanError::field(field, reason));
    }
    Ok(Some(MountIdmap {
        uids,
        gids,
        recursive,
    }))
}

/// What cannot be idmapped, refused before anything is made; a filesystem the kernel refuses
/// (one without FS_ALLOW_IDMAP) is named when the runtime makes it, still before the container.
fn check_filesystem(
    field: &str,
    options: &MountOptions,
    fstype: Option<&str>,
    host: &dyn Host,
) -> Result<(), PlanError> {
    // A bind's filesystem is its source's, which the kernel judges.
    let Some(fs) = fstype.filter(|_| !options.flags.contains(MsFlags::MS_BIND)) else {
        return Ok(());
    };
    if NAMESPACED.contains(&fs) {
        return Err(PlanError::field(
            &format!("{field}.type"),
            format!("{fs} cannot be idmapped: it belongs to the container's namespaces"),
        ));
    }
    // tmpfs gained FS_ALLOW_IDMAP in Linux 6.3.
    if fs == "tmpfs" && kernel(host).is_some_and(|v| v < (6, 3)) {
        return Err(PlanError::field(
            &format!("{field}.type"),
            "an idmapped tmpfs needs Linux 6.3 or later",
        ));
    }
    if options.copy_up {
        return Err(PlanError::field(
            &format!("{field}.options"),
            "tmpcopyup and idmap together are not supported",
        ));
    }
    let other = options.flags - FSMOUNT_FLAGS;
    let named = OPTIONS.iter().find_map(|(name, e)| match e {
        Effect::Flags(set, _) if other.intersects(*set) => Some(name),
        _ => None,
    });
    if let Some(name) = named {
        return Err(PlanError::field(
            &format!("{field}.options"),
            format!("{name:?} cannot be set on an idmapped {fs} mount"),
        ));
    }
    Ok(())
}

/// The running kernel's major and minor version.
fn kernel(host: &dyn Host) -> Option<(u32, u32)> {
    let release = host
        .read_file(std::path::Path::new("/proc/sys/kernel/osrelease"))
        .ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::host::FakeHost;
    use super::super::tests::{base, fails, on};
    use super::*;

    fn map(container: u32, host: u32, size: u32) -> Value {
        json!([{"containerID": container, "hostID": host, "size": size}])
    }

    /// The default spec in a user namespace (0 to 100000), with `m` added.
    fn with(m: Value) -> Value {
        let mut c = base();
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = map(0, 100000, 65536);
        c["linux"]["gidMappings"] = map(0, 100000, 65536);
        c["mounts"].as_array_mut().unwrap().push(m);
        c
    }

    fn host() -> FakeHost {
        let mut h = FakeHost::bundle();
        h.dirs.insert("/vol".into());
        h
    }

    fn idmap_of(host: &FakeHost, c: Value) -> Option<MountIdmap> {
        on(host, c).unwrap().mounts.last().unwrap().idmap.clone()
    }

    fn ids(container: u32, host: u32, size: u32) -> Vec<IdMap> {
        vec![IdMap {
            container,
            host,
            size,
        }]
    }

    #[test]
    fn maps_come_from_the_mount_or_the_container() {
        let h = host();
        let bind = |opts: Value| json!({"destination": "/v", "source": "/vol", "options": opts});
        // Type "none" with "bind" is a bind too: its flags are not a filesystem's.
        let mut none = bind(json!(["rbind", "ro", "idmap"]));
        none["type"] = "none".into();
        assert!(idmap_of(&h, with(none)).is_some());
        assert_eq!(idmap_of(&h, with(bind(json!(["rbind"])))), None);
        let own = MountIdmap {
            uids: ids(1000, 100000, 1),
            gids: ids(1000, 100000, 1),
            recursive: false,
        };
        // Maps alone make a plain idmap; "ridmap" a recursive one.
        let mut m = bind(json!(["rbind"]));
        m["uidMappings"] = map(1000, 100000, 1);
        m["gidMappings"] = map(1000, 100000, 1);
        assert_eq!(idmap_of(&h, with(m.clone())), Some(own.clone()));
        m["options"] = json!(["rbind", "ridmap"]);
        let recursive = MountIdmap {
            recursive: true,
            ..own
        };
        assert_eq!(idmap_of(&h, with(m)), Some(recursive));
        let container = MountIdmap {
            uids: ids(0, 100000, 65536),
            gids: ids(0, 100000, 65536),
            recursive: false,
        };
        let alone = with(bind(json!(["bind", "idmap"])));
        assert_eq!(idmap_of(&h, alone.clone()), Some(container.clone()));
        // A joined namespace's maps are read from it.
        let mut joined = alone;
        joined["linux"]["namespaces"].as_array_mut().unwrap().pop();
        let ns = json!({"type": "user", "path": "/proc/7/ns/user"});
        joined["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(ns);
        joined["linux"]["uidMappings"] = Value::Null;
        joined["linux"]["gidMappings"] = Value::Null;
        let mut h = host();
        h.files.insert("/proc/7/ns/user".into(), String::new());
        h.userns.insert(
            "/proc/7/ns/user".into(),
            (ids(0, 100000, 65536), ids(0, 100000, 65536)),
        );
        assert_eq!(idmap_of(&h, joined), Some(container));
    }

    #[test]
    fn what_cannot_be_idmapped_is_refused_by_field() {
        let h = host();
        let n = base()["mounts"].as_array().unwrap().len();
        let bind = json!({"destination": "/v", "source": "/vol", "options": ["bind", "idmap"]});
        let mut c = with(bind.clone());
        c["linux"]["namespaces"].as_array_mut().unwrap().pop();
        fails(
            &h,
            c,
            &format!("mounts[{n}]: idmap without the mount's own uidMappings"),
        );
        let mut half = bind.clone();
        half["uidMappings"] = map(0, 1, 1);
        fails(
            &h,
            with(half),
            &format!("mounts[{n}]: an idmapped mount needs both"),
        );
        let mut bad = bind.clone();
        bad["uidMappings"] = map(0, 1, 0);
        bad["gidMappings"] = map(0, 1, 1);
        fails(&h, with(bad), &format!("mounts[{n}].uidMappings[0].size"));
        let proc =
            json!({"destination": "/p", "type": "proc", "source": "proc", "options": ["idmap"]});
        fails(
            &h,
            with(proc),
            &format!("mounts[{n}].type: proc cannot be idmapped"),
        );
        let tmpfs = |opts: Value| json!({"destination": "/t", "type": "tmpfs", "options": opts});
        fails(
            &h,
            with(tmpfs(json!(["idmap", "tmpcopyup"]))),
            &format!("mounts[{n}].options: tmpcopyup and idmap"),
        );
        fails(
            &h,
            with(tmpfs(json!(["idmap", "remount"]))),
            &format!("mounts[{n}].options: \"remount\" cannot be set on an idmapped tmpfs"),
        );
        let mut old = host();
        old.files.insert(
            "/proc/sys/kernel/osrelease".into(),
            "6.1.0-28-amd64\n".into(),
        );
        fails(
            &old,
            with(tmpfs(json!(["idmap"]))),
            &format!("mounts[{n}].type: an idmapped tmpfs needs Linux 6.3"),
        );
        let inside =
            json!({"destination": "/v", "source": "/b/rootfs/etc", "options": ["bind", "idmap"]});
        fails(
            &h,
            with(inside),
            &format!("mounts[{n}].source: an idmapped bind"),
        );
        let mut shared = with(bind);
        let ns = shared["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "mount");
        shared["linux"]["maskedPaths"] = json!([]);
        shared["linux"]["readonlyPaths"] = json!([]);
        fails(
            &h,
            shared,
            &format!("mounts[{n}]: an idmapped mount needs a mount namespace"),
        );
    }
}
