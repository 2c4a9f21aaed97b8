//! The CDI spec files of a host: read from the spec directories in rising priority, checked,
//! and indexed by qualified device name.
//!
//! As in the reference library: only `.json` and `.yaml` files directly in a directory are read
//! (both through the YAML parser, as JSON is YAML), a missing directory is skipped, a device of
//! a later directory replaces one of an earlier, and one defined by two files of the same
//! directory is a conflict. chitin also refuses a file or directory that is not root's or that
//! others may write: the hooks a spec names run as root on the host.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::spec::Spec;
use super::{names, validate, version};

/// A spec file as read: its path, the digest of its bytes, and the spec.
pub struct SpecFile {
    pub path: PathBuf,
    pub sha256: String,
    pub spec: Spec,
}

/// Where a device is: the index of its file and of the device in the file's `devices`.
#[derive(Clone, Copy)]
pub struct Found {
    pub file: usize,
    pub device: usize,
}

#[derive(Default)]
pub struct Registry {
    pub files: Vec<SpecFile>,
    devices: BTreeMap<String, (usize, Found)>,
    /// Devices two files of one directory define: the directory's index and the files.
    conflicts: BTreeMap<String, (usize, PathBuf, PathBuf)>,
    /// Files that could not be used, with why.
    refused: Vec<(PathBuf, String)>,
}

impl Registry {
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut r = Registry::default();
        for (priority, dir) in dirs.iter().enumerate() {
            for path in r.spec_paths(dir) {
                match read(&path) {
                    Ok(f) => r.add(priority, f),
                    Err(why) => r.refused.push((path, why)),
                }
            }
        }
        r
    }

    /// The spec files of `dir`, by name; a directory that is not there has none.
    fn spec_paths(&mut self, dir: &Path) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.refused.push((dir.into(), e.to_string()));
                return Vec::new();
            }
        };
        if let Err(why) = std::fs::metadata(dir)
            .map_err(|e| e.to_string())
            .and_then(|m| trusted(&m))
        {
            self.refused.push((dir.into(), why));
            return Vec::new();
        }
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml")
                ) && !p.is_dir()
            })
            .collect();
        paths.sort();
        paths
    }

    /// Adds the devices of `f`, read from the directory of index `priority` (rising).
    fn add(&mut self, priority: usize, f: SpecFile) {
        let file = self.files.len();
        for (device, d) in f.spec.devices.iter().enumerate() {
            let name = format!("{}={}", f.spec.kind, d.name);
            if self.conflicts.get(&name).is_some_and(|c| c.0 == priority) {
                continue;
            }
            match self.devices.get(&name) {
                Some((p, old)) if *p == priority => {
                    let first = self.files[old.file].path.clone();
                    self.conflicts
                        .insert(name.clone(), (priority, first, f.path.clone()));
                    self.devices.remove(&name);
                }
                _ => {
                    self.conflicts.remove(&name);
                    self.devices
                        .insert(name, (priority, Found { file, device }));
                }
            }
        }
        self.files.push(f);
    }

    /// The device `name` (`vendor.com/class=name`), or why there is none.
    pub fn find(&self, name: &str) -> Result<Found, String> {
        if let Some((_, f)) = self.devices.get(name) {
            return Ok(*f);
        }
        if let Some((_, a, b)) = self.conflicts.get(name) {
            return Err(format!(
                "CDI device {name} is defined by both {} and {}",
                a.display(),
                b.display()
            ));
        }
        let mut why = format!("no CDI spec defines the device {name}");
        if !self.refused.is_empty() {
            let list: Vec<String> = self
                .refused
                .iter()
                .map(|(p, e)| format!("{}: {e}", p.display()))
                .collect();
            why += &format!(" (refused: {})", list.join("; "));
        }
        Err(why)
    }
}

/// Root's, and not writable by others (nor by a group other than root's).
fn trusted(m: &std::fs::Metadata) -> Result<(), String> {
    if m.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not root: a CDI spec's hooks run as root",
            m.uid()
        ));
    }
    let mode = m.mode();
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && m.gid() != 0) {
        return Err(format!(
            "mode {:o} lets others write it: a CDI spec's hooks run as root",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// One spec file, checked on the descriptor it is read through.
fn read(path: &Path) -> Result<SpecFile, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    trusted(&file.metadata().map_err(|e| e.to_string())?)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8".to_string())?;
    let spec: Spec = serde_saphyr::from_str(text).map_err(|e| {
        let e = e.to_string();
        let first = e.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_owned()
    })?;
    version::check(&spec)?;
    names::kind_name(&spec.kind).map_err(|e| format!("kind: {e}"))?;
    validate::spec(&spec)?;
    Ok(SpecFile {
        path: path.into(),
        sha256: format!("{:x}", Sha256::digest(&bytes)),
        spec,
    })
}
