//! `profile list` and `profile explain NAME [-b BUNDLE]`: the shipped performance profiles, and
//! what one resolves to on this host, without creating anything.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::ProfileCommand;
use crate::container::ContainerError;
use crate::edits::Performance;
use crate::plan::perf_profile::{self, ANNOTATION, SHIPPED};
use crate::plan::{Config, Driver, PlanError};

pub fn run(
    what: &ProfileCommand,
    (cdi, driver): (Option<&[PathBuf]>, Driver),
) -> Result<String, ContainerError> {
    match what {
        ProfileCommand::List => Ok(SHIPPED
            .iter()
            .map(|(name, _)| {
                let p = perf_profile::shipped(name).expect("shipped");
                format!("{name}\n    {}\n", p.description)
            })
            .collect()),
        ProfileCommand::Explain { name, bundle } => {
            let profile = perf_profile::named(name, &crate::plan::host::RealHost)?;
            let fields = match bundle {
                None => Performance::real(driver).resolve(name, None)?.as_json(),
                Some(b) => effective(b, name, (cdi, driver))?,
            };
            let text = serde_json::to_string_pretty(&fields).expect("JSON");
            Ok(format!("{name}: {}\n{text}\n", profile.description))
        }
    }
}

/// The bundle's config with the profile's annotation, through every provider as create takes
/// it: the fields a profile sets, as the effective config would have them.
fn effective(
    bundle: &Path,
    name: &str,
    (cdi, driver): (Option<&[PathBuf]>, Driver),
) -> Result<Value, PlanError> {
    let mut config = Config::read(bundle)?;
    let mut annotations = config.spec.annotations().clone().unwrap_or_default();
    annotations.insert(ANNOTATION.into(), name.into());
    config.spec.set_annotations(Some(annotations));
    crate::edits::apply(&mut config, &crate::edits::builtin(cdi, driver))?;
    let spec = serde_json::to_value(&config.spec).expect("a spec serializes");
    let linux = &spec["linux"];
    let process = &spec["process"];
    let cpu = &linux["resources"]["cpu"];
    Ok(json!({
        "linux": {
            "resources": {
                "cpu": {
                    "cpus": cpu["cpus"],
                    "mems": cpu["mems"],
                    "realtimeRuntime": cpu["realtimeRuntime"],
                    "realtimePeriod": cpu["realtimePeriod"],
                },
                "memory": {"limit": linux["resources"]["memory"]["limit"]},
                "hugepageLimits": linux["resources"]["hugepageLimits"],
            },
            "memoryPolicy": linux["memoryPolicy"],
        },
        "process": {
            "scheduler": process["scheduler"],
            "ioPriority": process["ioPriority"],
            "execCPUAffinity": process["execCPUAffinity"],
        },
    }))
}
