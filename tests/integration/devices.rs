//! Hardware from annotations: CDI devices named by `cdi.k8s.io/*` and `org.chitin.devices.cdi`,
//! from spec files in a directory given with --cdi-spec-dirs (the host's /etc/cdi is left
//! alone). The effects are read from inside the container, in the cgroup and on the host.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::support::{Bundle, Ctx};

/// A CDI spec directory in the test's directory, with a fuse node made for its hostPath and a
/// spec (YAML) of two devices, the spec's own edits touching env, a mount, a hook and the
/// groups. Returns the directory and the spec file.
pub fn spec_dir(ctx: &Ctx) -> (String, std::path::PathBuf) {
    let base = ctx.base.display().to_string();
    let dir = ctx.base.join("cdi");
    std::fs::create_dir_all(ctx.base.join("hostdev")).unwrap();
    std::fs::create_dir_all(ctx.base.join("share")).unwrap();
    std::fs::write(ctx.base.join("share/hello"), "from the host\n").unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let node = ctx.base.join("hostdev/fuse");
    let st = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "10", "229"])
        .status()
        .unwrap();
    assert!(st.success(), "mknod");
    let spec = format!(
        "cdiVersion: 0.7.0
kind: test.chitin.dev/dev
containerEdits:
  env: [CDI_TEST=spec-level]
  mounts:
  - {{hostPath: {base}/share, containerPath: /opt/share, options: [ro, rbind]}}
  hooks:
  - {{hookName: createRuntime, path: /bin/sh, args: [sh, -c, 'echo ran > {base}/hook-ran']}}
  additionalGids: [44]
devices:
- name: fuse
  containerEdits:
    deviceNodes:
    - {{path: /dev/cdi-fuse, hostPath: {base}/hostdev/fuse, permissions: rw, fileMode: 438}}
- name: other
  containerEdits:
    deviceNodes: [{{path: /dev/other, type: c, major: 1, minor: 3}}]
"
    );
    let file = dir.join("test.yaml");
    std::fs::write(&file, spec).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir.display().to_string(), file)
}

const SCRIPT: &str = "(exec 3<>/dev/cdi-fuse) 2>/dev/null && echo fuse-opened || echo fuse-denied; \
     test -e /dev/other && echo other-present || echo other-absent; \
     echo env=$CDI_TEST; cat /opt/share/hello; grep Groups /proc/self/status";

/// A bundle that denies every device but the defaults, as Docker's configs do, with a node at
/// /dev/cdi-fuse of its own when `own_node` (so that only the grant's rule differs).
pub fn bundle(ctx: &Ctx, id: &str, annotations: serde_json::Value, own_node: bool) -> Bundle {
    let mut b = ctx.bundle(SCRIPT);
    b.config["linux"]["cgroupsPath"] = format!("/chitin-tests/{id}").into();
    b.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    if own_node {
        b.config["linux"]["devices"] = json!([{"path": "/dev/cdi-fuse", "type": "c",
                                               "major": 10, "minor": 229, "fileMode": 438}]);
    }
    b.config["annotations"] = annotations;
    b
}

fn fuse_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok()
}

/// `run` with CDI specs from `dirs`: exit code, stdout, stderr.
fn run(ctx: &Ctx, dirs: &str, b: &Bundle, id: &str) -> (i32, String, String) {
    b.save();
    let out = ctx
        .cmd()
        .args(["--cdi-spec-dirs", dirs, "run", "-b"])
        .arg(&b.dir)
        .arg(id)
        .output()
        .unwrap();
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// A device of a CDI spec, asked for by a device plugin's annotation, opens in a container whose
/// own rules deny it: the grant brings its node and its rule (seen in the v1 devices.list); the
/// spec's other device stays out; the spec's own edits (env, a mount, a hook on the host, a
/// group) are all there.
pub fn cdi_devices_reach_the_container() -> TestResult {
    let ctx = Ctx::new("cdi")?;
    if !fuse_opens() {
        return skip("/dev/fuse does not open on this host (no fuse driver)");
    }
    let (dirs, _) = spec_dir(&ctx);
    let id = ctx.id();
    let ask = json!({"cdi.k8s.io/test-plugin_fuse": "test.chitin.dev/dev=fuse"});
    let mut b = bundle(&ctx, &id, ask, false);
    let list = "; cat /sys/fs/cgroup/devices/devices.list 2>/dev/null || true";
    b.config["process"]["args"][2] = format!("{SCRIPT}{list}").into();
    let (code, out, err) = run(&ctx, &dirs, &b, &id);
    assert_eq!(code, 0, "{out}{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("fuse-opened"), "{out}");
    assert_eq!(lines.next(), Some("other-absent"), "{out}");
    assert_eq!(lines.next(), Some("env=spec-level"), "{out}");
    assert_eq!(lines.next(), Some("from the host"), "{out}");
    let groups = lines.next().unwrap_or_default();
    assert!(groups.split_whitespace().any(|g| g == "44"), "{groups}");
    let rules: Vec<&str> = lines.collect();
    // On a v1 devices controller the rule is in the list (v2's eBPF filter has none to read).
    if std::path::Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        assert!(rules.contains(&"c 10:229 rw"), "{rules:?}");
    }
    let hook = std::fs::read_to_string(ctx.base.join("hook-ran")).unwrap_or_default();
    assert_eq!(hook, "ran\n", "the createRuntime hook ran on the host");

    // The same node without the grant: the config's deny-all rule holds.
    let id = ctx.id();
    let mut b = bundle(&ctx, &id, json!({}), true);
    b.config["process"]["args"][2] =
        "(exec 3<>/dev/cdi-fuse) 2>/dev/null && echo fuse-opened || echo fuse-denied".into();
    let (code, out, err) = run(&ctx, &dirs, &b, &id);
    assert_eq!((code, out.as_str()), (0, "fuse-denied\n"), "{err}");
    Ok(())
}

/// A request that cannot be granted fails create before anything is made, naming the
/// annotation, and the spec file where it is at fault.
pub fn bad_cdi_requests_fail_before_anything_is_made() -> TestResult {
    let ctx = Ctx::new("cdibad")?;
    let (dirs, file) = spec_dir(&ctx);
    let f = file.display().to_string();
    let ours = "org.chitin.devices.cdi";
    let cases: Vec<(&str, &str, String, Option<u32>)> = vec![
        (
            ours,
            "test.chitin.dev/dev=gpu",
            "no CDI spec defines the device test.chitin.dev/dev=gpu".into(),
            None,
        ),
        (
            ours,
            "test.chitin.dev/dev",
            "a CDI device name is vendor.com/class=name".into(),
            None,
        ),
        (
            "cdi.k8s.io/-bad",
            "test.chitin.dev/dev=fuse",
            "after cdi.k8s.io/ is not letters and digits".into(),
            None,
        ),
        // Others may write the spec: its hook would run as root.
        (
            ours,
            "test.chitin.dev/dev=fuse",
            format!("{f}: mode 646 lets others write it"),
            Some(0o646),
        ),
    ];
    for (key, value, want, mode) in cases {
        if let Some(m) = mode {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let id = ctx.id();
        let mut b = bundle(&ctx, &id, json!({key: value}), false);
        b.config["process"]["args"][2] = "true".into();
        let (code, out, err) = run(&ctx, &dirs, &b, &id);
        assert_eq!(code, 1, "{out}{err}");
        let named = format!("config.json: annotations[\\\"{key}\\\"]: ");
        assert!(
            err.contains(&named) && err.contains(&want),
            "{want} in {err}"
        );
        assert!(!ctx.root.join(&id).exists(), "nothing left behind");
        assert!(!ctx.base.join("hook-ran").exists(), "no hook ran");
    }
    // A host node that is not there names the file and its JSON path.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(ctx.base.join("hostdev/fuse")).unwrap();
    let id = ctx.id();
    let mut b = bundle(&ctx, &id, json!({ours: "test.chitin.dev/dev=fuse"}), false);
    b.config["process"]["args"][2] = "true".into();
    let (code, _, err) = run(&ctx, &dirs, &b, &id);
    assert_eq!(code, 1, "{err}");
    let want = format!("CDI spec {f} devices[0].containerEdits.deviceNodes[0]: the host's ");
    assert!(err.contains(&want), "{want} in {err}");
    Ok(())
}

/// Enclave devices as this host has them: each one the host has is in the container and opens
/// (the real part needs the hardware); each one it lacks fails create, naming the annotation,
/// with nothing left behind. SGX is refused where the container's /dev is noexec.
pub fn enclave_devices_as_the_host_has_them() -> TestResult {
    let ctx = Ctx::new("enclave")?;
    let key = "org.chitin.devices.enclave";
    let named = format!("config.json: annotations[\\\"{key}\\\"]: ");
    for (name, node) in [
        ("sgx", "sgx_enclave"),
        ("sgx-provision", "sgx_provision"),
        ("sev", "sev"),
        ("sev-guest", "sev-guest"),
        ("tdx-guest", "tdx_guest"),
        ("nitro", "nitro_enclaves"),
    ] {
        let id = ctx.id();
        let mut b = bundle(&ctx, &id, json!({key: name}), false);
        let open = format!("(exec 3<>/dev/{node}) && echo opened");
        b.config["process"]["args"][2] = open.into();
        let (code, out, err) = run(&ctx, "/nonexistent", &b, &id);
        if std::path::Path::new("/sys/class/misc").join(node).exists() {
            assert_eq!((code, out.as_str()), (0, "opened\n"), "{name}: {err}");
            continue;
        }
        assert_eq!(code, 1, "{name}: {out}{err}");
        let want = format!("no misc device {node} on this host");
        assert!(
            err.contains(&named) && err.contains(&want),
            "{want} in {err}"
        );
        assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    }
    let id = ctx.id();
    let mut b = bundle(&ctx, &id, json!({key: "sgx"}), false);
    let dev = b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["destination"] == "/dev")
        .unwrap();
    dev["options"].as_array_mut().unwrap().push("noexec".into());
    let (code, _, err) = run(&ctx, "/nonexistent", &b, &id);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&named) && err.contains("/dev is mounted noexec (mounts["),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    Ok(())
}

/// The PCI functions bound to vfio-pci on this host (the v2 VM binds QEMU's edu device).
fn vfio_functions() -> Vec<String> {
    let Ok(list) = std::fs::read_dir("/sys/bus/pci/drivers/vfio-pci") else {
        return Vec::new();
    };
    let mut v: Vec<String> = list
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.matches(':').count() == 2)
        .collect();
    v.sort();
    v
}

/// A PCI function on vfio-pci reaches a container whose own rules deny every device: the VFIO
/// container node and its IOMMU group's node open, PCIDEVICE_ names the function, hugetlbfs is
/// at /dev/hugepages, and memlock is unlimited. A group held open by that container is refused
/// to the next, as in use. Where no function is bound, a request fails before anything is made.
pub fn vfio_group_reaches_the_container() -> TestResult {
    let ctx = Ctx::new("vfio")?;
    let key = "org.chitin.devices.vfio";
    let named = format!("config.json: annotations[\\\"{key}\\\"]: ");
    let id = ctx.id();
    let mut b = bundle(&ctx, &id, json!({key: "0000:7f:1f.7"}), false);
    b.config["process"]["args"][2] = "true".into();
    let (code, _, err) = run(&ctx, "/nonexistent", &b, &id);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&named) && err.contains("0000:7f:1f.7: no IOMMU group"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    let Some(addr) = vfio_functions().into_iter().next() else {
        return skip(
            "no PCI function is bound to vfio-pci here (the v2 VM binds QEMU's edu device)",
        );
    };
    let group = std::fs::read_link(format!("/sys/bus/pci/devices/{addr}/iommu_group")).unwrap();
    let group = group.file_name().unwrap().to_string_lossy().into_owned();
    let id = ctx.id();
    let mut b = bundle(&ctx, &id, json!({key: addr}), false);
    let script = format!(
        "(exec 3<>/dev/vfio/vfio) && echo container-ok; (exec 3<>/dev/vfio/{group}) && echo group-ok; \
         echo $PCIDEVICE_CHITIN_DEV_VFIO; grep -c ' /dev/hugepages hugetlbfs ' /proc/mounts; ulimit -l"
    );
    b.config["process"]["args"][2] = script.into();
    let (code, out, err) = run(&ctx, "/nonexistent", &b, &id);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!("container-ok\ngroup-ok\n{addr}\n1\nunlimited\n"),
        "{err}"
    );

    // Held open by one container, the group is not handed to another.
    let holder = ctx.id();
    let mut b = bundle(&ctx, &holder, json!({key: addr}), false);
    b.config["process"]["args"][2] = format!("exec 3<>/dev/vfio/{group}; sleep 100").into();
    let (code, err) = ctx.create_with(&[], &b, &holder, &[]);
    assert_eq!(code, 0, "{err}");
    ctx.chitin_ok(&["start", &holder]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let second = loop {
        let id = ctx.id();
        let mut b = bundle(&ctx, &id, json!({key: addr}), false);
        b.config["process"]["args"][2] = "true".into();
        let (code, out, err) = run(&ctx, "/nonexistent", &b, &id);
        if code != 0 || std::time::Instant::now() > until {
            break (code, out, err);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(second.0, 1, "{second:?}");
    assert!(
        second.2.contains("is in use (open elsewhere)"),
        "{}",
        second.2
    );
    Ok(())
}

/// An RDMA device, asked for by the interface it serves, reaches a container whose own rules
/// deny every device: its verbs node opens, the memlock limit is raised, and the rdma cgroup has
/// the limits asked for. The v2 VM makes a soft RoCE device (rdma_rxe) on a veth for this;
/// without one, a request fails before anything is made.
pub fn rdma_device_reaches_the_container() -> TestResult {
    let ctx = Ctx::new("rdma")?;
    let key = "org.chitin.devices.rdma";
    let id = ctx.id();
    let mut b = bundle(&ctx, &id, json!({key: "no-such-hca"}), false);
    b.config["process"]["args"][2] = "true".into();
    let (code, _, err) = run(&ctx, "/nonexistent", &b, &id);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("annotations[\\\"{key}\\\"]")),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    let Ok(iface) = std::env::var("CHITIN_RDMA_DEVICE") else {
        return skip("no RDMA device made for the tests (the v2 VM makes a soft RoCE one)");
    };
    let id = ctx.id();
    let asked = json!({key: iface, "org.chitin.devices.rdma.limit": "16:1000"});
    let mut b = bundle(&ctx, &id, asked, false);
    let script = "for n in /dev/infiniband/uverbs*; do (exec 3<>$n) && echo verbs-opened; done; \
                  ulimit -l; cat /sys/fs/cgroup/rdma.max";
    b.config["process"]["args"][2] = script.into();
    let (code, out, err) = run(&ctx, "/nonexistent", &b, &id);
    assert_eq!(code, 0, "{out}{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("verbs-opened"), "{out}");
    assert_eq!(lines.next(), Some("unlimited"), "{out}");
    let max: Vec<&str> = lines.collect();
    assert!(
        max.iter()
            .any(|l| l.trim_end().ends_with("hca_handle=16 hca_object=1000")),
        "{out}"
    );
    Ok(())
}

/// The RDMA subsystem's mode for the rest of a test: exclusive, put back to shared on drop.
struct Exclusive;

impl Exclusive {
    /// Switches to exclusive mode, which the kernel refuses (EBUSY) while any network namespace
    /// but the initial one exists: those of earlier tests go some time after their processes.
    fn switch() -> Option<Exclusive> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let set = std::process::Command::new("rdma")
                .args(["system", "set", "netns", "exclusive"])
                .output()
                .ok()?;
            if set.status.success() {
                return Some(Exclusive);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rdma")
            .args(["system", "set", "netns", "shared"])
            .status();
    }
}

/// In the RDMA subsystem's exclusive mode the device must move into the container's network
/// namespace with it. Soft RoCE's rxe cannot change namespace (the kernel answers EOPNOTSUPP: it
/// has no way to detach user contexts), so on the v2 VM the create fails, naming the device and
/// the kernel's reason, and leaves the device in the host's namespace and no state.
pub fn rdma_device_in_exclusive_mode() -> TestResult {
    let ctx = Ctx::new("rdma-excl")?;
    let Ok(iface) = std::env::var("CHITIN_RDMA_DEVICE") else {
        return skip("no RDMA device made for the tests (the v2 VM makes a soft RoCE one)");
    };
    let Some(_mode) = Exclusive::switch() else {
        return skip("the RDMA subsystem would not switch to exclusive mode (rdma system set)");
    };
    let id = ctx.id();
    let key = "org.chitin.devices.rdma";
    let mut b = bundle(&ctx, &id, json!({key: iface}), false);
    b.config["process"]["args"][2] = "true".into();
    let (code, _, err) = run(&ctx, "/nonexistent", &b, &id);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("annotations[\\\"{key}\\\"]: moving the RDMA device rxe0 into the container's network namespace: Operation not supported")),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    let shown = std::process::Command::new("rdma")
        .args(["dev", "show", "rxe0"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "rxe0 is still the host's");
    Ok(())
}
