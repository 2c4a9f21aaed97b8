//! Performance profiles as a provider: `org.chitin.profile.performance=NAME` (or a profile
//! file's absolute path) resolved against this host's topology, as far as the parent cgroup's
//! cpuset and the container's devices allow, into the runtime-spec fields it stands for
//! (plan::perf_profile), which replace the config's own: the effective config shows what was
//! chosen, and where from.

use super::{Edit, Edits, Origin, Precedence, Provider};
use crate::plan::host::{Host, RealHost};
use crate::plan::perf_profile::{self, ANNOTATION, Near, Resolved, near};
use crate::plan::topology::{Topology, ids};
use crate::plan::{Config, Driver, PlanError};

pub struct Performance {
    host: Box<dyn Host>,
    driver: Driver,
}

impl Performance {
    pub fn real(driver: Driver) -> Performance {
        Performance {
            host: Box::new(RealHost),
            driver,
        }
    }

    /// The profile `name` (shipped, or a file by absolute path) on this provider's host, for
    /// `config` (whose devices a profile may have to be near).
    pub fn resolve(&self, name: &str, config: Option<&Config>) -> Result<Resolved, PlanError> {
        let host = self.host.as_ref();
        let profile = perf_profile::named(name, host)?;
        let mut t = Topology::read(host)?;
        let linux = config.and_then(|c| c.spec.linux().clone());
        let linux = linux.unwrap_or_else(crate::plan::config::empty);
        // The id only names the container's own cgroup, below the one that matters here.
        let cg = crate::plan::cgroups::plan(&linux, "profile", self.driver, None)?;
        // An empty list is a cpuset not set up yet, which limits nothing.
        let parent = (host.parent_cpuset(&cg)).filter(|(c, m)| !c.is_empty() && !m.is_empty());
        // What narrowed the machine, for an error to say.
        let mut within = Vec::new();
        if let Some((cpus, mems)) = &parent {
            t.keep_cpus(&ids("the parent cgroup's cpus", cpus)?);
            t.keep_nodes(&ids("the parent cgroup's mems", mems)?);
            within.push(format!(
                "the parent cgroup allows CPUs {cpus}, nodes {mems}"
            ));
        }
        let near = profile.cpus.as_ref().map(|c| c.near);
        if let (Some(Near::Devices), Some(c)) = (near, config) {
            let node = near::devices_node(&c.spec, host).map_err(|why| {
                PlanError::field(
                    &format!("annotations[{ANNOTATION:?}]"),
                    format!("{name}: {why}"),
                )
            })?;
            if let Some(n) = node {
                t.keep_nodes(&[n].into());
                within.push(format!("its devices are on node {n}"));
            }
        }
        let budget = profile
            .realtime
            .as_ref()
            .map(|rule| perf_profile::realtime(name, rule, host.rt_budget(&cg).as_ref()));
        let mut r = perf_profile::resolve(name, &profile, &t).map_err(|e| match e {
            PlanError::Field { field, reason } if !within.is_empty() => PlanError::Field {
                field,
                reason: format!("{reason} ({})", within.join("; ")),
            },
            e => e,
        })?;
        r.realtime_runtime = budget.transpose()?.flatten();
        Ok(r)
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
        let r = self.resolve(name, Some(config))?;
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
                realtime: r
                    .realtime_runtime
                    .map(|us| (us, perf_profile::RT_PERIOD_US)),
                exec_cpu_affinity: r.exec_cpus.map(|c| {
                    serde_json::from_value(serde_json::json!({"final": c}))
                        .expect("an execCPUAffinity")
                }),
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
            driver: Driver::Cgroupfs,
        }
    }
}
