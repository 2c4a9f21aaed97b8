//! Rootless mode: chitin run by an ordinary user, or as root of a user namespace that is not the
//! host's (rootless Podman runs its runtime so). What it changes: the default state directory,
//! the cgroups (used only where delegated), the id maps (written as the user may, or by
//! newuidmap and newgidmap), bind sources (bound by the init, not opened here), and what the
//! planner refuses as needing real root.

use std::path::PathBuf;
use std::sync::OnceLock;

static ROOTLESS: OnceLock<bool> = OnceLock::new();

/// Decides the mode once for this process, from `--rootless` (true, false or auto).
pub fn decide(flag: &str) -> Result<bool, String> {
    let rootless = match flag {
        "true" => true,
        "false" => false,
        // As runc: an ordinary user, or root of a user namespace other than the host's.
        "auto" => !nix::unistd::geteuid().is_root() || in_user_namespace(),
        other => return Err(format!("--rootless: {other:?} is not true, false or auto")),
    };
    Ok(*ROOTLESS.get_or_init(|| rootless))
}

/// Whether this process runs in rootless mode (false until `decide`).
pub fn is() -> bool {
    ROOTLESS.get().copied().unwrap_or(false)
}

/// The caller is an ordinary user (not root of any user namespace).
pub fn unprivileged() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// This process's uid map, read once: auto mode, the default root and the bus's
/// authentication all ask.
fn own_uid_map() -> &'static [crate::plan::IdMap] {
    static MAP: OnceLock<Vec<crate::plan::IdMap>> = OnceLock::new();
    MAP.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        crate::plan::parse_id_map(&text)
    })
}

/// The initial user namespace maps every id to itself: "0 0 4294967295".
fn in_user_namespace() -> bool {
    !matches!(
        own_uid_map(),
        [] | [crate::plan::IdMap {
            container: 0,
            host: 0,
            size: u32::MAX
        }]
    )
}

/// The state directory when `--root` is not given: $XDG_RUNTIME_DIR/chitin for an ordinary
/// user, and for root of a user namespace whose USER is not root (rootless Podman's runtime),
/// as runc decides for its own; else /run/chitin.
pub fn default_root() -> Result<PathBuf, String> {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    let user_is_root = std::env::var_os("USER").is_some_and(|u| u == "root");
    let honour = unprivileged() || (in_user_namespace() && !user_is_root);
    match (xdg, honour) {
        (Some(dir), true) => Ok(PathBuf::from(dir).join("chitin")),
        (None, true) if unprivileged() => Err("rootless: XDG_RUNTIME_DIR is not set, so there \
                                              is no default state directory: set it (a login \
                                              session does), or give --root"
            .into()),
        _ => Ok(PathBuf::from("/run/chitin")),
    }
}

/// The host's uid for this process: its effective uid, mapped out through its user namespace
/// (root of rootless Podman's namespace is the user who made it). What a bus's EXTERNAL
/// authentication and the user's systemd know it as.
pub fn host_uid() -> u32 {
    let euid = nix::unistd::geteuid().as_raw();
    own_uid_map()
        .iter()
        .find(|m| (m.container..m.container.saturating_add(m.size)).contains(&euid))
        .map_or(euid, |m| m.host + (euid - m.container))
}
