//! chitin's own defaults, the first provider: runc's default device nodes, made in every
//! container unless the config has a node at the same path, and the device rules every
//! container gets after its own (so that a deny-all rule still leaves /dev/null and the pty
//! usable), when it has any.

use chitin_devices::{allow_rule, char_node};
use oci_spec::runtime::LinuxDeviceType;

use super::{Edit, Edits, Origin, Precedence, Provider};
use crate::plan::{Config, PlanError};

pub struct Defaults;

const NODES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// (type, major, minor, access), allowed.
const RULES: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 12] = [
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    // tun/tap, which runc 1.1 allows every container too.
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"),
];

impl Provider for Defaults {
    fn edits(&self, config: &Config) -> Result<Vec<Edit>, PlanError> {
        // A rule grants or denies something only with one of r, w and m (plan::devices drops
        // the others): a config with none such leaves the device cgroup alone.
        let has_rules = config
            .spec
            .linux()
            .iter()
            .flat_map(|l| l.resources())
            .flat_map(|r| r.devices())
            .flatten()
            .any(|d| {
                d.access()
                    .as_deref()
                    .is_none_or(|a| a.contains(['r', 'w', 'm']))
            });
        let device_rules = match has_rules {
            true => RULES
                .iter()
                .map(|&(t, ma, mi, a)| allow_rule(t, ma, mi, a))
                .collect(),
            false => Vec::new(),
        };
        Ok(vec![Edit {
            origin: Origin("chitin's default devices".into()),
            precedence: Precedence::Fallback,
            edits: Edits {
                devices: NODES
                    .iter()
                    .map(|&(p, ma, mi)| char_node(p, ma, mi, 0o666))
                    .collect(),
                device_rules,
                ..Edits::default()
            },
        }])
    }
}
