//! VF settings on the PF's side, against the fake: veth0 (index 5) stands in for the PF, with
//! two VFs, veth1 (index 7) for VF 0's own interface.

use super::{Handle, Shared, fake};
use crate::netdev::{VfSettings, vf};

fn configure_vf(vf: u32, mac: Option<[u8; 6]>, vlan: Option<u16>) -> chitin_devices::Action {
    chitin_devices::Action::ConfigureVf {
        pf: "veth0".into(),
        vf,
        mac,
        vlan,
        iface: mac.map(|_| "veth1".into()),
    }
}

/// A VF's settings with no MAC.
fn blank(vlan: u16, qos: u32) -> VfSettings {
    VfSettings {
        mac: [0; 6],
        vlan,
        qos,
    }
}

/// VF 0 untagged with no MAC, VF 1 on VLAN 3 with QoS 2.
fn with_vfs() -> Shared {
    let f = fake();
    f.borrow_mut().vfs.insert((5, 0), blank(0, 0));
    f.borrow_mut().vfs.insert((5, 1), blank(3, 2));
    f
}

/// Configures, keeping what is recorded last (what the record would hold).
fn configure(
    f: &Shared,
    actions: &[chitin_devices::Action],
) -> Result<(vf::Configured, Vec<vf::VfState>), String> {
    let mut recorded = Vec::new();
    let mut persist = |s: &[vf::VfState]| {
        recorded = s.to_vec();
        Ok(())
    };
    let c = vf::configure(Box::new(Handle(f.clone())), actions, &mut persist);
    c.map(|c| (c, recorded)).map_err(|e| e.to_string())
}

#[test]
fn only_what_is_asked_is_set_and_put_back() {
    let f = with_vfs();
    let mac = [2, 0, 0, 0, 0, 9];
    let actions = [
        configure_vf(0, Some(mac), Some(100)),
        configure_vf(1, None, Some(7)),
    ];
    let (mut sizes, mut recorded) = (Vec::new(), Vec::new());
    let mut persist = |s: &[vf::VfState]| {
        sizes.push(s.len());
        recorded = s.to_vec();
        Ok(())
    };
    let c = vf::configure(Box::new(Handle(f.clone())), &actions, &mut persist).unwrap();
    // Recorded before each is made: a create killed between them leaves the first recorded.
    assert_eq!(sizes, [1, 2]);
    c.keep();
    {
        let f = f.borrow();
        assert_eq!((f.vfs[&(5, 0)].mac, f.vfs[&(5, 0)].vlan), (mac, 100));
        // VF 1: its MAC untouched, its QoS kept.
        assert_eq!(f.vfs[&(5, 1)], blank(7, 2));
        assert_eq!(
            f.log,
            [
                "vf 0 of 5: mac Some([02, 00, 00, 00, 00, 09]) vlan Some((100, 0))",
                "Host: mac 7 [02, 00, 00, 00, 00, 09]",
                "vf 1 of 5: mac None vlan Some((7, 2))",
            ]
        );
        assert_eq!(f.host[1].link.mac, Some(mac));
    }
    // What delete does with the record.
    vf::restore(&mut Handle(f.clone()), &recorded).unwrap();
    let f = f.borrow();
    assert_eq!(f.vfs[&(5, 0)], blank(0, 0));
    assert_eq!(f.vfs[&(5, 1)], blank(3, 2));
}

/// Another container may have the VF by the time this one is deleted: what it set stays.
#[test]
fn delete_leaves_what_changed_since() {
    let f = with_vfs();
    let (c, recorded) = configure(&f, &[configure_vf(1, None, Some(7))]).unwrap();
    c.keep();
    f.borrow_mut().vfs.get_mut(&(5, 1)).unwrap().vlan = 9;
    vf::restore(&mut Handle(f.clone()), &recorded).unwrap();
    assert_eq!(f.borrow().vfs[&(5, 1)].vlan, 9);
}

#[test]
fn a_setting_that_fails_puts_back_the_others_and_the_interface_s_mac() {
    let f = with_vfs();
    f.borrow_mut()
        .failing
        .insert("vf 1 of 5: mac None vlan Some((7, 2))".into());
    let mac = [2, 0, 0, 0, 0, 9];
    let e = configure(
        &f,
        &[
            configure_vf(0, Some(mac), Some(100)),
            configure_vf(1, None, Some(7)),
        ],
    )
    .err()
    .unwrap();
    assert_eq!(
        e,
        "annotations[\"org.chitin.devices.sriov\"]: VF 1 of veth0: setting its MAC and VLAN: \
         Invalid argument (os error 22)"
    );
    let f = f.borrow();
    assert_eq!(f.vfs[&(5, 0)], blank(0, 0));
    assert_eq!(f.vfs[&(5, 1)].vlan, 3);
    assert_eq!(
        f.host[1].link.mac,
        Some([2, 0, 0, 0, 0, 7]),
        "veth1's own MAC back"
    );
    let e = configure(&with_vfs(), &[configure_vf(4, None, Some(1))])
        .err()
        .unwrap();
    assert!(e.contains("VF 4 of veth0: reading its settings"), "{e}");
}
