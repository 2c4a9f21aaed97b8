//! linux.netDevices with veth ends standing in for a NIC's virtual functions (this kernel has no
//! dummy driver). Everything happens in a network namespace of the test's own, held by a file in
//! its directory: chitin runs there (`nsenter --net`), so the host's interfaces are never
//! touched.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{TestResult, skip};
use crate::support::{Bundle, Ctx, bin};

/// A network namespace bound to a file of the test's directory; unmounted on drop.
pub struct NetNs {
    file: PathBuf,
}

impl NetNs {
    pub fn new(ctx: &Ctx) -> Result<NetNs, crate::harness::Outcome> {
        let file = ctx.base.join("netns");
        std::fs::write(&file, "").unwrap();
        let made = Command::new("unshare")
            .arg(format!("--net={}", file.display()))
            .arg("true")
            .status();
        if !made.is_ok_and(|s| s.success()) {
            return skip("unshare --net=FILE failed (util-linux too old?)");
        }
        let ns = NetNs { file };
        let probe = ns.sh("ip link add nd-probe type veth peer name nd-probe1");
        if !probe.status.success() {
            return skip(format!(
                "no veth here: {}",
                String::from_utf8_lossy(&probe.stderr)
            ));
        }
        ns.ok("ip link del nd-probe");
        Ok(ns)
    }

    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.file.display()));
        c.stdin(Stdio::null());
        c
    }

    /// A script here, with iproute2's `ip` by its path: busybox's shell (the v2 VM's) would run
    /// its own applet for a bare `ip`, and it makes no veth.
    pub fn sh(&self, script: &str) -> std::process::Output {
        let ip =
            "ip() { if [ -x /usr/sbin/ip ]; then /usr/sbin/ip \"$@\"; else /sbin/ip \"$@\"; fi; }";
        let script = format!("{ip}; {script}");
        self.enter().args(["sh", "-c", &script]).output().unwrap()
    }

    /// A script that must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// chitin (with the context's --root) in this namespace.
    pub fn chitin(&self, ctx: &Ctx) -> Command {
        let mut c = self.enter();
        c.arg(bin()).arg("--root").arg(&ctx.root);
        c
    }

    /// `create` here; (exit code, stderr). The init keeps its stdio, so none is captured.
    pub fn create(&self, ctx: &Ctx, global: &[&str], b: &Bundle, id: &str) -> (i32, String) {
        b.save();
        let err_path = ctx.base.join(format!("create-{id}.err"));
        let st = self
            .chitin(ctx)
            .args(global)
            .args(["create", "-b"])
            .arg(&b.dir)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        let err = std::fs::read_to_string(&err_path).unwrap();
        (st.code().unwrap_or(-1), err)
    }

    /// `ip -br address` of the namespace: a line per interface, `NAME STATE ADDRESSES`.
    pub fn interfaces(&self) -> String {
        self.ok("ip -br address")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.file).status();
    }
}

/// The line of `ip -br address` for `name`, the `@peer` dropped.
fn line_of(listing: &str, name: &str) -> Option<String> {
    listing.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let first = words.next()?;
        (first.split('@').next() == Some(name)).then(|| words.collect::<Vec<_>>().join(" "))
    })
}

/// Two veth pairs on the test's "host": hv0 (up, an IPv4 and an IPv6 global address, both
/// permanent) and hv2 (down, no address), with their peers hv1 and hv3 up.
fn two_pairs(ns: &NetNs) {
    ns.ok(
        "ip link add hv0 type veth peer name hv1 && ip link add hv2 type veth peer name hv3 && \
         ip address add 10.9.0.1/24 dev hv0 && ip address add fd00::1/64 dev hv0 nodad && \
         ip link set hv0 up && ip link set hv1 up && ip link set hv3 up",
    );
}

fn bundle(ctx: &Ctx, devices: serde_json::Value) -> Bundle {
    let mut b = ctx.bundle("sleep 1000");
    b.config["linux"]["netDevices"] = devices;
    b
}

/// Interfaces named in the config are in the container under their new names (one picked by
/// the kernel from a template), with their addresses and up; gone from the host while it runs,
/// and, being veths, gone with it after delete.
pub fn interfaces_move_into_the_container() -> TestResult {
    let ctx = Ctx::new("netdev")?;
    let ns = NetNs::new(&ctx)?;
    two_pairs(&ns);
    let id = ctx.id();
    let b = bundle(
        &ctx,
        json!({"hv0": {"name": "eth7"}, "hv2": {"name": "net%d"}}),
    );
    let (code, err) = ns.create(&ctx, &[], &b, &id);
    assert_eq!(code, 0, "{err}");

    let host = ns.interfaces();
    assert!(
        line_of(&host, "hv0").is_none() && line_of(&host, "hv2").is_none(),
        "{host}"
    );
    // busybox's ip: a line per link (flags in <>), a line per address.
    let inside = ctx.exec_process(&id, &["sh", "-c", "ip -o link; ip -o address"]);
    let link = |name: &str| {
        let at = format!(": {name}");
        let line = inside
            .lines()
            .find(|l| l.contains(&format!("{at}:")) || l.contains(&format!("{at}@")));
        line.unwrap_or_else(|| panic!("no {name} inside: {inside}"))
            .to_owned()
    };
    assert!(link("eth7").contains(",UP"), "set up: {inside}");
    assert!(link("net0").contains(",UP"), "set up: {inside}");
    for addr in ["inet 10.9.0.1/24", "inet6 fd00::1/64"] {
        let on_eth7 = inside
            .lines()
            .any(|l| l.contains(" eth7 ") && l.contains(addr));
        assert!(on_eth7, "{addr} on eth7: {inside}");
    }
    assert!(
        !inside.contains("hv0") && !inside.contains("hv2"),
        "{inside}"
    );

    let out = ctx.chitin(&["delete", "-f", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The namespace dies after its last process, and its veths with it (their peers too).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut host = ns.interfaces();
    while line_of(&host, "hv1").is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        host = ns.interfaces();
    }
    assert!(
        line_of(&host, "hv1").is_none() && line_of(&host, "hv3").is_none(),
        "{host}"
    );
    assert!(
        line_of(&host, "eth7").is_none(),
        "not moved back on delete: {host}"
    );
    Ok(())
}

/// A device that cannot move (a bridge's namespace is fixed) fails the create, and the one moved
/// before it is back on the host, named, addressed and up as it was; so it is after a failure
/// later in the create (a prestart hook), and a config that shares the host's network namespace
/// is refused before anything moves.
pub fn a_failed_create_leaves_the_interfaces_as_they_were() -> TestResult {
    let ctx = Ctx::new("netdev-fail")?;
    let ns = NetNs::new(&ctx)?;
    two_pairs(&ns);
    if !ns.sh("ip link add zbr type bridge").status.success() {
        return skip("no bridge driver here");
    }
    let before = ns.interfaces();
    let hv0 = line_of(&before, "hv0").unwrap();

    let id = ctx.id();
    let b = bundle(&ctx, json!({"hv0": {"name": "eth7"}, "zbr": {}}));
    let (code, err) = ns.create(&ctx, &[], &b, &id);
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "linux.netDevices[\\\"zbr\\\"]: moving it into the container's network namespace"
        ) && err.contains("Invalid argument"),
        "{err}"
    );
    assert!(!ctx.root.join(&id).exists(), "state left behind");
    assert_eq!(line_of(&ns.interfaces(), "hv0").as_ref(), Some(&hv0));

    let id = ctx.id();
    let mut b = bundle(&ctx, json!({"hv0": {"name": "eth7"}}));
    b.config["hooks"] = json!({"prestart": [{"path": "/bin/false"}]});
    let (code, err) = ns.create(&ctx, &[], &b, &id);
    assert_ne!(code, 0, "the hook fails the create");
    assert!(err.contains("prestart"), "{err}");
    assert_eq!(line_of(&ns.interfaces(), "hv0").as_ref(), Some(&hv0));

    let mut b = bundle(&ctx, json!({"hv0": {}}));
    let namespaces = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    namespaces.retain(|n| n["type"] != "network");
    let (code, err) = ns.create(&ctx, &[], &b, &ctx.id());
    assert_ne!(code, 0);
    assert!(
        err.contains("linux.netDevices: needs a network namespace of the container's own"),
        "{err}"
    );
    // The same interfaces (a peer's operstate may settle meanwhile), hv0 as it was.
    let names = |l: &str| -> Vec<String> {
        l.lines()
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    let after = ns.interfaces();
    assert_eq!(names(&after), names(&before));
    assert_eq!(line_of(&after, "hv0").as_ref(), Some(&hv0));

    let features: serde_json::Value =
        serde_json::from_slice(&ctx.chitin(&["features"]).stdout).unwrap();
    assert_eq!(features["linux"]["netDevices"]["enabled"], true);
    Ok(())
}

/// A CDI device whose spec has `netDevices`, asked for by annotation: its interface is moved in
/// as one of the config's would be.
pub fn cdi_net_devices_by_annotation() -> TestResult {
    let ctx = Ctx::new("netdev-cdi")?;
    let ns = NetNs::new(&ctx)?;
    two_pairs(&ns);
    let dir = ctx.base.join("cdi");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = "cdiVersion: 1.1.0\nkind: test.chitin.dev/net\ndevices:\n- name: vf\n  \
                containerEdits:\n    netDevices: [{hostInterfaceName: hv0, name: net1}]\n";
    std::fs::write(dir.join("net.yaml"), spec).unwrap();
    let id = ctx.id();
    let mut b = ctx.bundle("sleep 1000");
    b.config["annotations"] = json!({"cdi.k8s.io/test_vf": "test.chitin.dev/net=vf"});
    let dirs = dir.display().to_string();
    let (code, err) = ns.create(&ctx, &["--cdi-spec-dirs", &dirs], &b, &id);
    assert_eq!(code, 0, "{err}");
    let inside = ctx.exec_process(&id, &["ip", "-o", "address", "show", "dev", "net1"]);
    assert!(inside.contains("inet 10.9.0.1/24"), "{inside}");
    assert!(line_of(&ns.interfaces(), "hv0").is_none());
    Ok(())
}
