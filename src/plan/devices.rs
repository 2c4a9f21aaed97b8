//! linux.devices (the nodes made in /dev) and linux.resources.devices (the cgroup's rules).

use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use super::{PlanError, absolute};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DevKind {
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    pub kind: DevKind,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One devices-cgroup rule, rendered as v1 writes it ("c 1:3 rwm").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    #[cfg(test)]
    pub(crate) fn of(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    pub fn v1_line(&self) -> String {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        if self.kind == 'a' && self.major.is_none() && self.minor.is_none() && self.access == "rwm"
        {
            return "a".into();
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// The nodes to make (runc's defaults are among them: edits::Defaults adds them).
pub fn nodes(linux: &Linux) -> Result<Vec<Device>, PlanError> {
    let mut devices = Vec::new();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let field = format!("linux.devices[{i}]");
        let path = absolute(&format!("{field}.path"), d.path())?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => DevKind::Char,
            LinuxDeviceType::B => DevKind::Block,
            LinuxDeviceType::P => DevKind::Fifo,
            LinuxDeviceType::A => {
                return Err(PlanError::field(
                    &format!("{field}.type"),
                    "\"a\" is not a device type",
                ));
            }
        };
        if d.major() < 0 || d.minor() < 0 {
            return Err(PlanError::field(
                &field,
                "major and minor must not be negative",
            ));
        }
        devices.push(Device {
            path,
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    Ok(devices)
}

/// The device rules of linux.resources, in order.
pub fn rules(linux: &Linux) -> Result<Vec<DeviceRule>, PlanError> {
    let mut out = Vec::new();
    let list = linux.resources().iter().flat_map(|r| r.devices()).flatten();
    for (i, d) in list.enumerate() {
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::P) => {
                return Err(PlanError::field(
                    &format!("linux.resources.devices[{i}].type"),
                    "\"p\" has no cgroup rule",
                ));
            }
        };
        // As runc: letters other than r, w and m are ignored, and a rule left with none
        // grants or denies nothing.
        let given = d.access().clone().unwrap_or_else(|| "rwm".into());
        let access: String = "rwm".chars().filter(|c| given.contains(*c)).collect();
        if access.is_empty() {
            continue;
        }
        let whole = kind == 'a' && d.major().is_none() && d.minor().is_none() && access == "rwm";
        out.push(DeviceRule {
            allow: d.allow(),
            kind: if whole { 'a' } else { kind },
            major: d.major(),
            minor: d.minor(),
            access,
        });
    }
    Ok(out)
}
