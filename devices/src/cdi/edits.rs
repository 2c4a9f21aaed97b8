//! A spec's containerEdits as a grant in the runtime-spec's vocabulary. Device nodes whose type
//! or major the spec leaves out are read from the host node (lstat: a symlink is not a device
//! node), as the reference library does; each block or character node comes with its cgroup
//! rule.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::{Hook, LinuxDevice, LinuxDeviceType, LinuxNetDevice, Mount};

use super::spec::{self, ContainerEdits};
use crate::{Grant, HookPhase, Host, Request};

/// Where a containerEdits object is: its file and JSON path.
pub struct At<'a> {
    pub file: &'a Path,
    pub field: String,
}

impl At<'_> {
    fn err(&self, rest: &str, why: impl std::fmt::Display) -> String {
        format!(
            "CDI spec {} {}{rest}: {why}",
            self.file.display(),
            self.field
        )
    }
}

pub fn grant(
    host: &Host,
    req: &Request<'_>,
    e: &ContainerEdits,
    at: At<'_>,
) -> Result<Grant, String> {
    if e.intel_rdt.is_some() {
        return Err(at.err(".intelRdt", "Intel RDT is not supported"));
    }
    let mut g = Grant {
        env: e.env.clone(),
        additional_gids: e
            .additional_gids
            .iter()
            .copied()
            .filter(|g| *g != 0)
            .collect(),
        ..Grant::default()
    };
    for (i, n) in e.device_nodes.iter().enumerate() {
        let (dev, typ) =
            node(host, req, n).map_err(|why| at.err(&format!(".deviceNodes[{i}]"), why))?;
        if matches!(typ, LinuxDeviceType::B | LinuxDeviceType::C) {
            let access = if n.permissions.is_empty() {
                "rwm"
            } else {
                &n.permissions
            };
            g.device_rules.push(crate::allow_rule(
                typ,
                Some(dev.major()),
                Some(dev.minor()),
                access,
            ));
        }
        g.devices.push(dev);
    }
    for m in &e.mounts {
        g.mounts.push(mount(m));
    }
    for n in &e.net_devices {
        let mut dev = LinuxNetDevice::default();
        dev.set_name(Some(n.name.clone()));
        g.net_devices.push((n.host_interface_name.clone(), dev));
    }
    for (i, h) in e.hooks.iter().enumerate() {
        super::trust::check_program(&host.path(Path::new(&h.path)))
            .map_err(|why| at.err(&format!(".hooks[{i}].path"), format!("{}: {why}", h.path)))?;
        g.hooks.push((phase(&h.hook_name), hook(h)));
    }
    Ok(g)
}

fn typ_of(s: &str) -> Option<LinuxDeviceType> {
    Some(match s {
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        "u" => LinuxDeviceType::U,
        "p" => LinuxDeviceType::P,
        _ => return None,
    })
}

/// A device node, what the spec leaves out read from the host's.
fn node(
    host: &Host,
    req: &Request<'_>,
    n: &spec::DeviceNode,
) -> Result<(LinuxDevice, LinuxDeviceType), String> {
    let host_path = if n.host_path.is_empty() {
        &n.path
    } else {
        &n.host_path
    };
    let mut typ = typ_of(&n.typ);
    let (mut major, mut minor) = (n.major, n.minor);
    if typ.is_none() || (major == 0 && typ != Some(LinuxDeviceType::P)) {
        let m = std::fs::symlink_metadata(host.path(Path::new(host_path)))
            .map_err(|e| format!("the host's {host_path}: {e}"))?;
        let ft = m.file_type();
        let found = if ft.is_block_device() {
            LinuxDeviceType::B
        } else if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_fifo() {
            LinuxDeviceType::P
        } else {
            return Err(format!("the host's {host_path} is not a device node"));
        };
        // An unbuffered character device is a character device on the host.
        let fits = match typ {
            None => true,
            Some(LinuxDeviceType::U) => found == LinuxDeviceType::C,
            Some(t) => t == found,
        };
        if !fits {
            return Err(format!(
                "type {:?}, but the host's {host_path} is {:?}",
                n.typ,
                found.as_str()
            ));
        }
        typ.get_or_insert(found);
        if major == 0 {
            (major, minor) = (libc::major(m.rdev()) as i64, libc::minor(m.rdev()) as i64);
        }
    }
    let typ = typ.expect("the spec's type or the host's");
    let mut d = LinuxDevice::default();
    d.set_path(n.path.clone().into());
    d.set_typ(typ);
    d.set_major(major);
    d.set_minor(minor);
    d.set_file_mode(n.file_mode);
    // The reference library gives the node to the container's user unless the spec names one.
    d.set_uid(n.uid.or((req.uid > 0).then_some(req.uid)));
    d.set_gid(n.gid.or((req.gid > 0).then_some(req.gid)));
    Ok((d, typ))
}

fn mount(m: &spec::Mount) -> Mount {
    let mut o = Mount::default();
    o.set_destination(m.container_path.clone().into());
    o.set_source(Some(m.host_path.clone().into()));
    o.set_typ((!m.typ.is_empty()).then(|| m.typ.clone()));
    o.set_options((!m.options.is_empty()).then(|| m.options.clone()));
    o
}

fn phase(name: &str) -> HookPhase {
    match name {
        "prestart" => HookPhase::Prestart,
        "createRuntime" => HookPhase::CreateRuntime,
        "createContainer" => HookPhase::CreateContainer,
        "startContainer" => HookPhase::StartContainer,
        "poststart" => HookPhase::Poststart,
        _ => HookPhase::Poststop,
    }
}

fn hook(h: &spec::Hook) -> Hook {
    let mut o = Hook::default();
    o.set_path(h.path.clone().into());
    o.set_args((!h.args.is_empty()).then(|| h.args.clone()));
    o.set_env((!h.env.is_empty()).then(|| h.env.clone()));
    o.set_timeout(h.timeout);
    o
}
