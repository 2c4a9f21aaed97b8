//! Mount option strings to mount(2) flags, propagation changes, mount_setattr attributes and data,
//! from one table: `features` lists its names, and anything else is filesystem data.

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
    /// "idmap" (Some(false)) or "ridmap" (Some(true), the submounts too): an idmapped mount.
    pub idmap: Option<bool>,
}

/// What one option does.
#[derive(Debug, Clone, Copy)]
pub enum Effect {
    /// Sets the first flags and clears the second (mount(2) flags).
    Flags(MsFlags, MsFlags),
    /// A propagation change after the mount ("rslave", ...).
    Propagation(MsFlags),
    /// mount_setattr(AT_RECURSIVE): sets the first attributes and clears the second.
    Recursive(u64, u64),
    CopyUp,
    /// An idmapped mount; recursive for "ridmap". Never passed to mount(2).
    Idmap(bool),
}

const fn flags(set: MsFlags, clear: MsFlags) -> Effect {
    Effect::Flags(set, clear)
}

const NONE: MsFlags = MsFlags::empty();
const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);
/// The atime modes exclude each other: setting one clears the other two.
const ATIME: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// mount_setattr changes an atime mode only with all of MOUNT_ATTR__ATIME cleared.
const fn ratime(mode: u64) -> Effect {
    Effect::Recursive(mode, libc::MOUNT_ATTR__ATIME)
}

/// Every option chitin takes, in the order `features` lists them.
pub const OPTIONS: &[(&str, Effect)] = &[
    ("async", flags(NONE, MsFlags::MS_SYNCHRONOUS)),
    ("atime", flags(NONE, MsFlags::MS_NOATIME)),
    ("bind", flags(MsFlags::MS_BIND, NONE)),
    ("defaults", flags(NONE, NONE)),
    ("dev", flags(NONE, MsFlags::MS_NODEV)),
    ("diratime", flags(NONE, MsFlags::MS_NODIRATIME)),
    ("dirsync", flags(MsFlags::MS_DIRSYNC, NONE)),
    ("exec", flags(NONE, MsFlags::MS_NOEXEC)),
    ("idmap", Effect::Idmap(false)),
    ("mand", flags(MsFlags::MS_MANDLOCK, NONE)),
    ("noatime", flags(MsFlags::MS_NOATIME, ATIME)),
    ("nodev", flags(MsFlags::MS_NODEV, NONE)),
    ("nodiratime", flags(MsFlags::MS_NODIRATIME, NONE)),
    ("noexec", flags(MsFlags::MS_NOEXEC, NONE)),
    ("nomand", flags(NONE, MsFlags::MS_MANDLOCK)),
    ("norelatime", flags(NONE, MsFlags::MS_RELATIME)),
    ("nostrictatime", flags(NONE, MsFlags::MS_STRICTATIME)),
    ("nosuid", flags(MsFlags::MS_NOSUID, NONE)),
    ("nosymfollow", flags(NOSYMFOLLOW, NONE)),
    ("private", Effect::Propagation(MsFlags::MS_PRIVATE)),
    ("ratime", ratime(libc::MOUNT_ATTR_RELATIME)),
    (
        "rbind",
        flags(MsFlags::MS_BIND.union(MsFlags::MS_REC), NONE),
    ),
    ("rdev", Effect::Recursive(0, libc::MOUNT_ATTR_NODEV)),
    (
        "rdiratime",
        Effect::Recursive(0, libc::MOUNT_ATTR_NODIRATIME),
    ),
    ("relatime", flags(MsFlags::MS_RELATIME, ATIME)),
    ("remount", flags(MsFlags::MS_REMOUNT, NONE)),
    ("rexec", Effect::Recursive(0, libc::MOUNT_ATTR_NOEXEC)),
    ("ridmap", Effect::Idmap(true)),
    ("rnoatime", ratime(libc::MOUNT_ATTR_NOATIME)),
    ("rnodev", Effect::Recursive(libc::MOUNT_ATTR_NODEV, 0)),
    (
        "rnodiratime",
        Effect::Recursive(libc::MOUNT_ATTR_NODIRATIME, 0),
    ),
    ("rnoexec", Effect::Recursive(libc::MOUNT_ATTR_NOEXEC, 0)),
    ("rnosuid", Effect::Recursive(libc::MOUNT_ATTR_NOSUID, 0)),
    (
        "rnosymfollow",
        Effect::Recursive(libc::MOUNT_ATTR_NOSYMFOLLOW, 0),
    ),
    ("ro", flags(MsFlags::MS_RDONLY, NONE)),
    (
        "rprivate",
        Effect::Propagation(MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ),
    ("rrelatime", ratime(libc::MOUNT_ATTR_RELATIME)),
    ("rro", Effect::Recursive(libc::MOUNT_ATTR_RDONLY, 0)),
    ("rrw", Effect::Recursive(0, libc::MOUNT_ATTR_RDONLY)),
    (
        "rshared",
        Effect::Propagation(MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ),
    (
        "rslave",
        Effect::Propagation(MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ),
    ("rstrictatime", ratime(libc::MOUNT_ATTR_STRICTATIME)),
    ("rsuid", Effect::Recursive(0, libc::MOUNT_ATTR_NOSUID)),
    (
        "rsymfollow",
        Effect::Recursive(0, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ),
    (
        "runbindable",
        Effect::Propagation(MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
    ),
    ("rw", flags(NONE, MsFlags::MS_RDONLY)),
    ("shared", Effect::Propagation(MsFlags::MS_SHARED)),
    ("slave", Effect::Propagation(MsFlags::MS_SLAVE)),
    ("strictatime", flags(MsFlags::MS_STRICTATIME, ATIME)),
    ("suid", flags(NONE, MsFlags::MS_NOSUID)),
    ("symfollow", flags(NONE, NOSYMFOLLOW)),
    ("sync", flags(MsFlags::MS_SYNCHRONOUS, NONE)),
    ("tmpcopyup", Effect::CopyUp),
    ("unbindable", Effect::Propagation(MsFlags::MS_UNBINDABLE)),
];

pub fn effect(name: &str) -> Option<Effect> {
    OPTIONS.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
}

pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        recursive: RecursiveAttrs::default(),
        data: String::new(),
        copy_up: false,
        idmap: None,
    };
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        match effect(opt) {
            Some(Effect::Flags(set, clear)) => {
                o.flags.remove(clear);
                o.flags.insert(set);
            }
            Some(Effect::Propagation(p)) => o.propagation.push(p),
            // The last of two contrary options wins, as with mount(8).
            Some(Effect::Recursive(set, clear)) => {
                o.recursive.set = (o.recursive.set & !clear) | set;
                o.recursive.clear = (o.recursive.clear & !set) | clear;
            }
            Some(Effect::CopyUp) => o.copy_up = true,
            Some(Effect::Idmap(recursive)) => o.idmap = Some(recursive),
            // Anything else (size=, mode=, newinstance, ...) is filesystem data.
            None => data.push(opt),
        }
    }
    o.data = data.join(",");
    Ok(o)
}

/// The propagation flag for "private", "rshared" and the like, as used by rootfsPropagation too.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    match effect(name)? {
        Effect::Propagation(p) => Some(p),
        _ => None,
    }
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
        let o = opts(&["rbind", "ridmap", "idmap"]);
        assert_eq!((o.idmap, o.data.as_str()), (Some(false), ""));
    }

    #[test]
    fn atime_modes_exclude_each_other_and_the_last_wins() {
        let o = opts(&["noatime", "strictatime"]);
        assert_eq!(o.flags, MsFlags::MS_STRICTATIME);
        let o = opts(&["rro", "rrw", "rstrictatime", "rnoatime"]);
        assert_eq!(o.recursive.set, libc::MOUNT_ATTR_NOATIME);
        assert_eq!(
            o.recursive.clear,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR__ATIME
        );
    }
}
