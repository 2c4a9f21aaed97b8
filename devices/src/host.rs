//! The host as providers read it: the root of its file system (for the host paths that CDI
//! specs name), /sys, /dev and the CDI spec directories; the real ones or a fake tree.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::vfio::Vfio;

pub struct Host {
    root: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub proc: PathBuf,
    /// In rising priority: a spec in a later directory wins over one of the same name before.
    pub cdi_dirs: Vec<PathBuf>,
    /// What the VFIO driver says of a group (the kernel's answer, or a test's).
    pub vfio: Box<dyn Vfio>,
    /// The runtime may raise hard limits (CAP_SYS_RESOURCE), and its own memlock hard limit.
    pub memlock: (bool, u64),
}

/// CDI's directories: static specs, then the dynamic ones that drivers write at boot.
pub const CDI_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

impl Host {
    pub fn real() -> Host {
        let mut h = Host::at(Path::new("/"));
        h.memlock = own_memlock();
        h
    }

    /// A host whose file system is below `root` (a fake tree in tests).
    pub fn at(root: &Path) -> Host {
        let root = root.to_path_buf();
        Host {
            sys: root.join("sys"),
            dev: root.join("dev"),
            proc: root.join("proc"),
            vfio: Box::new(crate::vfio::Kernel),
            memlock: (true, u64::MAX),
            cdi_dirs: CDI_DIRS
                .iter()
                .map(|d| under(&root, Path::new(d)))
                .collect(),
            root,
        }
    }

    /// This host with other CDI spec directories (`--cdi-spec-dirs`), in rising priority.
    pub fn with_cdi_dirs(mut self, dirs: &[PathBuf]) -> Host {
        self.cdi_dirs = dirs.iter().map(|d| under(&self.root, d)).collect();
        self
    }

    /// Where the host's absolute `path` is in this tree.
    pub fn path(&self, path: &Path) -> PathBuf {
        under(&self.root, path)
    }

    /// The character device `name` of sysfs class `class`: its major and minor from its `dev`
    /// file ("MAJOR:MINOR"), checked against the node /dev/`name` where there is one, whose
    /// mode and owner it keeps (else root's, 0600).
    pub fn char_dev(&self, class: &str, name: &str) -> Result<HostNode, String> {
        self.char_dev_at(class, name, name)
    }

    /// The highest memlock limit a container's init can be given: unlimited where the runtime
    /// may raise limits and the init sets it outside a user namespace; else the runtime's own.
    pub fn memlock_ceiling(&self, userns: bool) -> u64 {
        match self.memlock {
            (true, _) if !userns => u64::MAX,
            (_, own) => own,
        }
    }

    /// The host's default huge page size as hugepageLimits names sizes ("2MB"), from
    /// /proc/meminfo; None without huge pages.
    pub fn default_hugepage_size(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.proc.join("meminfo")).ok()?;
        let kb: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("Hugepagesize:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(match kb {
            k if k >= 1 << 20 && k % (1 << 20) == 0 => format!("{}GB", k >> 20),
            k if k >= 1 << 10 && k % (1 << 10) == 0 => format!("{}MB", k >> 10),
            k => format!("{k}KB"),
        })
    }

    /// As `char_dev`, with the node at /dev/`node`.
    pub fn char_dev_at(&self, class: &str, name: &str, node: &str) -> Result<HostNode, String> {
        let file = self.sys.join("class").join(class).join(name).join("dev");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            format!(
                "no {class} device {name} on this host ({}: {e})",
                file.display()
            )
        })?;
        let (major, minor) = text
            .trim()
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
            .ok_or_else(|| format!("{}: {text:?} is not MAJOR:MINOR", file.display()))?;
        let node = self.dev.join(node);
        let mut found = HostNode {
            major,
            minor,
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        if let Ok(m) = std::fs::metadata(&node) {
            let rdev = m.rdev();
            let (ma, mi) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
            if !m.file_type().is_char_device() || (ma, mi) != (major, minor) {
                return Err(format!(
                    "{} is not the character device {major}:{minor} that sysfs names",
                    node.display()
                ));
            }
            (found.mode, found.uid, found.gid) = (m.mode() & 0o777, m.uid(), m.gid());
        }
        Ok(found)
    }
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of CapEff), and its memlock hard limit.
fn own_memlock() -> (bool, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
        .unwrap_or(0);
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the rlimit it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    (caps & (1 << 24) != 0, if ok { r.rlim_max } else { 0 })
}

/// A character device of the host: its numbers, and the mode and owner of its node (which the
/// container's keeps: the host knows who may use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNode {
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn under(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_come_from_sysfs() {
        let root = std::env::temp_dir().join(format!("chitin-devices-host-{}", std::process::id()));
        let dir = root.join("sys/class/tpmrm/tpmrm0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dev"), "253:65536\n").unwrap();
        let host = Host::at(&root);
        let n = host.char_dev("tpmrm", "tpmrm0").unwrap();
        assert_eq!((n.major, n.minor, n.mode, n.uid), (253, 65536, 0o600, 0));
        let e = host.char_dev("tpmrm", "tpmrm1").unwrap_err();
        assert!(e.starts_with("no tpmrm device tpmrm1 on this host"), "{e}");
        // A node that is not the device sysfs names (here a plain file) is refused.
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/tpmrm0"), "").unwrap();
        let e = host.char_dev("tpmrm", "tpmrm0").unwrap_err();
        assert!(e.contains("is not the character device 253:65536"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
