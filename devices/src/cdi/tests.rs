//! The CDI provider on fake hosts: spec files in JSON and YAML under fake /etc/cdi and
//! /var/run/cdi, device nodes made with mknod.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceType;

use super::*;
use crate::HookPhase;
use crate::testing::{Tree, annotations, request};

/// A host with empty CDI directories, /dev, and the program GPU_JSON's hook runs.
fn tree(name: &str) -> Tree {
    let t = Tree::new(&format!("cdi-{name}"));
    for d in ["etc/cdi", "var/run/cdi", "dev", "usr/bin"] {
        std::fs::create_dir_all(t.0.join(d)).unwrap();
    }
    let hook = t.0.join("usr/bin/gpu-hook");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

trait Fake {
    fn write(&self, rel: &str, text: &str) -> PathBuf;
    fn node(&self, name: &str, major: u32, minor: u32);
    fn host(&self) -> Host;
}

impl Fake for Tree {
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// A character device node in the fake /dev.
    fn node(&self, name: &str, major: u32, minor: u32) {
        let p = std::ffi::CString::new(
            self.0
                .join("dev")
                .join(name)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let dev = libc::makedev(major, minor);
        assert_eq!(
            unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, dev) },
            0,
            "mknod (tests run as root)"
        );
    }

    fn host(&self) -> Host {
        Host::at(&self.0)
    }
}

fn ask(host: &Host, pairs: &[(&str, &str)], uid: u32) -> Result<Vec<Grant>, DeviceError> {
    let a = annotations(pairs);
    resolve(host, &request(&a, uid, &[]))
}

const GPU_JSON: &str = r#"{
  "cdiVersion": "0.7.0",
  "kind": "vendor.example/gpu",
  "containerEdits": {
    "env": ["GPU_DRIVER=1"],
    "deviceNodes": [{"path": "/dev/gpuctl", "hostPath": "/dev/gpuctl"}],
    "mounts": [{"hostPath": "/opt/gpu/lib", "containerPath": "/usr/lib/gpu", "options": ["ro", "bind"]}],
    "hooks": [{"hookName": "createContainer", "path": "/usr/bin/gpu-hook", "args": ["gpu-hook", "ldcache"]}]
  },
  "devices": [
    {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/gpu0", "permissions": "rw"}]}},
    {"name": "1", "containerEdits": {"deviceNodes": [{"path": "/dev/gpu1", "type": "c", "major": 240, "minor": 1, "fileMode": 432}], "additionalGids": [0, 44]}}
  ]
}"#;

const FPGA_YAML: &str = "cdiVersion: 1.1.0
kind: vendor.example/fpga
devices:
- name: a
  containerEdits:
    env: [FPGA=a]
    deviceNodes:
    - path: /dev/fpga0
      hostPath: /dev/fpga-a
";

#[test]
fn json_and_yaml_specs_grant_nodes_rules_and_edits() {
    let t = tree("grant");
    t.node("gpuctl", 240, 255);
    t.node("gpu0", 240, 0);
    t.node("fpga-a", 241, 7);
    let gpu = t.write("etc/cdi/gpu.json", GPU_JSON);
    let fpga = t.write("var/run/cdi/fpga.yaml", FPGA_YAML);
    let host = t.host();
    let grants = ask(
        &host,
        &[
            (ANNOTATION, "vendor.example/gpu=0,vendor.example/fpga=a"),
            ("cdi.k8s.io/plugin_gpu1", "vendor.example/gpu=1"),
        ],
        1000,
    )
    .unwrap();
    let origins: Vec<&str> = grants.iter().map(|g| g.origin.as_str()).collect();
    let gpu_s = gpu.display();
    let fpga_s = fpga.display();
    // The spec's own edits once, before its first device; the annotations in key order.
    assert_eq!(
        origins,
        [
            format!("CDI vendor.example/gpu ({gpu_s})"),
            format!("CDI vendor.example/gpu=1 ({gpu_s})"),
            format!("CDI vendor.example/gpu=0 ({gpu_s})"),
            format!("CDI vendor.example/fpga ({fpga_s})"),
            format!("CDI vendor.example/fpga=a ({fpga_s})"),
        ]
    );
    let common = &grants[0];
    assert_eq!(common.env, ["GPU_DRIVER=1"]);
    let d = &common.devices[0];
    assert_eq!(
        (d.typ(), d.major(), d.minor()),
        (LinuxDeviceType::C, 240, 255)
    );
    // The container's user owns the node unless the spec names one.
    assert_eq!((d.uid(), d.gid()), (Some(1000), Some(1000)));
    let r = &common.device_rules[0];
    assert_eq!(
        (r.major(), r.minor(), r.access().as_deref()),
        (Some(240), Some(255), Some("rwm"))
    );
    let m = &common.mounts[0];
    assert_eq!(m.destination(), Path::new("/usr/lib/gpu"));
    assert_eq!(m.source().as_deref(), Some(Path::new("/opt/gpu/lib")));
    assert_eq!(common.hooks[0].0, HookPhase::CreateContainer);
    assert_eq!(common.hooks[0].1.path(), Path::new("/usr/bin/gpu-hook"));
    let Action::Digest { file, sha256 } = &common.actions[0] else {
        panic!("{:?}", common.actions)
    };
    assert_eq!(file, &gpu_s.to_string());
    assert_eq!(sha256.len(), 64);
    // Type and major given: nothing read from the host, the mode kept, gid 0 dropped.
    let one = &grants[1];
    assert_eq!(
        (
            one.devices[0].major(),
            one.devices[0].minor(),
            one.devices[0].file_mode()
        ),
        (240, 1, Some(0o660))
    );
    assert_eq!(one.additional_gids, [44]);
    let fpga_dev = &grants[4].devices[0];
    assert_eq!(
        (
            fpga_dev.path().as_path(),
            fpga_dev.major(),
            fpga_dev.minor()
        ),
        (Path::new("/dev/fpga0"), 241, 7)
    );
    let zero = &grants[2];
    assert_eq!(zero.device_rules[0].access().as_deref(), Some("rw"));
    // Nothing asked, nothing read.
    assert!(ask(&host, &[], 0).unwrap().is_empty());
}

#[test]
fn a_later_directory_wins_and_one_directory_twice_conflicts() {
    let t = tree("prio");
    t.node("gpu0", 240, 0);
    t.node("gpuctl", 240, 255);
    t.write("etc/cdi/gpu.json", GPU_JSON);
    let late = GPU_JSON.replace("\"name\": \"0\", \"containerEdits\": {\"deviceNodes\": [{\"path\": \"/dev/gpu0\"", "\"name\": \"0\", \"containerEdits\": {\"deviceNodes\": [{\"path\": \"/dev/gpu0-late\", \"hostPath\": \"/dev/gpu0\"");
    t.write("var/run/cdi/gpu.json", &late);
    let host = t.host();
    let g = ask(&host, &[(ANNOTATION, "vendor.example/gpu=0")], 0).unwrap();
    assert_eq!(g[1].devices[0].path(), Path::new("/dev/gpu0-late"));
    assert!(
        g[1].origin.contains("var/run/cdi/gpu.json"),
        "{}",
        g[1].origin
    );
    t.write("var/run/cdi/gpu-too.yaml", &late);
    let e = ask(&host, &[(ANNOTATION, "vendor.example/gpu=0")], 0).unwrap_err();
    assert_eq!(e.annotation, ANNOTATION);
    assert!(
        e.reason
            .starts_with("CDI device vendor.example/gpu=0 is defined by both"),
        "{}",
        e.reason
    );
    assert!(e.reason.contains("gpu-too.yaml"), "{}", e.reason);
    // --cdi-spec-dirs: only the directories given.
    let only_etc = t.host().with_cdi_dirs(&[PathBuf::from("/etc/cdi")]);
    let g = ask(&only_etc, &[(ANNOTATION, "vendor.example/gpu=0")], 0).unwrap();
    assert_eq!(g[1].devices[0].path(), Path::new("/dev/gpu0"));
}

#[test]
fn untrusted_or_bad_spec_files_are_refused_by_name() {
    let t = tree("refuse");
    let p = t.write("etc/cdi/gpu.json", GPU_JSON);
    let host = t.host();
    let req = [(ANNOTATION, "vendor.example/gpu=1")];
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o646)).unwrap();
    let e = ask(&host, &req, 0).unwrap_err().reason;
    assert!(
        e.starts_with("no CDI spec defines the device vendor.example/gpu=1 (refused: "),
        "{e}"
    );
    assert!(e.contains("mode 646 lets others write it"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
    let e = ask(&host, &req, 0).unwrap_err().reason;
    assert!(e.contains("owned by uid 65534, not root"), "{e}");
    std::fs::remove_file(&p).unwrap();
    let cases = [
        (
            GPU_JSON.replace("0.7.0", "0.6.0"),
            "cdiVersion \"0.6.0\" is too old for devices[1].containerEdits.additionalGids, which needs 0.7.0",
        ),
        (
            FPGA_YAML.replace("1.1.0", "0.4.0"),
            "cdiVersion \"0.4.0\" is too old for devices[0].containerEdits.deviceNodes[0].hostPath, which needs 0.5.0",
        ),
        (
            GPU_JSON.replace("0.7.0", "1.2.0"),
            "cdiVersion \"1.2.0\" is not a CDI version (0.1.0 to 1.1.0)",
        ),
        (
            GPU_JSON.replace("\"major\": 240", "\"majr\": 240"),
            "unknown field `majr`",
        ),
        (
            GPU_JSON.replace("createContainer", "preStart"),
            "containerEdits.hooks[0].hookName: \"preStart\" is not one of",
        ),
        (
            GPU_JSON.replace("\"rw\"", "\"rx\""),
            "devices[0].containerEdits.deviceNodes[0].permissions: \"rx\" is not made of r, w and m",
        ),
        (
            GPU_JSON.replace("GPU_DRIVER=1", "=1"),
            "containerEdits.env[0]: \"=1\" is not NAME=VALUE",
        ),
    ];
    for (text, want) in cases {
        t.write("etc/cdi/gpu.yaml", &text);
        let e = ask(&host, &req, 0).unwrap_err().reason;
        assert!(e.contains(want), "{want:?} in {e}");
        assert!(e.contains("etc/cdi/gpu.yaml: "), "{e}");
    }
}

#[test]
fn what_cannot_be_granted_names_the_file_and_field() {
    let t = tree("cannot");
    let p = t.write("etc/cdi/gpu.json", GPU_JSON);
    let host = t.host();
    // /dev/gpuctl is not on this host.
    let e = ask(&host, &[("cdi.k8s.io/x", "vendor.example/gpu=1")], 0).unwrap_err();
    assert_eq!(e.annotation, "cdi.k8s.io/x");
    let want = format!(
        "CDI spec {} containerEdits.deviceNodes[0]: the host's /dev/gpuctl: No such file or directory",
        p.display()
    );
    assert!(e.reason.starts_with(&want), "{}", e.reason);
    std::fs::write(t.0.join("dev/gpuctl"), "").unwrap();
    let e = ask(&host, &[("cdi.k8s.io/x", "vendor.example/gpu=1")], 0).unwrap_err();
    assert!(
        e.reason
            .ends_with("the host's /dev/gpuctl is not a device node"),
        "{}",
        e.reason
    );
    let rdt = FPGA_YAML.replace("    env: [FPGA=a]\n", "    intelRdt: {closID: x}\n");
    t.write("etc/cdi/fpga.yaml", &rdt);
    let e = ask(&host, &[(ANNOTATION, "vendor.example/fpga=a")], 0).unwrap_err();
    assert!(
        e.reason
            .ends_with("devices[0].containerEdits.intelRdt: Intel RDT is not supported"),
        "{}",
        e.reason
    );
    let e = ask(&host, &[(ANNOTATION, "vendor.example/fpga=b")], 0).unwrap_err();
    assert_eq!(
        e.reason,
        "no CDI spec defines the device vendor.example/fpga=b"
    );
}

#[test]
fn net_devices_become_the_config_s() {
    let t = tree("netdev");
    t.node("fpga-a", 241, 7);
    let spec = FPGA_YAML.replace(
        "    env: [FPGA=a]\n",
        "    netDevices: [{hostInterfaceName: ens1f0v3, name: net1}]\n",
    );
    t.write("etc/cdi/fpga.yaml", &spec);
    let g = ask(&t.host(), &[(ANNOTATION, "vendor.example/fpga=a")], 0).unwrap();
    let nets: Vec<(&str, Option<&str>)> = g
        .iter()
        .flat_map(|g| &g.net_devices)
        .map(|(host, d)| (host.as_str(), d.name().as_deref()))
        .collect();
    assert_eq!(nets, [("ens1f0v3", Some("net1"))]);
}

#[test]
fn trust_is_checked_on_what_is_opened_and_above_it() {
    let t = tree("trust");
    let p = t.write("etc/cdi/gpu.json", GPU_JSON);
    let host = t.host();
    let req = [(ANNOTATION, "vendor.example/gpu=1")];
    let refused = |want: &str| {
        let e = ask(&host, &req, 0).unwrap_err().reason;
        assert!(e.contains(want), "{want:?} in {e}");
    };
    // Group write, even for root's group: an ACL's mask shows as the group bits.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
    refused("mode 664 lets others write it");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    // An access ACL, written as the kernel takes it (version 2; user::rw, user:65534:r,
    // group::r, mask::r, other::r): the mode stays 644, and the ACL is refused all the same.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 65534),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a path and a buffer of the length given.
    let set = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    assert_eq!(
        set,
        0,
        "setting an ACL: {}",
        std::io::Error::last_os_error()
    );
    refused("given others by an access ACL");
    // SAFETY: a path and a name.
    unsafe { libc::removexattr(c.as_ptr(), c"system.posix_acl_access".as_ptr()) };
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A directory above the spec directory that others may write (and is not sticky).
    let etc = t.0.join("etc");
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("a directory above it is mode 777 lets others write it");
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Sticky, as /tmp is: the spec is read (and its device wants a node this host lacks).
    let e = ask(&host, &req, 0).unwrap_err().reason;
    assert!(e.contains("the host's /dev/gpuctl"), "{e}");
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A FIFO named as a spec does not hang the read.
    let fifo = std::ffi::CString::new(
        t.0.join("etc/cdi/a.yaml")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let e = ask(&host, &[(ANNOTATION, "vendor.example/gpu=none")], 0)
        .unwrap_err()
        .reason;
    assert!(e.contains("a.yaml: not a regular file"), "{e}");
}

#[test]
fn a_hook_s_program_must_be_root_s_alone() {
    let t = tree("hook");
    t.node("gpuctl", 240, 255);
    t.write("etc/cdi/gpu.json", GPU_JSON);
    let host = t.host();
    let req = [(ANNOTATION, "vendor.example/gpu=1")];
    assert!(ask(&host, &req, 0).is_ok());
    let hook = t.0.join("usr/bin/gpu-hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o757)).unwrap();
    let e = ask(&host, &req, 0).unwrap_err().reason;
    assert!(
        e.contains(
            "containerEdits.hooks[0].path: /usr/bin/gpu-hook: mode 757 lets others write it"
        ),
        "{e}"
    );
    std::fs::remove_file(&hook).unwrap();
    let e = ask(&host, &req, 0).unwrap_err().reason;
    assert!(
        e.contains("containerEdits.hooks[0].path: /usr/bin/gpu-hook: "),
        "{e}"
    );
}
