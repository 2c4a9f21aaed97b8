//! The hooks of each phase, with absolute paths and positive timeouts.

use std::path::PathBuf;
use std::time::Duration;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::{PlanError, absolute};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSet {
    pub prestart: Vec<Hook>,
    pub create_runtime: Vec<Hook>,
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

pub fn plan(spec: &Spec) -> Result<HookSet, PlanError> {
    let Some(h) = spec.hooks() else {
        return Ok(HookSet::default());
    };
    let conv =
        |name: &str, list: &Option<Vec<oci_spec::runtime::Hook>>| -> Result<Vec<Hook>, PlanError> {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(i, hk)| {
                    let field = format!("hooks.{name}[{i}]");
                    let path = absolute(&format!("{field}.path"), hk.path())?;
                    let timeout = match hk.timeout() {
                        Some(t) if t <= 0 => {
                            return Err(PlanError::field(
                                &format!("{field}.timeout"),
                                "must be greater than zero",
                            ));
                        }
                        Some(t) => Some(Duration::from_secs(t as u64)),
                        None => None,
                    };
                    Ok(Hook {
                        path,
                        args: hk.args().clone().unwrap_or_default(),
                        env: hk.env().clone().unwrap_or_default(),
                        timeout,
                    })
                })
                .collect()
        };
    #[allow(deprecated)]
    let prestart = conv("prestart", h.prestart())?;
    Ok(HookSet {
        prestart,
        create_runtime: conv("createRuntime", h.create_runtime())?,
        create_container: conv("createContainer", h.create_container())?,
        start_container: conv("startContainer", h.start_container())?,
        poststart: conv("poststart", h.poststart())?,
        poststop: conv("poststop", h.poststop())?,
    })
}
