//! A digest of a container's rootfs tree, for a measurement that covers the image as the
//! container will run it (`org.chitin.tpm.rootfs`): walked from the init's own root
//! (/proc/PID/root), so a bundle path pointed elsewhere after create changes nothing. By fd
//! throughout, as copyup walks an image: nothing is followed, each file and directory is taken
//! as the fd opened shows it, and the walk stays on the root's own file system (what is mounted
//! inside it, /proc or a bound file, is listed but not read: it is not the image's).
//!
//! The digest is the sha256 of one line per entry, depth first in byte order of names:
//! `PATH\0KIND\0MODE\0UID\0GID\0EXTRA\n`, KIND one of `d f l c b p s`, MODE the permission bits
//! in octal, EXTRA the sha256 of a file's contents, a symlink's target, a device's MAJOR:MINOR,
//! `mount` for what another file system holds there, or empty.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use sha2::{Digest, Sha256};

/// Deeper trees are refused: each level holds an fd open.
const MAX_DEPTH: usize = 256;

/// `sha256:HEX` of the tree at `root`.
pub fn digest(root: &Path) -> io::Result<String> {
    let fd: OwnedFd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let dev = fstat(fd.as_fd())?.st_dev;
    let mut h = Sha256::new();
    level(fd.as_fd(), b"", dev, 0, &mut h)?;
    Ok(format!("sha256:{}", super::hex(&h.finalize())))
}

fn level(
    dir: BorrowedFd<'_>,
    path: &[u8],
    dev: u64,
    depth: usize,
    h: &mut Sha256,
) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "deeper than {MAX_DEPTH} directories"
        )));
    }
    let mut names: Vec<std::ffi::CString> = Dir::from_fd(dir.try_clone_to_owned()?)?
        .into_iter()
        .map(|e| e.map(|e| e.file_name().to_owned()))
        .filter(|n| {
            !n.as_ref()
                .is_ok_and(|n| matches!(n.to_bytes(), b"." | b".."))
        })
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let mut p = path.to_vec();
        p.push(b'/');
        p.extend_from_slice(name.to_bytes());
        let st = fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let (letter, extra, descend) = match kind {
            _ if st.st_dev != dev => (kind_letter(kind), b"mount".to_vec(), false),
            SFlag::S_IFDIR => ('d', Vec::new(), true),
            SFlag::S_IFREG => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let f = openat(dir, name.as_c_str(), flags, Mode::empty())?;
                ('f', contents(f, &st)?.into_bytes(), false)
            }
            SFlag::S_IFLNK => (
                'l',
                readlinkat(dir, name.as_c_str())?.into_encoded_bytes(),
                false,
            ),
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                let (ma, mi) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                (kind_letter(kind), format!("{ma}:{mi}").into_bytes(), false)
            }
            _ => (kind_letter(kind), Vec::new(), false),
        };
        h.update(&p);
        h.update(format!(
            "\0{letter}\0{:o}\0{}\0{}\0",
            st.st_mode & 0o7777,
            st.st_uid,
            st.st_gid
        ));
        h.update(&extra);
        h.update(b"\n");
        if descend {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let sub = openat(dir, name.as_c_str(), flags, Mode::empty())?;
            same(&sub, &st)?;
            level(sub.as_fd(), &p, dev, depth + 1, h)?;
        }
    }
    Ok(())
}

fn kind_letter(kind: SFlag) -> char {
    match kind {
        SFlag::S_IFDIR => 'd',
        SFlag::S_IFREG => 'f',
        SFlag::S_IFLNK => 'l',
        SFlag::S_IFCHR => 'c',
        SFlag::S_IFBLK => 'b',
        SFlag::S_IFIFO => 'p',
        _ => 's',
    }
}

/// The fd opened is still the entry listed.
fn same(f: &OwnedFd, listed: &FileStat) -> io::Result<()> {
    let st = fstat(f.as_fd())?;
    if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino) {
        return Err(io::Error::other("the rootfs changed while it was measured"));
    }
    Ok(())
}

/// The sha256 of a regular file's contents, in hex; it must still be the file listed.
fn contents(f: OwnedFd, listed: &FileStat) -> io::Result<String> {
    same(&f, listed)?;
    let mut file = std::fs::File::from(f);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(super::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_names_contents_modes_and_links() {
        let root =
            std::env::temp_dir().join(format!("chitin-rootfs-digest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
        std::os::unix::fs::symlink("/etc/os-release", root.join("os")).unwrap();
        let first = digest(&root).unwrap();
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        assert_eq!(
            digest(&root).unwrap(),
            first,
            "the same tree, the same digest"
        );
        let changes: [&dyn Fn(); 3] = [
            &|| std::fs::write(root.join("etc/os-release"), "ID=other\n").unwrap(),
            &|| {
                use std::os::unix::fs::PermissionsExt;
                let p = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(root.join("etc/os-release"), p).unwrap()
            },
            &|| {
                std::fs::remove_file(root.join("os")).unwrap();
                std::os::unix::fs::symlink("/etc/other", root.join("os")).unwrap()
            },
        ];
        let mut seen = vec![first];
        for change in changes {
            change();
            let d = digest(&root).unwrap();
            assert!(!seen.contains(&d), "a change changes the digest");
            seen.push(d);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
