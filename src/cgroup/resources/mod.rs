//! `linux.resources` as a list of cgroup file writes. Working out the writes is a pure function
//! of the resources and of where each controller lives (v1 or v2), so the same code checks a plan
//! against the host's layout before anything is created, and applies it afterwards. v1 values
//! are converted for v2 the way runc converts them. One module per controller maps its part.

mod blkio;
mod cpu;
mod limits;
mod memory;

use std::fs;
use std::io;
use std::path::Path;

use crate::plan::resources::Resources;

use super::{CgroupError, Ctl};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn err(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Resource {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

struct Writes<'a> {
    out: Vec<Write>,
    kind_of: &'a dyn Fn(&str) -> Option<Kind>,
}

pub use blkio::blkio_to_io_weight;
pub use cpu::shares_to_weight;

impl Writes<'_> {
    /// Where `controller` lives, or an error naming the field that needs it.
    fn kind(&self, field: &str, controller: &str) -> Result<Kind, CgroupError> {
        (self.kind_of)(controller).ok_or_else(|| {
            err(
                field,
                format!("the {controller} controller is not available on this host"),
            )
        })
    }
    fn push(&mut self, controller: &'static str, file: impl Into<String>, value: impl ToString) {
        self.out.push(Write {
            controller,
            file: file.into(),
            value: value.to_string(),
        });
    }
}

fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// The writes for `res` (devices excepted: they are rules, see `Placement::apply_device_rules`).
/// Its values were checked when it was read (plan::resources::Resources::from_oci): what is refused here
/// is what the host's layout cannot do.
pub fn writes(
    res: &Resources,
    kind_of: &dyn Fn(&str) -> Option<Kind>,
) -> Result<Vec<Write>, CgroupError> {
    let mut w = Writes {
        out: Vec::new(),
        kind_of,
    };
    if let Some(m) = &res.memory {
        memory::writes(m, &mut w)?;
    }
    if let Some(c) = &res.cpu {
        cpu::writes(c, &mut w)?;
    }
    limits::pids(res, &mut w)?;
    if let Some(b) = &res.block_io {
        blkio::writes(b, &mut w)?;
    }
    limits::hugetlb(res, &mut w)?;
    limits::network(res, &mut w)?;
    limits::rdma(res, &mut w)?;
    limits::unified(res, &mut w)?;
    Ok(w.out)
}

/// Block I/O weights live in the BFQ files when BFQ is the scheduler (and CFQ, which had the
/// plain ones on v1, is gone from current kernels).
fn file_name<'a>(dir: &Path, file: &'a str) -> &'a str {
    let bfq = match file {
        "blkio.weight" => "blkio.bfq.weight",
        "blkio.weight_device" => "blkio.bfq.weight_device",
        "io.weight" => "io.bfq.weight",
        _ => return file,
    };
    if !dir.join(file).exists() && dir.join(bfq).exists() {
        bfq
    } else {
        file
    }
}

/// Applies the writes to the container's cgroup. A write the kernel refuses because of the
/// current value of another (memory below memsw, a quota above the period) is retried after the
/// others.
pub fn apply(placement: &super::Placement, writes: &[Write]) -> Result<(), CgroupError> {
    let dir_of = |controller: &str| -> Option<&Path> {
        if controller.is_empty() {
            return placement.unified.as_deref();
        }
        match placement.controller(controller)? {
            Ctl::V1(d) | Ctl::V2(d) => Some(d),
        }
    };
    let mut failed = Vec::new();
    for wr in writes {
        let dir =
            dir_of(wr.controller).ok_or_else(|| err(wr.controller, "controller not available"))?;
        let path = dir.join(file_name(dir, &wr.file));
        if let Err(e) = fs::write(&path, &wr.value) {
            failed.push((wr, path, e));
        }
    }
    for (wr, path, first) in failed {
        let e = if matches!(first.raw_os_error(), Some(libc::EINVAL | libc::EBUSY)) {
            match fs::write(&path, &wr.value) {
                Ok(()) => continue,
                Err(e) => e,
            }
        } else {
            first
        };
        return Err(CgroupError::Io {
            path,
            source: io::Error::new(e.kind(), format!("writing {:?}: {e}", wr.value)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
