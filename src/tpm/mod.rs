//! Measuring containers into a TPM. A container whose config asks for it (the devices crate's
//! `org.chitin.tpm.measure`, an `Action::Measure`) is measured by `start` before it runs: the
//! digest of what it was created with (the effective config saved in its state directory, and
//! the image's digest where the engine gives one) extends a PCR, and a record of it goes to the
//! event log under --root, so that `chitin tpm verify` can replay the log to the PCR's value.
//!
//! The TPM is reached as a TCTI string names it (`--tpm-tcti`; the kernel's resource manager by
//! default), by chitin's own marshalling of the two commands it sends (wire.rs): see README for
//! why not tss-esapi. It is only used in `start` (and `run`'s start), after the clone.

pub mod log;
pub mod rootfs;
mod wire;

use std::path::{Path, PathBuf};

use log::{Log, Record, hex, sha256};

/// The TCTI chitin uses unless told: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// Annotations that name the image's digest, where the engine sets one (CRI-O's resolved image
/// reference).
const IMAGE_DIGEST: [&str; 1] = ["io.kubernetes.cri-o.ImageRef"];

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("TPM ({tcti}): {reason}")]
    Device { tcti: String, reason: String },
    #[error("TPM event log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TPM event log {path}: {reason}")]
    Replay { path: PathBuf, reason: String },
    /// A command went out and no answer came back: the TPM may have carried it out.
    #[error(
        "TPM ({tcti}): {what}: {source} (it may have been carried out; the log keeps its record)"
    )]
    Transport {
        tcti: String,
        what: String,
        source: std::io::Error,
    },
    #[error("TPM event log {path}: record {n}: {reason}")]
    Corrupt {
        path: PathBuf,
        n: usize,
        reason: String,
    },
    #[error("PCR {pcr}: the TPM has {tpm}, the log replays to {log} ({records} records)")]
    Mismatch {
        pcr: u32,
        tpm: String,
        log: String,
        records: usize,
    },
}

/// A TPM as chitin uses it: the sha256 bank of a PCR, extended and read.
pub trait Tpm {
    fn extend(&mut self, pcr: u32, digest: [u8; 32]) -> Result<(), TpmError>;
    fn read(&mut self, pcr: u32) -> Result<[u8; 32], TpmError>;
}

/// The TPM at `tcti`: `device:PATH` (a TPM character device, /dev/tpmrm0 when PATH is left
/// out) or `swtpm:host=H,port=P` (swtpm's TCP server, localhost:2321 by default), the TCTI
/// strings of tpm2-tss and tpm2-tools.
pub fn open(tcti: &str) -> Result<Box<dyn Tpm>, TpmError> {
    let err = |reason: String| TpmError::Device {
        tcti: tcti.into(),
        reason,
    };
    let (kind, conf) = tcti.split_once(':').unwrap_or((tcti, ""));
    let transport: Box<dyn Transport> = match kind {
        "device" => {
            let path = if conf.is_empty() { "/dev/tpmrm0" } else { conf };
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| err(format!("{path}: {e}")))?;
            Box::new(Device(f))
        }
        "swtpm" => {
            let (mut host, mut port) = ("localhost".to_string(), 2321u16);
            for kv in conf.split(',').filter(|kv| !kv.is_empty()) {
                match kv.split_once('=') {
                    Some(("host", h)) => host = h.into(),
                    Some(("port", p)) => {
                        port = p.parse().map_err(|_| err(format!("port {p:?}")))?
                    }
                    _ => return Err(err(format!("{kv:?} is not host=H or port=P"))),
                }
            }
            let s = std::net::TcpStream::connect((host.as_str(), port))
                .map_err(|e| err(format!("{host}:{port}: {e}")))?;
            // swtpm serves one client at a time: one held elsewhere must not hang a start.
            let limit = Some(std::time::Duration::from_secs(30));
            s.set_read_timeout(limit)
                .and_then(|()| s.set_write_timeout(limit))
                .map_err(|e| err(e.to_string()))?;
            Box::new(Swtpm(s))
        }
        _ => {
            return Err(err(
                "chitin speaks to device:PATH and swtpm:host=H,port=P TCTIs".into(),
            ));
        }
    };
    Ok(Box::new(Client {
        transport,
        tcti: tcti.into(),
    }))
}

/// A way to hand the TPM a command and take its response.
trait Transport {
    fn transact(&mut self, cmd: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// A TPM character device: a command is one write, its response one read.
struct Device(std::fs::File);

impl Transport for Device {
    fn transact(&mut self, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Write};
        self.0.write_all(cmd)?;
        let mut buf = vec![0u8; 4096];
        let n = loop {
            match self.0.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.truncate(n);
        Ok(buf)
    }
}

/// swtpm's TCP server: the command's bytes, then a response whose header gives its size.
struct Swtpm(std::net::TcpStream);

impl Transport for Swtpm {
    fn transact(&mut self, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Write};
        self.0.write_all(cmd)?;
        let mut header = [0u8; 10];
        self.0.read_exact(&mut header)?;
        let size = wire::response_size(&header).clamp(10, 4096);
        let mut resp = header.to_vec();
        resp.resize(size, 0);
        self.0.read_exact(&mut resp[10..])?;
        Ok(resp)
    }
}

struct Client {
    transport: Box<dyn Transport>,
    tcti: String,
}

impl Client {
    /// PCRs 0 to 23, the ones a TPM has (a tampered log may name others).
    fn check(&self, pcr: u32) -> Result<(), TpmError> {
        match pcr {
            0..=23 => Ok(()),
            _ => Err(TpmError::Device {
                tcti: self.tcti.clone(),
                reason: format!("there is no PCR {pcr}"),
            }),
        }
    }

    fn call(&mut self, cmd: &[u8], what: &str) -> Result<Vec<u8>, TpmError> {
        let err = |reason: String| TpmError::Device {
            tcti: self.tcti.clone(),
            reason: format!("{what}: {reason}"),
        };
        let resp = self
            .transport
            .transact(cmd)
            .map_err(|source| TpmError::Transport {
                tcti: self.tcti.clone(),
                what: what.into(),
                source,
            })?;
        wire::parameters(&resp).map(<[u8]>::to_vec).map_err(err)
    }
}

impl Tpm for Client {
    fn extend(&mut self, pcr: u32, digest: [u8; 32]) -> Result<(), TpmError> {
        self.check(pcr)?;
        self.call(
            &wire::pcr_extend(pcr, &digest),
            &format!("extending PCR {pcr}"),
        )
        .map(|_| ())
    }

    fn read(&mut self, pcr: u32) -> Result<[u8; 32], TpmError> {
        self.check(pcr)?;
        let what = format!("reading PCR {pcr}");
        let params = self.call(&wire::pcr_read(pcr), &what)?;
        wire::read_value(&params).map_err(|reason| TpmError::Device {
            tcti: self.tcti.clone(),
            reason: format!("{what}: {reason}"),
        })
    }
}

/// What is measured of a container: its id, the sha256 of the config it was created with, its
/// image's digest where an annotation gives it, and the files its actions name (the CDI specs
/// whose edits it has), by their digests at create.
pub fn content(
    id: &str,
    config: &[u8],
    annotations: &std::collections::BTreeMap<String, String>,
    actions: &[chitin_devices::Action],
) -> serde_json::Value {
    let mut c = serde_json::json!({
        "event": "container-start",
        "id": id,
        "config": format!("sha256:{}", hex(&sha256(config))),
    });
    if let Some(image) = IMAGE_DIGEST.iter().find_map(|k| annotations.get(*k)) {
        c["image"] = image.clone().into();
    }
    let files: Vec<serde_json::Value> = actions
        .iter()
        .filter_map(|a| match a {
            chitin_devices::Action::Digest { file, sha256 } => {
                Some(serde_json::json!({"file": file, "sha256": sha256}))
            }
            _ => None,
        })
        .collect();
    if !files.is_empty() {
        c["cdi"] = files.into();
    }
    c
}

/// Measures into `pcr` of the TPM at `tcti`, the log at `root` locked first and for as long as
/// the TPM is open: measurements go one at a time (swtpm serves one client at a time, and a
/// TPM without a resource manager opens once).
pub fn measure_at(
    root: &Path,
    tcti: &str,
    pcr: u32,
    content: serde_json::Value,
) -> Result<(), TpmError> {
    let mut log = Log::open(root)?;
    let mut tpm = open(tcti)?;
    measure(&mut log, tpm.as_mut(), pcr, content)
}

/// Extends `pcr` with `content`'s digest and logs it. The record goes first, and is taken back
/// when the TPM refuses the extend, so that the log replays to the PCR. When the TPM goes
/// unheard halfway the extend may have happened: the record stays, and the error says so.
pub fn measure(
    log: &mut Log,
    tpm: &mut dyn Tpm,
    pcr: u32,
    content: serde_json::Value,
) -> Result<(), TpmError> {
    let record = Record::new(pcr, content);
    let digest = record.sha256().expect("a digest of its own content");
    let len = log.append(&record)?;
    match tpm.extend(pcr, digest) {
        Ok(()) => Ok(()),
        Err(e @ TpmError::Device { .. }) => {
            log.truncate(len)?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// `verify`, with the log locked (shared) until every PCR is read.
pub fn verify_at(root: &Path, tcti: &str) -> Result<Vec<(u32, String, usize)>, TpmError> {
    let mut log = Log::open_to_read(root)?;
    let records = match &mut log {
        Some(log) => log.records()?,
        None => return Ok(Vec::new()),
    };
    let mut tpm = open(tcti)?;
    verify(&records, root, tpm.as_mut())
}

/// Replays `records` for each PCR they name and compares with the TPM; returns (pcr, value,
/// records) of each that matches, or the first that does not.
pub fn verify(
    records: &[Record],
    root: &Path,
    tpm: &mut dyn Tpm,
) -> Result<Vec<(u32, String, usize)>, TpmError> {
    let mut pcrs: Vec<u32> = records.iter().map(|r| r.pcr).collect();
    pcrs.sort_unstable();
    pcrs.dedup();
    let path = root.join(log::LOG_FILE);
    let mut out = Vec::new();
    for pcr in pcrs {
        let n = records.iter().filter(|r| r.pcr == pcr).count();
        let want = log::replay(records, pcr).map_err(|reason| TpmError::Replay {
            path: path.clone(),
            reason,
        })?;
        let have = tpm.read(pcr)?;
        if have != want {
            return Err(TpmError::Mismatch {
                pcr,
                tpm: hex(&have),
                log: hex(&want),
                records: n,
            });
        }
        out.push((pcr, hex(&have), n));
    }
    Ok(out)
}

/// The log's records, one JSON line each.
pub fn records(root: &Path) -> Result<String, TpmError> {
    let Some(mut log) = Log::open_to_read(root)? else {
        return Ok(String::new());
    };
    Ok(log
        .records()?
        .iter()
        .map(|r| {
            format!(
                "{}\n",
                serde_json::to_string(r).expect("a record serializes")
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TPM in memory, extending as a real one does; it can be told to fail.
    #[derive(Default)]
    struct Fake {
        pcrs: std::collections::BTreeMap<u32, [u8; 32]>,
        fail: bool,
    }

    impl Tpm for Fake {
        fn extend(&mut self, pcr: u32, digest: [u8; 32]) -> Result<(), TpmError> {
            if self.fail {
                return Err(TpmError::Device {
                    tcti: "fake".into(),
                    reason: "no".into(),
                });
            }
            let old = self.pcrs.get(&pcr).copied().unwrap_or([0; 32]);
            self.pcrs.insert(pcr, sha256(&[old, digest].concat()));
            Ok(())
        }
        fn read(&mut self, pcr: u32) -> Result<[u8; 32], TpmError> {
            Ok(self.pcrs.get(&pcr).copied().unwrap_or([0; 32]))
        }
    }

    #[test]
    fn measurements_replay_and_a_failed_extend_leaves_no_record() {
        let root = std::env::temp_dir().join(format!("chitin-tpm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut tpm = Fake::default();
        let ann = [(
            "io.kubernetes.cri-o.ImageRef".to_string(),
            "sha256:abc".to_string(),
        )];
        let cdi = [chitin_devices::Action::Digest {
            file: "/etc/cdi/x.json".into(),
            sha256: "ab".into(),
        }];
        let c = content("c1", b"{}", &ann.into_iter().collect(), &cdi);
        assert_eq!(c["image"], "sha256:abc");
        assert_eq!(
            c["cdi"],
            serde_json::json!([{"file": "/etc/cdi/x.json", "sha256": "ab"}])
        );
        assert_eq!(
            c["config"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let mut log = Log::open(&root).unwrap();
        measure(&mut log, &mut tpm, 16, c).unwrap();
        let c2 = content("c2", b"{ }", &Default::default(), &[]);
        measure(&mut log, &mut tpm, 16, c2).unwrap();
        let logged = |log: &mut Log| log.records().unwrap();
        assert_eq!(verify(&logged(&mut log), &root, &mut tpm).unwrap()[0].2, 2);
        tpm.fail = true;
        let c3 = content("c3", b"", &Default::default(), &[]);
        assert!(measure(&mut log, &mut tpm, 16, c3).is_err());
        assert_eq!(logged(&mut log).len(), 2, "taken back");
        // Something else extends the PCR: the log no longer accounts for it.
        tpm.fail = false;
        tpm.extend(16, [7; 32]).unwrap();
        let e = verify(&logged(&mut log), &root, &mut tpm)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PCR 16: the TPM has "), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
