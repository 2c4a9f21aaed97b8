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

/// The initial user namespace maps every id to itself: "0 0 4294967295".
fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// The state directory when `--root` is not given: /run/chitin, or for an ordinary user
/// $XDG_RUNTIME_DIR/chitin, as runc does with its own name.
pub fn default_root() -> Result<PathBuf, String> {
    if !unprivileged() {
        return Ok(PathBuf::from("/run/chitin"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("chitin")),
        None => Err(
            "rootless: XDG_RUNTIME_DIR is not set, so there is no default state \
                     directory: set it (a login session does), or give --root"
                .into(),
        ),
    }
}
