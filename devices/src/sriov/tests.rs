//! VFs on a fake sysfs shaped like a real SR-IOV NIC's: PF ens1f0 (0000:3b:00.0) with four VFs
//! enabled of eight, VF 0 and 2 on the iavf driver (VF 2's interface is in another namespace, so
//! not in this sysfs), VF 1 on vfio-pci in IOMMU group 45, VF 3 bound to no driver.

use std::os::unix::fs::symlink;

use crate::testing::{Says, Tree, annotations, function, request};
use crate::vfio::Status;
use crate::{Action, DeviceError, Grant, Host};

const PF: &str = "0000:3b:00.0";

fn vf(index: u32) -> String {
    format!("0000:3b:02.{index}")
}

fn tree(name: &str) -> Tree {
    let t = Tree::new(&format!("sriov-{name}"));
    let root = t.0.as_path();
    let pci = root.join("sys/bus/pci/devices");
    function(root, PF, "40", Some("ice"), "0x020000");
    std::fs::write(pci.join(PF).join("sriov_totalvfs"), "8\n").unwrap();
    std::fs::write(pci.join(PF).join("sriov_numvfs"), "4\n").unwrap();
    std::fs::create_dir_all(pci.join(PF).join("net/ens1f0")).unwrap();
    let class = root.join("sys/class/net/ens1f0");
    std::fs::create_dir_all(&class).unwrap();
    symlink(
        format!("../../../bus/pci/devices/{PF}"),
        class.join("device"),
    )
    .unwrap();
    let drivers = [Some("iavf"), Some("vfio-pci"), Some("iavf"), None];
    for (i, driver) in drivers.into_iter().enumerate() {
        let addr = vf(i as u32);
        function(root, &addr, &(45 + i).to_string(), driver, "0x020000");
        symlink(
            format!("../{addr}"),
            pci.join(PF).join(format!("virtfn{i}")),
        )
        .unwrap();
        symlink(format!("../{PF}"), pci.join(&addr).join("physfn")).unwrap();
    }
    std::fs::create_dir_all(pci.join(vf(0)).join("net/ens1f0v0")).unwrap();
    std::fs::create_dir_all(pci.join(vf(2)).join("net")).unwrap();
    for (class, name, dev) in [("misc", "vfio", "10:196"), ("vfio", "46", "243:1")] {
        let d = root.join("sys/class").join(class).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dev"), dev).unwrap();
    }
    std::fs::create_dir_all(root.join("sys/kernel/mm/hugepages/hugepages-2048kB")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/meminfo"), "Hugepagesize: 2048 kB\n").unwrap();
    t
}

fn host(t: &Tree) -> Host {
    let mut h = Host::at(&t.0);
    h.vfio = Box::new(Says(Status::Viable));
    h
}

fn ask(host: &Host, pairs: &[(&str, &str)]) -> Result<Vec<Grant>, DeviceError> {
    let a = annotations(pairs);
    crate::resolve(host, &request(&a, 0, &[]))
}

fn moved(grants: &[Grant]) -> Vec<(String, Option<String>)> {
    grants
        .iter()
        .flat_map(|g| &g.net_devices)
        .map(|(h, d)| (h.clone(), d.name().clone()))
        .collect()
}

#[test]
fn a_vf_by_pf_and_index_or_by_address_becomes_its_interface() {
    let t = tree("net");
    let h = host(&t);
    for asked in ["ens1f0:0;name=net1", "0000:3b:02.0 ; name=net1"] {
        let g = ask(&h, &[(super::ANNOTATION, asked)]).unwrap();
        assert_eq!(
            moved(&g),
            [("ens1f0v0".into(), Some("net1".into()))],
            "{asked}"
        );
        assert!(g.iter().all(|g| g.devices.is_empty() && g.env.is_empty()));
    }
    let g = ask(&h, &[(super::ANNOTATION, "ens1f0:0")]).unwrap();
    assert_eq!(moved(&g), [("ens1f0v0".into(), None)]);
}

#[test]
fn a_vf_on_vfio_pci_goes_the_vfio_way() {
    let t = tree("vfio");
    let h = host(&t);
    let asked = [
        (super::ANNOTATION, "ens1f0:1,ens1f0:0"),
        (super::RESOURCE, "intel.com/sriov_dpdk"),
    ];
    let g = ask(&h, &asked).unwrap();
    assert_eq!(moved(&g), [("ens1f0v0".into(), None)]);
    let vfio = g.iter().find(|g| !g.devices.is_empty()).unwrap();
    let paths: Vec<String> = vfio
        .devices
        .iter()
        .map(|d| d.path().display().to_string())
        .collect();
    assert_eq!(paths, ["/dev/vfio/46", "/dev/vfio/vfio"]);
    assert_eq!(
        vfio.env,
        [format!("PCIDEVICE_INTEL_COM_SRIOV_DPDK={}", vf(1))]
    );
    // The VFIO memory grant (hugetlbfs, memlock) comes with it.
    assert!(g.iter().any(|g| g.fallback && !g.mounts.is_empty()));
}

#[test]
fn what_cannot_be_had_is_named() {
    let t = tree("bad");
    let h = host(&t);
    let cases = [
        (
            "ens1f0:2",
            "0000:3b:02.2 has no network interface in the host's namespace: in use by another container?",
        ),
        ("ens1f0:3", "ens1f0:3: 0000:3b:02.3 is bound to no driver"),
        (
            "ens1f0:5",
            "ens1f0:5: ens1f0 has no virtual function 5 (4 of 8 enabled in sriov_numvfs)",
        ),
        ("ens9:0", "ens9:0: no network interface ens9 on this host"),
        (
            "0000:3b:00.0",
            "0000:3b:00.0 is not an SR-IOV virtual function (it has no physfn)",
        ),
        (
            "0000:3b:07.0",
            "0000:3b:07.0: no such PCI function on this host",
        ),
        (
            "eth0",
            "\"eth0\" is neither a PCI address (0000:3b:02.1) nor PF:INDEX (ens1f0:3)",
        ),
        (
            "ens1f0:1;name=dpdk0",
            "ens1f0:1;name=dpdk0: 0000:3b:02.1 is bound to vfio-pci and has no interface to name",
        ),
        (
            "ens1f0:0;speed=10G",
            "\"speed=10G\" is not an option (name=IFNAME, mac=MAC, vlan=ID)",
        ),
        (
            "ens1f0:0;mac=03:00:00:00:00:01",
            "\"03:00:00:00:00:01\" is not a unicast MAC address (02:00:00:00:00:01)",
        ),
        (
            "ens1f0:0;mac=02:00:00:00:01",
            "\"02:00:00:00:01\" is not a unicast MAC address (02:00:00:00:00:01)",
        ),
        (
            "ens1f0:0;vlan=4095",
            "\"4095\" is not a VLAN id (0 to 4094)",
        ),
        (" , ", "names no virtual function"),
    ];
    for (asked, want) in cases {
        let e = ask(&h, &[(super::ANNOTATION, asked)]).err().unwrap();
        assert_eq!(e.annotation, super::ANNOTATION);
        assert!(e.reason.ends_with(want), "{asked}: {}", e.reason);
    }
    let e = ask(
        &h,
        &[(super::ANNOTATION, "ens1f0:0"), (super::RESOURCE, "x")],
    )
    .err()
    .unwrap();
    assert_eq!(
        (e.annotation.as_str(), e.reason.as_str()),
        (
            super::RESOURCE,
            "names the PCIDEVICE_ variable of VFs on vfio-pci, and none is"
        )
    );
    let e = ask(&h, &[(super::RESOURCE, "x")]).err().unwrap();
    assert_eq!(
        (e.annotation.as_str(), e.reason.as_str()),
        (super::RESOURCE, "needs org.chitin.devices.sriov")
    );
    // A group that another process holds open is VFIO's refusal, named by this annotation.
    let mut busy = host(&t);
    busy.vfio = Box::new(Says(Status::InUse));
    let e = ask(&busy, &[(super::ANNOTATION, "ens1f0:1")])
        .err()
        .unwrap();
    assert_eq!(e.annotation, super::ANNOTATION);
    assert!(
        e.reason.contains("is in use (open elsewhere)"),
        "{}",
        e.reason
    );
}

#[test]
fn mac_and_vlan_are_set_from_the_pf_side() {
    let t = tree("vf-config");
    let h = host(&t);
    let asked = "0000:3b:02.0;name=net1;mac=02:00:00:00:00:01;vlan=100,ens1f0:1;vlan=7";
    let g = ask(&h, &[(super::ANNOTATION, asked)]).unwrap();
    let actions: Vec<&Action> = g.iter().flat_map(|g| &g.actions).collect();
    assert_eq!(
        actions,
        [
            &Action::ConfigureVf {
                pf: "ens1f0".into(),
                vf: 0,
                mac: Some([2, 0, 0, 0, 0, 1]),
                vlan: Some(100),
                iface: Some("ens1f0v0".into()),
            },
            // A DPDK VF has no interface: its VLAN is the PF's to set all the same.
            &Action::ConfigureVf {
                pf: "ens1f0".into(),
                vf: 1,
                mac: None,
                vlan: Some(7),
                iface: None,
            },
        ]
    );
    assert_eq!(moved(&g), [("ens1f0v0".into(), Some("net1".into()))]);
}
