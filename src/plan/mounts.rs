//! Mount option strings to mount(2) flags, propagation changes, mount_setattr attributes and data.

use nix::mount::MsFlags;

/// Attribute changes applied with mount_setattr(2) and AT_RECURSIVE ("rro", "rnosuid", ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    pub set: u64,
    pub clear: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub recursive: RecursiveAttrs,
    pub data: String,
    /// "tmpcopyup" (Podman's): a tmpfs gets a copy of what the directory under it held.
    pub copy_up: bool,
}

pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut flags = MsFlags::empty();
    let mut propagation = Vec::new();
    let mut recursive = RecursiveAttrs::default();
    let mut data: Vec<&str> = Vec::new();
    let mut copy_up = false;
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "nosymfollow" => (
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                MsFlags::empty(),
            ),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                propagation.push(propagation_flag(opt).expect("listed above"));
                continue;
            }
            "idmap" | "ridmap" => {
                return Err(format!("option {opt:?}: idmapped mounts are not supported"));
            }
            "tmpcopyup" => {
                copy_up = true;
                continue;
            }
            o => {
                if let Some((set, attr)) = recursive_attr(o) {
                    if set {
                        recursive.set |= attr
                    } else {
                        recursive.clear |= attr
                    }
                } else {
                    // Anything else (size=, mode=, newinstance, ...) is filesystem data.
                    data.push(o);
                }
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    Ok(MountOptions {
        flags,
        propagation,
        recursive,
        data: data.join(","),
        copy_up,
    })
}

/// The propagation flag for "private", "rshared" and the like, as used by rootfsPropagation too.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    let (rec, base) = match name.strip_prefix('r') {
        Some(b) if matches!(b, "private" | "shared" | "slave" | "unbindable") => {
            (MsFlags::MS_REC, b)
        }
        _ => (MsFlags::empty(), name),
    };
    let f = match base {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(f | rec)
}

/// "rro", "rrw", "rnosuid", ...: (set?, MOUNT_ATTR_*) for mount_setattr(AT_RECURSIVE).
fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    let base = opt.strip_prefix('r')?;
    let r = match base {
        "ro" => (true, libc::MOUNT_ATTR_RDONLY),
        "rw" => (false, libc::MOUNT_ATTR_RDONLY),
        "nosuid" => (true, libc::MOUNT_ATTR_NOSUID),
        "suid" => (false, libc::MOUNT_ATTR_NOSUID),
        "nodev" => (true, libc::MOUNT_ATTR_NODEV),
        "dev" => (false, libc::MOUNT_ATTR_NODEV),
        "noexec" => (true, libc::MOUNT_ATTR_NOEXEC),
        "exec" => (false, libc::MOUNT_ATTR_NOEXEC),
        "nodiratime" => (true, libc::MOUNT_ATTR_NODIRATIME),
        "diratime" => (false, libc::MOUNT_ATTR_NODIRATIME),
        "nosymfollow" => (true, libc::MOUNT_ATTR_NOSYMFOLLOW),
        "symfollow" => (false, libc::MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        let o = opts(&["rbind", "ro", "rw", "rro", "rnosuid"]);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(
            o.recursive.set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID
        );
        assert!(parse(&["idmap".into()]).is_err());
    }
}
