//! Freezing a container's cgroup for pause and resume: the v1 freezer or v2 cgroup.freeze.

use std::fs;
use std::time::{Duration, Instant};

use super::{CgroupError, Ctl, Placement};

fn freeze_target(p: &Placement) -> Result<Ctl<'_>, CgroupError> {
    if let Some(d) = p.v1_dir("freezer") {
        return Ok(Ctl::V1(d));
    }
    match p.unified.as_deref() {
        Some(u) if u.join("cgroup.freeze").exists() => Ok(Ctl::V2(u)),
        _ => Err(CgroupError::NoFreezer),
    }
}

pub fn is_frozen(p: &Placement) -> bool {
    match freeze_target(p) {
        Ok(Ctl::V1(d)) => {
            fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        }
        Ok(Ctl::V2(d)) => {
            fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        }
        Err(_) => false,
    }
}

/// Freezes or thaws, and waits until the kernel says it is done.
pub fn set(p: &Placement, frozen: bool) -> Result<(), CgroupError> {
    let io = |path: std::path::PathBuf| move |source| CgroupError::Io { path, source };
    let deadline = Instant::now() + Duration::from_secs(10);
    match freeze_target(p)? {
        Ctl::V1(d) => {
            let f = d.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            loop {
                // v1 may stop at FREEZING while a task is in an uninterruptible sleep: ask again.
                fs::write(&f, want).map_err(io(f.clone()))?;
                if fs::read_to_string(&f).map_err(io(f.clone()))?.trim() == want {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CgroupError::Resource {
                        field: "freezer".into(),
                        reason: format!("{} did not become {want}", f.display()),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ctl::V2(d) => {
            let f = d.join("cgroup.freeze");
            fs::write(&f, if frozen { "1" } else { "0" }).map_err(io(f.clone()))?;
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            let events = d.join("cgroup.events");
            while !fs::read_to_string(&events)
                .map_err(io(events.clone()))?
                .lines()
                .any(|l| l == want)
            {
                if Instant::now() > deadline {
                    return Err(CgroupError::Resource {
                        field: "freezer".into(),
                        reason: format!("{} did not report {want}", events.display()),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_freezer_names_no_config_field() {
        let p = super::Placement {
            v1: Vec::new(),
            unified: Some("/nonexistent".into()),
            ..Default::default()
        };
        let e = super::set(&p, true).unwrap_err().to_string();
        assert!(e.starts_with("no freezer: "), "{e}");
        assert!(!e.contains("linux.resources"), "{e}");
    }
}
