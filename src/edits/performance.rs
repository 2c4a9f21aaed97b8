//! Performance profiles as a provider: `org.chitin.profile.performance=NAME` resolved against
//! this host's topology into the runtime-spec fields it stands for (plan::perf_profile), which
//! replace the config's own: the effective config shows what was chosen, and where from.

use super::{Edit, Edits, Origin, Precedence, Provider};
use crate::plan::host::{Host, RealHost};
use crate::plan::perf_profile::{self, ANNOTATION, Resolved};
use crate::plan::topology::Topology;
use crate::plan::{Config, PlanError};

pub struct Performance {
    host: Box<dyn Host>,
}

impl Performance {
    pub fn real() -> Performance {
        Performance {
            host: Box::new(RealHost),
        }
    }

    /// The profile `name` on this provider's host.
    pub fn resolve(&self, name: &str) -> Result<Resolved, PlanError> {
        let profile = perf_profile::shipped(name)?;
        perf_profile::resolve(name, &profile, &Topology::read(self.host.as_ref())?)
    }
}

impl Provider for Performance {
    fn edits(&self, config: &Config) -> Result<Vec<Edit>, PlanError> {
        let Some(name) = config
            .spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
        else {
            return Ok(Vec::new());
        };
        let r = self.resolve(name)?;
        let hugepage_limits = r
            .hugepages
            .iter()
            .map(|(size, limit)| {
                serde_json::from_value(serde_json::json!({"pageSize": size, "limit": limit}))
                    .expect("a hugepage limit")
            })
            .collect();
        Ok(vec![Edit {
            origin: Origin(format!("performance profile {name}")),
            precedence: Precedence::Replace,
            edits: Edits {
                cpuset: Some((r.cpus, r.mems)),
                memory_limit: r.memory_limit,
                memory_policy: r.memory_policy,
                hugepage_limits,
                scheduler: r.scheduler,
                io_priority: r.io_priority,
                ..Edits::default()
            },
        }])
    }
}

#[cfg(test)]
impl Performance {
    pub fn on(host: crate::plan::host::FakeHost) -> Performance {
        Performance {
            host: Box::new(host),
        }
    }
}
