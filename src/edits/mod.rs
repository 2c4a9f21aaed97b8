//! The edit seam: what providers (chitin's defaults, the devices crate's; profiles later) add to a
//! container, as typed edits in the runtime-spec's vocabulary, merged into the config after it is
//! read and before it is planned. Injected items then go through the planner's checks like the
//! user's own, and each keeps its origin, so that an error about one names both the field and
//! where it came from.
//!
//! Merge rules (tested in tests.rs):
//! - Providers apply in a fixed order after config.json: chitin's defaults, then the device
//!   providers, then performance profiles. A security profile comes last of all, as a stage
//!   of its own that only narrows (security.rs).
//! - An item goes at the end of its list. Items with a key (a device node's path, a mount's
//!   destination, an environment variable's name, an rlimit's type, a hugepage size, an
//!   annotation's key, a network device's host name; the cpuset's `cpus` and `mems`, one value
//!   each) may meet one already there:
//!   - a `Fallback` edit yields: the item already there stays (chitin's default devices yield
//!     to the config's nodes at the same path);
//!   - a `Replace` edit takes the place of an item of config.json or of a `Fallback` edit, in
//!     its position (CDI's rule; the order of mounts matters), and is its origin from then on;
//!   - two `Replace` edits of one key are one item when they are equal, and an error naming
//!     both origins when they differ.
//! - Items without a key (cgroup device rules, hooks, additional gids) are appended; a gid given
//!   twice is kept once.

mod defaults;
mod devices;
mod merge;
mod performance;
mod security;
#[cfg(test)]
mod tests;

use std::fmt;
use std::rc::Rc;

use oci_spec::runtime::{
    ExecCPUAffinity, Hook, LinuxDevice, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxIOPriority,
    LinuxMemoryPolicy, LinuxNetDevice, LinuxRdma, Mount, PosixRlimit, Scheduler,
};

use crate::plan::{Config, PlanError};

pub use chitin_devices::{Action, HookPhase};
pub use defaults::Defaults;
pub use devices::Devices;
pub use performance::Performance;

/// Where an injected item came from, as an error shows it: "chitin's default devices", "CDI
/// vendor.com/gpu=0, /etc/cdi/vendor.json".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(pub String);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an edit meets an item of the same key already in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// The item already there stays.
    Fallback,
    /// The edit's item replaces one of config.json or of a fallback edit.
    Replace,
}

/// What one provider adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits {
    /// KEY=VALUE each.
    pub env: Vec<String>,
    pub devices: Vec<LinuxDevice>,
    pub device_rules: Vec<LinuxDeviceCgroup>,
    pub mounts: Vec<Mount>,
    pub hooks: Vec<(HookPhase, Hook)>,
    pub rlimits: Vec<PosixRlimit>,
    pub additional_gids: Vec<u32>,
    pub hugepage_limits: Vec<LinuxHugepageLimit>,
    /// By the device's name on the host.
    pub net_devices: Vec<(String, LinuxNetDevice)>,
    /// rdma cgroup limits, by device.
    pub rdma: Vec<(String, LinuxRdma)>,
    pub annotations: Vec<(String, String)>,
    /// The cpus and memory nodes to pin the container to: linux.resources.cpu's `cpus` and
    /// `mems`, each a key of its own.
    pub cpuset: Option<(String, String)>,
    /// linux.resources.memory.limit, a key of its own.
    pub memory_limit: Option<i64>,
    /// linux.resources.cpu's realtimeRuntime and realtimePeriod, a key each.
    pub realtime: Option<(i64, u64)>,
    /// linux.memoryPolicy, one value.
    pub memory_policy: Option<LinuxMemoryPolicy>,
    /// process.scheduler and process.ioPriority, one value each.
    pub scheduler: Option<Scheduler>,
    pub io_priority: Option<LinuxIOPriority>,
    /// process.execCPUAffinity, one value.
    pub exec_cpu_affinity: Option<ExecCPUAffinity>,
    /// What the runtime is to do that is not config (a measurement); the same action twice is
    /// done once.
    pub actions: Vec<Action>,
}

/// A provider's edits, with their origin and precedence.
#[derive(Debug, Clone)]
pub struct Edit {
    pub origin: Origin,
    pub precedence: Precedence,
    pub edits: Edits,
}

/// Something that adds to containers: it reads the config (its annotations, say) and answers
/// with edits, or none.
pub trait Provider {
    fn edits(&self, config: &Config) -> Result<Vec<Edit>, PlanError>;
}

/// What the providers made of a config besides the edits in it.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub provenance: Provenance,
    pub actions: Vec<Action>,
}

/// The origin of every injected item, by its JSON path in the effective config.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    entries: Vec<(String, Rc<Origin>)>,
}

impl Provenance {
    /// The origin of the item at `field` or inside it (`linux.devices[3].path` is inside
    /// `linux.devices[3]`); None for config.json's own.
    pub fn origin_of(&self, field: &str) -> Option<&Origin> {
        self.entries
            .iter()
            .find(|(path, _)| {
                field.strip_prefix(path.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                })
            })
            .map(|(_, o)| o.as_ref())
    }

    /// A planning error about an injected item, with its origin after the field.
    pub fn name_origin(&self, e: PlanError) -> PlanError {
        match e {
            PlanError::Field { field, reason } => match self.origin_of(&field) {
                Some(o) => PlanError::Field {
                    field: format!("{field} (from {o})"),
                    reason,
                },
                None => PlanError::Field { field, reason },
            },
            e => e,
        }
    }
}

/// The built-in providers, in their order: chitin's defaults, then the devices crate's, which
/// read CDI specs from `cdi_dirs` (None: CDI's own directories), then performance profiles
/// (which read the cpuset of the cgroup `driver` places the container below).
pub fn builtin(
    cdi_dirs: Option<&[std::path::PathBuf]>,
    driver: crate::plan::Driver,
) -> Vec<Box<dyn Provider>> {
    vec![
        Box::new(Defaults),
        Box::new(Devices::real(cdi_dirs)),
        Box::new(Performance::real(driver)),
    ]
}

/// The security profile the config names, over a config no provider edited.
pub fn restrict(config: &mut Config) -> Result<(), PlanError> {
    security::restrict(config, &Provenance::default())
}

/// Applies the providers' edits to `config`, in order (each sees the config as the earlier ones
/// left it), then the security profile it names; returns where each injected item came from,
/// and the actions.
pub fn apply(config: &mut Config, providers: &[Box<dyn Provider>]) -> Result<Applied, PlanError> {
    let mut merge = merge::Merge::default();
    let mut actions = Vec::new();
    for p in providers {
        for mut edit in p.edits(config)? {
            for a in std::mem::take(&mut edit.edits.actions) {
                if !actions.contains(&a) {
                    actions.push(a);
                }
            }
            merge.add(&mut config.spec, edit)?;
        }
    }
    let provenance = merge.finish();
    security::restrict(config, &provenance)?;
    Ok(Applied {
        provenance,
        actions,
    })
}
