//! The devices crate as a provider: what its providers grant (device nodes, their cgroup rules,
//! mounts, env, hooks, limits, actions) from the container's annotations, as edits that replace
//! the config's own items at the same key, or yield to them where the grant says so.

use oci_spec::runtime::LinuxNamespaceType;

use super::{Edit, Edits, Origin, Precedence, Provider};
use crate::plan::{Config, PlanError};

pub struct Devices {
    host: chitin_devices::Host,
}

impl Devices {
    pub fn real(cdi_dirs: Option<&[std::path::PathBuf]>) -> Devices {
        let host = chitin_devices::Host::real();
        Devices {
            host: match cdi_dirs {
                Some(dirs) => host.with_cdi_dirs(dirs),
                None => host,
            },
        }
    }
}

fn refused(e: chitin_devices::DeviceError) -> PlanError {
    PlanError::field(&format!("annotations[{:?}]", e.annotation), e.reason)
}

impl Provider for Devices {
    fn edits(&self, config: &Config) -> Result<Vec<Edit>, PlanError> {
        let annotations = config
            .spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let user = config.spec.process().as_ref().map(|p| p.user());
        let req = chitin_devices::Request {
            annotations: &annotations,
            uid: user.map_or(0, |u| u.uid()),
            gid: user.map_or(0, |u| u.gid()),
            mounts: config.spec.mounts().as_deref().unwrap_or_default(),
            userns: config
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().as_ref())
                .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User)),
        };
        let grants = chitin_devices::resolve(&self.host, &req).map_err(refused)?;
        let edit = |g: chitin_devices::Grant| Edit {
            origin: Origin(g.origin),
            precedence: if g.fallback {
                Precedence::Fallback
            } else {
                Precedence::Replace
            },
            edits: Edits {
                devices: g.devices,
                device_rules: g.device_rules,
                env: g.env,
                mounts: g.mounts,
                hooks: g.hooks,
                additional_gids: g.additional_gids,
                rlimits: g.rlimits,
                hugepage_limits: g.hugepage_limits,
                net_devices: g.net_devices,
                rdma: g.rdma,
                cpuset: g.cpuset,
                actions: g.actions,
                ..Edits::default()
            },
        };
        Ok(grants.into_iter().map(edit).collect())
    }
}
