//! The CDI spec files of a host: read from the spec directories in rising priority, checked,
//! and indexed by qualified device name.
//!
//! As in the reference library: only `.json` and `.yaml` files directly in a directory are read
//! (both through the YAML parser, as JSON is YAML), a missing directory is skipped, a device of
//! a later directory replaces one of an earlier, and one defined by two files of the same
//! directory is a conflict. chitin also refuses a file or directory that is not root's alone
//! (trust.rs): the hooks a spec names run as root on the host.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};

use sha2::{Digest, Sha256};

use super::spec::Spec;
use super::{names, trust, validate, version};

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
            let listed = trust::open_dir(dir).and_then(|fd| match fd {
                Some(fd) => spec_names(&fd).map(|names| Some((fd, names))),
                None => Ok(None),
            });
            let (fd, names) = match listed {
                Ok(Some(l)) => l,
                // A directory that is not there has no specs.
                Ok(None) => continue,
                Err(why) => {
                    r.refused.push((dir.clone(), why));
                    continue;
                }
            };
            for name in names {
                let path = dir.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                match read(&fd, &name, &path) {
                    Ok(f) => r.add(priority, f),
                    Err(why) => r.refused.push((path, why)),
                }
            }
        }
        r
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

/// The names of `dir`'s spec files (`.json`, `.yaml`), sorted; directories are not read into.
fn spec_names(dir: &OwnedFd) -> Result<Vec<CString>, String> {
    let fd = dir.try_clone().map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for e in Dir::from_fd(fd).map_err(|e| e.to_string())?.into_iter() {
        let e = e.map_err(|e| format!("reading the directory: {e}"))?;
        let name = e.file_name();
        let spec = [b".json".as_slice(), b".yaml"]
            .iter()
            .any(|x| name.to_bytes().ends_with(x));
        if spec && e.file_type() != Some(Type::Directory) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The spec file `name` of `dir` (at `path`), checked on the descriptor it is read through.
fn read(dir: &OwnedFd, name: &CStr, path: &Path) -> Result<SpecFile, String> {
    let mut file = trust::open_file(dir.as_fd(), name)?;
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
