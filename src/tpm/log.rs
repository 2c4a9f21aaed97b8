//! The event log of chitin's measurements, one file under --root for every container: records
//! in the format systemd writes its own measurements in (close to TCG's CEL-JSON), as an RFC 7464
//! JSON text sequence (each record after a 0x1E, ended by a newline), so that the same tools read
//! both. Writers hold an exclusive flock, readers a shared one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::TpmError;

/// Under --root; '@' is not in a container id's alphabet, so no container can have this name.
pub const LOG_FILE: &str = "@tpm-measure.log";

const RS: u8 = 0x1e;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    #[serde(rename = "hashAlg")]
    pub hash_alg: String,
    /// Lower-case hex.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pcr: u32,
    pub digests: Vec<Digest>,
    pub content_type: String,
    /// What was measured; its sha256 (of this JSON, keys sorted) is the digest extended.
    pub content: serde_json::Value,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Record {
    /// The record of `content` for `pcr`: the digest extended is that of the content's JSON.
    pub fn new(pcr: u32, content: serde_json::Value) -> Record {
        let digest = sha256(&serde_json::to_vec(&content).expect("JSON serializes"));
        Record {
            pcr,
            digests: vec![Digest {
                hash_alg: "sha256".into(),
                digest: hex(&digest),
            }],
            content_type: "chitin".into(),
            content,
        }
    }

    /// The sha256 digest extended, checked to be the content's.
    pub fn sha256(&self) -> Result<[u8; 32], String> {
        let d = self
            .digests
            .iter()
            .find(|d| d.hash_alg == "sha256")
            .ok_or("no sha256 digest")?;
        let want = sha256(&serde_json::to_vec(&self.content).expect("JSON serializes"));
        if d.digest != hex(&want) {
            return Err(format!("digest {} is not its content's", d.digest));
        }
        Ok(want)
    }
}

/// The log, locked: exclusively to append, shared to read.
pub struct Log {
    path: PathBuf,
    file: Flock<File>,
}

impl Log {
    /// The log to append to, made if there is none, locked exclusively.
    pub fn open(root: &Path) -> Result<Log, TpmError> {
        let path = root.join(LOG_FILE);
        let io = |source| TpmError::Log {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))?;
        Ok(Log { path, file })
    }

    /// The log to read, locked shared; None where nothing was measured yet.
    pub fn open_to_read(root: &Path) -> Result<Option<Log>, TpmError> {
        let path = root.join(LOG_FILE);
        let io = |source| TpmError::Log {
            path: path.clone(),
            source,
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let file = Flock::lock(file, FlockArg::LockShared).map_err(|(_, e)| io(e.into()))?;
        Ok(Some(Log { path, file }))
    }

    pub fn records(&mut self) -> Result<Vec<Record>, TpmError> {
        let mut text = Vec::new();
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.io(e))?;
        self.file.read_to_end(&mut text).map_err(|e| self.io(e))?;
        // A record that a crash cut short has no newline yet: skipped, as RFC 7464 readers do.
        let whole = text.last().is_none_or(|&b| b == b'\n');
        let mut parts: Vec<&[u8]> = text
            .split(|&b| b == RS)
            .filter(|r| !r.iter().all(u8::is_ascii_whitespace))
            .collect();
        if !whole {
            parts.pop();
        }
        (parts.into_iter().enumerate())
            .map(|(n, r)| {
                serde_json::from_slice(r).map_err(|e| TpmError::Corrupt {
                    path: self.path.clone(),
                    n,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Appends `r`; returns the length the log had, to take it back with `truncate`.
    pub fn append(&mut self, r: &Record) -> Result<u64, TpmError> {
        let len = self.file.metadata().map_err(|e| self.io(e))?.len();
        let mut bytes = vec![RS];
        bytes.extend(serde_json::to_vec(r).expect("a record serializes"));
        bytes.push(b'\n');
        self.file.write_all(&bytes).map_err(|e| self.io(e))?;
        self.file.sync_data().map_err(|e| self.io(e))?;
        Ok(len)
    }

    pub fn truncate(&mut self, len: u64) -> Result<(), TpmError> {
        self.file.set_len(len).map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> TpmError {
        TpmError::Log {
            path: self.path.clone(),
            source,
        }
    }
}

/// What `pcr` holds after the records for it, from the zeros it starts at: each extend is
/// sha256(pcr || digest).
pub fn replay(records: &[Record], pcr: u32) -> Result<[u8; 32], String> {
    let mut value = [0u8; 32];
    for (n, r) in records.iter().enumerate().filter(|(_, r)| r.pcr == pcr) {
        let d = r.sha256().map_err(|e| format!("record {n}: {e}"))?;
        let mut h = Sha256::new();
        h.update(value);
        h.update(d);
        value = h.finalize().into();
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_seq_and_replay_as_a_pcr_extends() {
        let root = std::env::temp_dir().join(format!("chitin-tpm-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut log = Log::open(&root).unwrap();
        let a = Record::new(16, serde_json::json!({"id": "a"}));
        let b = Record::new(16, serde_json::json!({"id": "b"}));
        log.append(&a).unwrap();
        let len = log.append(&b).unwrap();
        let text = std::fs::read(root.join(LOG_FILE)).unwrap();
        assert_eq!(text[0], RS);
        assert_eq!(text.iter().filter(|&&c| c == RS).count(), 2);
        assert!(String::from_utf8_lossy(&text).contains("\"content_type\":\"chitin\""));
        assert_eq!(log.records().unwrap(), [a.clone(), b]);
        log.truncate(len).unwrap();
        assert_eq!(log.records().unwrap(), std::slice::from_ref(&a));
        // A write cut short by a crash is skipped; the records before it stand.
        std::io::Write::write_all(&mut *log.file, b"\x1e{\"pcr\":16,\"dig").unwrap();
        assert_eq!(log.records().unwrap(), std::slice::from_ref(&a));
        log.truncate(len).unwrap();

        // PCR 16 after one extend of d: sha256(32 zeros || d).
        let d = a.sha256().unwrap();
        let mut once = vec![0u8; 32];
        once.extend(d);
        assert_eq!(replay(std::slice::from_ref(&a), 16).unwrap(), sha256(&once));
        assert_eq!(
            replay(std::slice::from_ref(&a), 23).unwrap(),
            [0u8; 32],
            "another PCR's records"
        );
        let mut forged = a;
        forged.content = serde_json::json!({"id": "forged"});
        let e = replay(&[forged], 16).unwrap_err();
        assert!(e.contains("is not its content's"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
