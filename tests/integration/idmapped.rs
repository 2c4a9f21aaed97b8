//! Idmapped mounts (a mount's uidMappings and gidMappings, the idmap and ridmap options), seen
//! from inside a container in a user namespace mapping its 0..65536 to the host's 100000 and up,
//! and on the host after it wrote through them.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{TestResult, skip};
use crate::support::{Bundle, Ctx, mount_count};

fn in_user_namespace(b: &mut Bundle) {
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
}

fn bind(dest: &str, src: &Path, options: &[&str]) -> Value {
    json!({"destination": dest, "type": "bind", "source": src, "options": options})
}

/// Adds `m`, its destination made in the rootfs (which the container's root cannot write).
fn mount(b: &mut Bundle, m: Value) {
    let dest = m["destination"].as_str().unwrap().trim_start_matches('/');
    std::fs::create_dir_all(b.rootfs().join(dest)).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(m);
}

/// One map of `size` ids from `container` to `host`, as a mount's uid and gid maps.
fn own_maps(m: &mut Value, container: u32, host: u32, size: u32) {
    let map = json!([{"containerID": container, "hostID": host, "size": size}]);
    m["uidMappings"] = map.clone();
    m["gidMappings"] = map;
}

/// A directory owned by `id`:`id`.
fn dir_owned(path: &Path, id: u32, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    chown(path, Some(id), Some(id)).unwrap();
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
}

fn file_owned(path: &Path, id: u32) {
    std::fs::write(path, "x").unwrap();
    chown(path, Some(id), Some(id)).unwrap();
}

fn owner(path: &Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!("{}:{}", m.uid(), m.gid())
}

/// The running kernel's major and minor version.
fn kernel() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (v.next().unwrap(), v.next().unwrap())
}

/// Sources in the temp dir need a filesystem the kernel can idmap: not the tmpfs that the VMs'
/// /tmp is, on their Linux 6.1.
pub fn temp_dir_idmappable() -> bool {
    let fs = nix::sys::statfs::statfs(&std::env::temp_dir()).unwrap();
    fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC || kernel() >= (6, 3)
}

fn sources_idmappable() -> TestResult {
    match temp_dir_idmappable() {
        true => Ok(()),
        false => skip("the temp dir is a tmpfs, which Linux before 6.3 cannot idmap"),
    }
}

fn reachable(ctx: &Ctx) {
    // The bundle must be reachable by the mapped root.
    std::fs::set_permissions(&ctx.base, PermissionsExt::from_mode(0o755)).unwrap();
}

/// "idmap" alone takes the container's maps: files the host's root owns are root's inside, where
/// without it they are nobody's. A mount's own maps show the host's uid 1000 as root. A write
/// from inside lands on the host with the owner the mount maps it back to.
pub fn idmapped_bind_mounts_map_owners() -> TestResult {
    let ctx = Ctx::new("idmap")?;
    sources_idmappable()?;
    reachable(&ctx);
    let vol = ctx.base.join("vol");
    dir_owned(&vol, 0, 0o755);
    file_owned(&vol.join("root-file"), 0);
    file_owned(&vol.join("user-file"), 1000);
    let user = vol.join("u");
    dir_owned(&user, 1000, 0o755);
    file_owned(&user.join("user-file"), 1000);
    let mut b = ctx.bundle(
        "stat -c %u:%g /a/root-file /a/user-file /plain/root-file /b/user-file; \
         touch /a/by-root /b/by-root && grep -c idmapped /proc/self/mountinfo",
    );
    in_user_namespace(&mut b);
    mount(&mut b, bind("/a", &vol, &["bind", "idmap"]));
    mount(&mut b, bind("/plain", &vol, &["bind"]));
    let mut own = bind("/b", &user, &["bind"]);
    own_maps(&mut own, 1000, 100000, 1);
    mount(&mut b, own);
    let out = ctx.run_ok(&b);
    assert_eq!(out, "0:0\n1000:1000\n65534:65534\n0:0\n2\n");
    assert_eq!(owner(&vol.join("by-root")), "0:0");
    assert_eq!(owner(&user.join("by-root")), "1000:1000");
    Ok(())
}

/// With an rbind, "ridmap" idmaps what is mounted below the source too; "idmap" only the top.
/// The submount is made in a mount namespace of the test's own, which the host never sees.
pub fn ridmap_reaches_submounts() -> TestResult {
    let ctx = Ctx::new("ridmap")?;
    sources_idmappable()?;
    reachable(&ctx);
    let (tree, inner) = (ctx.base.join("tree"), ctx.base.join("inner"));
    dir_owned(&tree.join("sub"), 0, 0o755);
    file_owned(&tree.join("top"), 0);
    dir_owned(&inner, 0, 0o755);
    file_owned(&inner.join("below"), 0);
    let mut b = ctx.bundle("stat -c %u /r/top /r/sub/below /n/top /n/sub/below");
    in_user_namespace(&mut b);
    mount(&mut b, bind("/r", &tree, &["rbind", "ridmap"]));
    mount(&mut b, bind("/n", &tree, &["rbind", "idmap"]));
    b.save();
    let id = ctx.id();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(&inner)
        .arg(tree.join("sub"))
        .arg(crate::support::bin())
        .arg("--root")
        .arg(&ctx.root)
        .args(["run", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(crate::support::stdout_ok(&out), "0\n0\n0\n65534\n");
    Ok(())
}

/// Beyond runc, which idmaps binds only: a tmpfs made by the runtime and idmapped, its data
/// options (size, mode) and flags kept. Its maps show the tmpfs's root (owned by 0) as the host's
/// 101000, uid 1000 inside, and hold container root (host 100000) as 1000 on disk, so root's
/// new file is root's inside.
pub fn idmapped_tmpfs() -> TestResult {
    let ctx = Ctx::new("idmap-tmpfs")?;
    reachable(&ctx);
    let mut b = ctx.bundle(
        "stat -c '%u %a' /t; touch /t/f && stat -c %u /t/f; grep ' /t ' /proc/self/mountinfo",
    );
    in_user_namespace(&mut b);
    let map = json!([{"containerID": 0, "hostID": 101000, "size": 1},
                     {"containerID": 1000, "hostID": 100000, "size": 1}]);
    let t = json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "size=1m", "mode=1777", "idmap"],
                   "uidMappings": map, "gidMappings": map});
    mount(&mut b, t);
    if kernel() < (6, 3) {
        // tmpfs allows an idmap from 6.3: older kernels refuse it while planning.
        let (code, err) = ctx.create(&b, &ctx.id(), &[]);
        assert_ne!(code, 0);
        assert!(
            err.contains("mounts[") && err.contains("needs Linux 6.3"),
            "{err}"
        );
        return Ok(());
    }
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000 1777", "0"], "{out}");
    let fields: Vec<&str> = lines[2].split_whitespace().collect();
    let per_mount: Vec<&str> = fields[5].split(',').collect();
    for want in ["nosuid", "nodev", "idmapped"] {
        assert!(per_mount.contains(&want), "{want} in {}", lines[2]);
    }
    assert!(lines[2].contains("size=1024k"), "{}", lines[2]);
    Ok(())
}

/// What cannot be idmapped fails before anything is made, naming the mount: a filesystem of the
/// container's namespaces (while planning), one without the kernel's leave (ramfs), a bind of a
/// source on such a filesystem (sysfs), "idmap" without maps in a container without a user
/// namespace, and a mount with only one of the two maps.
pub fn idmap_refusals_name_the_mount() -> TestResult {
    let ctx = Ctx::new("idmap-bad")?;
    reachable(&ctx);
    let vol = ctx.base.join("vol");
    dir_owned(&vol, 0, 0o755);
    let cases: Vec<(Value, bool, &str)> = vec![
        (
            json!({"destination": "/p", "type": "proc", "source": "proc", "options": ["idmap"]}),
            true,
            ".type: proc cannot be idmapped",
        ),
        (
            json!({"destination": "/r", "type": "ramfs", "source": "ramfs", "options": ["idmap"]}),
            true,
            " (/r): the kernel cannot idmap this ramfs mount",
        ),
        (
            bind("/s", Path::new("/sys/kernel"), &["rbind", "idmap"]),
            true,
            " (/s): the kernel cannot idmap this bind mount",
        ),
        (
            bind("/v", &vol, &["bind", "idmap"]),
            false,
            "takes the container's user namespace maps, and it has none",
        ),
        (
            json!({"destination": "/v", "type": "bind", "source": vol, "options": ["bind"],
                   "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
            true,
            "needs both uidMappings and gidMappings",
        ),
    ];
    let before = mount_count();
    for (m, userns, want) in cases {
        let mut b = ctx.bundle("true");
        if userns {
            in_user_namespace(&mut b);
        }
        mount(&mut b, m);
        let n = b.config["mounts"].as_array().unwrap().len() - 1;
        b.save();
        let id = ctx.id();
        let (code, err) = ctx.create(&b, &id, &[]);
        assert_ne!(code, 0, "{want}");
        let line = err.lines().last().unwrap_or_default();
        assert!(
            line.contains(&format!("mounts[{n}]")) && line.contains(want),
            "want mounts[{n}] and {want:?}: {err}"
        );
        assert!(!ctx.root.join(&id).exists(), "state left for {want}");
    }
    assert_eq!(mount_count(), before, "a mount was left");
    Ok(())
}
