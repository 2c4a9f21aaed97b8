//! linux.cgroupsPath: where the container's cgroup goes (its resources are checked against the
//! host's layout by cgroup::Layout). With the cgroupfs driver it is a path; with the systemd
//! driver it is runc's `slice:prefix:name`, which names a transient unit systemd makes.

use oci_spec::runtime::Linux;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_CGROUP_PARENT, PlanError};

/// Who makes the container's cgroup: chitin (cgroupfs), or systemd as a transient unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    #[default]
    Cgroupfs,
    Systemd,
}

/// The container's transient unit and the slice it goes in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub name: String,
    pub slice: String,
    /// Names the container: a unit of the same name made for another container (after a
    /// crashed create, say) is not this one's to stop.
    pub description: String,
    /// Made by the user's own systemd (rootless mode), on its session bus.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    /// In every hierarchy: absolute from its root, or relative to chitin's own cgroup there.
    pub path: String,
    /// The path is chitin's default (so its parent is chitin's too).
    pub default_parent: bool,
    /// systemd's unit, with the systemd driver.
    pub unit: Option<Unit>,
}

const FIELD: &str = "linux.cgroupsPath";

/// `user`: in rootless mode, the host uid whose systemd user manager the systemd driver uses.
pub fn plan(
    linux: &Linux,
    id: &str,
    driver: Driver,
    user: Option<u32>,
) -> Result<CgroupPlan, PlanError> {
    let given = match linux.cgroups_path() {
        Some(p) if !p.as_os_str().is_empty() => Some(
            p.to_str()
                .ok_or_else(|| PlanError::field(FIELD, "not UTF-8"))?,
        ),
        _ => None,
    };
    match driver {
        Driver::Cgroupfs => cgroupfs(given, id),
        Driver::Systemd => systemd(given, id, user),
    }
}

fn cgroupfs(given: Option<&str>, id: &str) -> Result<CgroupPlan, PlanError> {
    let default = format!("{DEFAULT_CGROUP_PARENT}/{id}");
    let path = match given {
        Some(s) => {
            if s.split('/').any(|c| c == "..") {
                return Err(PlanError::field(FIELD, "must not contain \"..\""));
            }
            if s.contains(':') {
                return Err(PlanError::field(
                    FIELD,
                    format!("{s:?} is systemd's slice:prefix:name form: it needs --systemd-cgroup"),
                ));
            }
            s.to_owned()
        }
        None => default.clone(),
    };
    Ok(CgroupPlan {
        default_parent: path == default,
        path,
        unit: None,
    })
}

/// runc's rules: `slice:prefix:name` makes the scope `prefix-name.scope` in `slice` (by default
/// system.slice, user.slice for a user's manager; "-.slice" or "-" is the root); no path makes
/// `chitin-ID.scope`. A user's manager has its slices below its own cgroup.
fn systemd(given: Option<&str>, id: &str, user: Option<u32>) -> Result<CgroupPlan, PlanError> {
    let default = format!(":chitin:{id}");
    let s = given.unwrap_or(&default);
    let parts: Vec<&str> = s.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(PlanError::field(
            FIELD,
            format!("{s:?}: the systemd driver takes slice:prefix:name"),
        ));
    };
    let slice = match slice {
        "" if user.is_some() => "user.slice",
        "" => "system.slice",
        "-" => "-.slice",
        s => s,
    };
    if name.is_empty() {
        return Err(PlanError::field(FIELD, format!("{s:?}: no name")));
    }
    if name.ends_with(".slice") {
        // runc makes a slice unit then; nothing in Docker, Podman or containerd asks for one.
        return Err(PlanError::field(
            FIELD,
            format!("{s:?}: a .slice as the container's own unit is not supported; name a scope"),
        ));
    }
    // As runc, even with no prefix ("-name.scope").
    let unit = format!("{prefix}-{name}.scope");
    if !valid_unit_name(&unit) {
        return Err(PlanError::field(
            FIELD,
            format!("{s:?}: {unit:?} is not a valid systemd unit name"),
        ));
    }
    let dir =
        expand_slice(slice).map_err(|why| PlanError::field(FIELD, format!("{s:?}: {why}")))?;
    // systemd's layout: user@UID.service is where the user's manager, and all it makes, lives.
    let manager = user.map_or(String::new(), |u| {
        format!("/user.slice/user-{u}.slice/user@{u}.service")
    });
    Ok(CgroupPlan {
        path: format!("{manager}{dir}/{unit}"),
        default_parent: false,
        unit: Some(Unit {
            name: unit,
            slice: slice.to_owned(),
            description: format!("chitin container {id}"),
            user: user.is_some(),
        }),
    })
}

/// The cgroup directory of a slice: every '-' opens a level ("a-b.slice" is
/// /a.slice/a-b.slice), as systemd.slice(5) says; the root slice is "".
pub fn expand_slice(slice: &str) -> Result<String, String> {
    if slice == "-.slice" {
        return Ok(String::new());
    }
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a slice (no .slice suffix)"));
    };
    if stem.is_empty()
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
        || !valid_unit_name(slice)
    {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut path = String::new();
    for (i, _) in stem.match_indices('-').chain([(stem.len(), "")]) {
        path.push('/');
        path.push_str(&stem[..i]);
        path.push_str(".slice");
    }
    Ok(path)
}

/// systemd's unit name alphabet (systemd.unit(5)), and its length limit.
fn valid_unit_name(name: &str) -> bool {
    name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxBuilder;

    fn linux(path: &str) -> Linux {
        LinuxBuilder::default().cgroups_path(path).build().unwrap()
    }

    #[test]
    fn slices_expand_by_their_dashes() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "");
        for bad in ["a--b.slice", "-a.slice", "a-.slice", "a/b.slice", "system"] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn systemd_paths_as_runc_reads_them() {
        let p = plan(
            &linux("system.slice:docker:abc"),
            "c1",
            Driver::Systemd,
            None,
        )
        .unwrap();
        assert_eq!(p.path, "/system.slice/docker-abc.scope");
        assert_eq!(p.unit.unwrap().slice, "system.slice");
        let p = plan(&linux(""), "c1", Driver::Systemd, None).unwrap();
        assert_eq!(p.path, "/system.slice/chitin-c1.scope");
        let p = plan(
            &linux("machine-libpod.slice::c2"),
            "c1",
            Driver::Systemd,
            None,
        )
        .unwrap();
        assert_eq!(p.path, "/machine.slice/machine-libpod.slice/-c2.scope");
        let p = plan(&linux("-:x:c3"), "c1", Driver::Systemd, None).unwrap();
        assert_eq!(p.path, "/x-c3.scope");
        assert_eq!(p.unit.unwrap().slice, "-.slice");
        // A user's manager (rootless mode): its slices below its own cgroup, user.slice first.
        let p = plan(&linux(""), "c1", Driver::Systemd, Some(1500)).unwrap();
        let manager = "/user.slice/user-1500.slice/user@1500.service";
        assert_eq!(p.path, format!("{manager}/user.slice/chitin-c1.scope"));
        assert!(p.unit.unwrap().user);
    }

    #[test]
    fn bad_systemd_paths_name_the_field() {
        for bad in [
            "/a/b",
            "a:b",
            "a:b:c:d",
            "system.slice:x:",
            "bad/slice:x:y",
            "system.slice:x:y.slice",
            "system.slice:x:a b",
        ] {
            let e = plan(&linux(bad), "c1", Driver::Systemd, None).unwrap_err();
            assert!(e.to_string().contains("linux.cgroupsPath"), "{bad}: {e}");
        }
        let e = plan(&linux("system.slice:x:y"), "c1", Driver::Cgroupfs, None).unwrap_err();
        assert!(e.to_string().contains("--systemd-cgroup"), "{e}");
    }
}
