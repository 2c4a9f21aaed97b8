//! The moves against a fake rtnetlink of two namespaces, which records each request and fails
//! the ones a test names, as the kernel would.

mod vf;

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use super::*;

#[derive(Debug, Clone)]
struct FakeLink {
    link: Link,
    addresses: Vec<Address>,
    /// The kernel refuses to move it (NETIF_F_NETNS_LOCAL: a bridge, lo).
    local: bool,
}

#[derive(Default)]
struct Fake {
    host: Vec<FakeLink>,
    container: Vec<FakeLink>,
    log: Vec<String>,
    /// Requests ("add 10.0.0.1/24", "up eth1") that fail with EINVAL.
    failing: BTreeSet<String>,
    /// The VFs' settings, by (PF index, VF).
    vfs: std::collections::BTreeMap<(u32, u32), VfSettings>,
    /// RDMA devices on each side.
    rdma: (Vec<String>, Vec<String>),
}

/// The fake's state, seen after `attach` took it.
type Shared = std::rc::Rc<std::cell::RefCell<Fake>>;

struct Handle(Shared);

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl Fake {
    fn side(&mut self, s: Side) -> &mut Vec<FakeLink> {
        match s {
            Side::Host => &mut self.host,
            Side::Container => &mut self.container,
        }
    }
    fn at(&mut self, s: Side, index: u32) -> io::Result<&mut FakeLink> {
        let links = self.side(s);
        links
            .iter_mut()
            .find(|l| l.link.index == index)
            .ok_or_else(|| errno(libc::ENODEV))
    }
    fn fail(&mut self, what: String) -> io::Result<()> {
        let failed = self.failing.contains(&what);
        self.log.push(what);
        match failed {
            true => Err(errno(libc::EINVAL)),
            false => Ok(()),
        }
    }
}

impl Netlink for Handle {
    fn link(&mut self, side: Side, name: &str) -> io::Result<Option<Link>> {
        let mut f = self.0.borrow_mut();
        let l = f.side(side).iter().find(|l| l.link.name == name);
        Ok(l.map(|l| l.link.clone()))
    }
    fn links(&mut self, side: Side) -> io::Result<Vec<Link>> {
        let mut f = self.0.borrow_mut();
        Ok(f.side(side).iter().map(|l| l.link.clone()).collect())
    }
    fn addresses(&mut self, side: Side, index: u32) -> io::Result<Vec<Address>> {
        Ok(self.0.borrow_mut().at(side, index)?.addresses.clone())
    }
    fn add_address(&mut self, side: Side, index: u32, a: &Address) -> io::Result<()> {
        let mut f = self.0.borrow_mut();
        f.fail(format!("{side:?}: add {} to {index}", a.shown()))?;
        let l = f.at(side, index)?;
        if l.addresses.iter().any(|b| b.shown() == a.shown()) {
            return Err(errno(libc::EEXIST));
        }
        l.addresses.push(a.clone());
        Ok(())
    }
    fn set_up(&mut self, side: Side, index: u32, up: bool) -> io::Result<()> {
        let mut f = self.0.borrow_mut();
        f.fail(format!(
            "{side:?}: {} {index}",
            if up { "up" } else { "down" }
        ))?;
        f.at(side, index)?.link.up = up;
        Ok(())
    }
    fn vf(&mut self, pf: u32, vf: u32) -> io::Result<Option<VfSettings>> {
        Ok(self.0.borrow().vfs.get(&(pf, vf)).copied())
    }
    fn set_vf(&mut self, pf: u32, vf: u32, to: &VfChange) -> io::Result<()> {
        let mut f = self.0.borrow_mut();
        f.fail(format!(
            "vf {vf} of {pf}: mac {:02x?} vlan {:?}",
            to.mac, to.vlan
        ))?;
        let s = f
            .vfs
            .get_mut(&(pf, vf))
            .ok_or_else(|| errno(libc::EINVAL))?;
        if let Some(m) = to.mac {
            s.mac = m;
        }
        if let Some((v, q)) = to.vlan {
            (s.vlan, s.qos) = (v, q);
        }
        Ok(())
    }
    fn set_mac(&mut self, side: Side, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut f = self.0.borrow_mut();
        f.fail(format!("{side:?}: mac {index} {mac:02x?}"))?;
        f.at(side, index)?.link.mac = Some(mac);
        Ok(())
    }
    fn move_rdma(&mut self, from: Side, device: &str) -> io::Result<()> {
        let mut f = self.0.borrow_mut();
        f.fail(format!("{from:?}: move rdma {device}"))?;
        let (host, container) = &mut f.rdma;
        let (here, there) = match from {
            Side::Host => (host, container),
            Side::Container => (container, host),
        };
        let i = here
            .iter()
            .position(|d| d == device)
            .ok_or_else(|| errno(libc::ENODEV))?;
        there.push(here.remove(i));
        Ok(())
    }
    /// As the kernel does it: down, addresses dropped, moved, then renamed in the target (so a
    /// taken name leaves it moved under its old one).
    fn move_link(&mut self, from: Side, index: u32, name: &str) -> io::Result<()> {
        let mut f = self.0.borrow_mut();
        f.fail(format!("{from:?}: move {index} as {name}"))?;
        if f.at(from, index)?.local {
            return Err(errno(libc::EINVAL));
        }
        let links = f.side(from);
        let i = links.iter().position(|l| l.link.index == index).unwrap();
        let mut l = links.remove(i);
        l.link.up = false;
        l.addresses.retain(|a| a.scope == libc::RT_SCOPE_HOST);
        let there = f.side(match from {
            Side::Host => Side::Container,
            Side::Container => Side::Host,
        });
        let taken = |n: &str| there.iter().any(|o| o.link.name == n);
        let name = match name.split_once("%d") {
            Some((a, b)) => (0..)
                .map(|n| format!("{a}{n}{b}"))
                .find(|n| !taken(n))
                .unwrap(),
            None => name.to_owned(),
        };
        let renamed = !taken(&name);
        if renamed {
            l.link.name = name;
        }
        there.push(l);
        match renamed {
            true => Ok(()),
            false => Err(errno(libc::EEXIST)),
        }
    }
}

fn v4(ip: &str, prefix: u8, flags: u32, scope: u8, label: Option<&str>) -> Address {
    let ip: IpAddr = ip.parse().unwrap();
    Address {
        family: libc::AF_INET as u8,
        prefix_len: prefix,
        scope,
        flags,
        local: Some(ip),
        address: Some(ip),
        broadcast: None,
        label: label.map(String::from),
    }
}

fn v6(ip: &str, flags: u32, scope: u8) -> Address {
    Address {
        family: libc::AF_INET6 as u8,
        local: None,
        label: None,
        ..v4(ip, 64, flags, scope, None)
    }
}

const PERM: u32 = libc::IFA_F_PERMANENT;
const GLOBAL: u8 = libc::RT_SCOPE_UNIVERSE;
const LINK: u8 = libc::RT_SCOPE_LINK;

fn link(index: u32, name: &str, up: bool, addresses: Vec<Address>) -> FakeLink {
    FakeLink {
        link: Link {
            index,
            name: name.into(),
            up,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
        },
        addresses,
        local: false,
    }
}

/// A host with veth0 (up; a permanent global IPv4 address with an alias label, a permanent
/// global and a link-local IPv6 one, and a learned global one), veth1 (down, no address) and a
/// bridge; the container has lo.
fn fake() -> Shared {
    let veth0 = vec![
        v4("10.0.0.2", 24, PERM, GLOBAL, Some("veth0:web")),
        v6("fd00::2", PERM, GLOBAL),
        v6("fe80::2", PERM, LINK),
        v6("2001:db8::2", 0, GLOBAL),
    ];
    let mut bridge = link(9, "br0", true, vec![]);
    bridge.local = true;
    let lo = vec![v4("127.0.0.1", 8, PERM, libc::RT_SCOPE_HOST, Some("lo"))];
    Shared::new(
        Fake {
            host: vec![
                link(5, "veth0", true, veth0),
                link(7, "veth1", false, vec![]),
                bridge,
            ],
            container: vec![link(1, "lo", true, lo)],
            ..Default::default()
        }
        .into(),
    )
}

fn dev(host: &str, name: &str) -> NetDevice {
    NetDevice {
        host: host.into(),
        name: name.into(),
    }
}

fn names(links: &[FakeLink]) -> Vec<(&str, u32, bool)> {
    links
        .iter()
        .map(|l| (l.link.name.as_str(), l.link.index, l.link.up))
        .collect()
}

fn shown(l: &FakeLink) -> Vec<String> {
    let label = |a: &Address| a.label.clone().map(|l| format!(" {l}")).unwrap_or_default();
    l.addresses
        .iter()
        .map(|a| format!("{}{}", a.shown(), label(a)))
        .collect()
}

#[test]
fn moved_renamed_readdressed_and_up() {
    let f = fake();
    let a = attach(
        Box::new(Handle(f.clone())),
        &[dev("veth0", "eth1"), dev("veth1", "net%d")],
        &[],
    )
    .unwrap();
    a.keep();
    let f = f.borrow();
    assert_eq!(names(&f.host), [("br0", 9, true)]);
    assert_eq!(
        names(&f.container),
        [("lo", 1, true), ("eth1", 5, true), ("net0", 7, true)]
    );
    // Only what is permanent and global comes along, the label following the rename.
    assert_eq!(
        shown(&f.container[1]),
        ["10.0.0.2/24 eth1:web", "fd00::2/64"]
    );
    assert_eq!(
        f.log,
        [
            "Host: move 5 as eth1",
            "Container: add 10.0.0.2/24 to 5",
            "Container: add fd00::2/64 to 5",
            "Container: up 5",
            "Host: move 7 as net%d",
            "Container: up 7",
        ]
    );
}

/// A device that cannot move fails the create, and those moved before it come back as they
/// were: name, up state, permanent addresses.
#[test]
fn a_failure_puts_back_what_was_moved() {
    let f = fake();
    let before = f.borrow().host.clone();
    let e = attach(
        Box::new(Handle(f.clone())),
        &[
            dev("veth0", "eth1"),
            dev("veth1", "eth2"),
            dev("br0", "eth3"),
        ],
        &[],
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "linux.netDevices[\"br0\"]: moving it into the container's network namespace: \
         Invalid argument (os error 22)"
    );
    let f = f.borrow();
    assert_eq!(names(&f.container), [("lo", 1, true)]);
    let mut host = names(&f.host);
    host.sort();
    assert_eq!(
        host,
        [("br0", 9, true), ("veth0", 5, true), ("veth1", 7, false)]
    );
    let veth0 = f.host.iter().find(|l| l.link.name == "veth0").unwrap();
    // The learned address is the kernel's to give back (by SLAAC), not chitin's.
    let mut want = shown(&before[0]);
    want.pop();
    assert_eq!(shown(veth0), want);
}

#[test]
fn a_later_failure_of_the_create_puts_them_back_too() {
    let f = fake();
    let a = attach(Box::new(Handle(f.clone())), &[dev("veth0", "eth1")], &[]).unwrap();
    drop(a);
    let f = f.borrow();
    assert_eq!(names(&f.container), [("lo", 1, true)]);
    assert_eq!(
        f.host.iter().find(|l| l.link.index == 5).unwrap().link.name,
        "veth0"
    );
    assert_eq!(f.log.last().unwrap(), "Host: up 5");
}

#[test]
fn an_address_that_fails_fails_the_device_and_it_comes_back() {
    let f = fake();
    f.borrow_mut()
        .failing
        .insert("Container: add fd00::2/64 to 5".into());
    let e = attach(Box::new(Handle(f.clone())), &[dev("veth0", "eth1")], &[])
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .starts_with("linux.netDevices[\"veth0\"]: adding its address fd00::2/64: "),
        "{e}"
    );
    let f = f.borrow();
    assert_eq!(names(&f.container), [("lo", 1, true)]);
    assert!(f.host.iter().any(|l| l.link.name == "veth0" && l.link.up));
}

/// A name taken in the container is refused before the move; should the kernel's rename fail
/// after the move all the same (a race), the device is found on the other side and put back.
#[test]
fn a_taken_name_never_strands_the_device() {
    let f = fake();
    let e = attach(Box::new(Handle(f.clone())), &[dev("veth0", "lo")], &[])
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("naming it \"lo\" in the container: File exists"),
        "{e}"
    );
    assert!(!f.borrow().log.iter().any(|l| l.contains("move")));

    let f = fake();
    let nl = Handle(f.clone());
    // What the fake's kernel does if the name appears between the check and the move.
    struct Racing(Handle, bool);
    impl Netlink for Racing {
        fn link(&mut self, s: Side, n: &str) -> io::Result<Option<Link>> {
            self.0.link(s, n)
        }
        fn links(&mut self, s: Side) -> io::Result<Vec<Link>> {
            self.0.links(s)
        }
        fn addresses(&mut self, s: Side, i: u32) -> io::Result<Vec<Address>> {
            self.0.addresses(s, i)
        }
        fn add_address(&mut self, s: Side, i: u32, a: &Address) -> io::Result<()> {
            self.0.add_address(s, i, a)
        }
        fn set_up(&mut self, s: Side, i: u32, up: bool) -> io::Result<()> {
            self.0.set_up(s, i, up)
        }
        fn vf(&mut self, pf: u32, vf: u32) -> io::Result<Option<VfSettings>> {
            self.0.vf(pf, vf)
        }
        fn set_vf(&mut self, pf: u32, vf: u32, to: &VfChange) -> io::Result<()> {
            self.0.set_vf(pf, vf, to)
        }
        fn set_mac(&mut self, side: Side, i: u32, mac: [u8; 6]) -> io::Result<()> {
            self.0.set_mac(side, i, mac)
        }
        fn move_rdma(&mut self, from: Side, d: &str) -> io::Result<()> {
            self.0.move_rdma(from, d)
        }
        fn move_link(&mut self, from: Side, i: u32, n: &str) -> io::Result<()> {
            if std::mem::take(&mut self.1) {
                let c = &mut self.0.0.borrow_mut().container;
                c.push(link(3, n, false, vec![]));
            }
            self.0.move_link(from, i, n)
        }
    }
    nl.0.borrow_mut().log.clear();
    let e = attach(Box::new(Racing(nl, true)), &[dev("veth0", "eth1")], &[])
        .err()
        .unwrap();
    assert!(e.to_string().contains("moving it into"), "{e}");
    let f = f.borrow();
    assert_eq!(names(&f.container), [("lo", 1, true), ("eth1", 3, false)]);
    assert!(f.host.iter().any(|l| l.link.name == "veth0" && l.link.up));
}

/// In the RDMA subsystem's exclusive mode the device follows into the container; one that
/// cannot move (soft RoCE's rxe: EOPNOTSUPP) fails the create, and the interfaces go back.
#[test]
fn rdma_devices_move_in_after_the_interfaces() {
    let f = fake();
    f.borrow_mut().rdma.0 = vec!["mlx5_0".into(), "rxe0".into()];
    let a = attach(
        Box::new(Handle(f.clone())),
        &[dev("veth0", "eth1")],
        &[("mlx5_0".into(), "org.chitin.devices.rdma".into())],
    )
    .unwrap();
    assert_eq!(
        f.borrow().rdma,
        (vec!["rxe0".into()], vec!["mlx5_0".into()])
    );
    drop(a);
    assert_eq!(f.borrow().rdma.0, ["rxe0", "mlx5_0"]);

    f.borrow_mut().failing.insert("Host: move rdma rxe0".into());
    let e = attach(
        Box::new(Handle(f.clone())),
        &[dev("veth0", "eth1")],
        &[
            ("mlx5_0".into(), "org.chitin.devices.rdma".into()),
            ("rxe0".into(), "org.chitin.devices.rdma".into()),
        ],
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().starts_with(
            "annotations[\"org.chitin.devices.rdma\"]: moving the RDMA device rxe0 into the container's network namespace: "
        ),
        "{e}"
    );
    let f = f.borrow();
    assert_eq!(f.rdma.1, Vec::<String>::new());
    assert!(f.host.iter().any(|l| l.link.name == "veth0" && l.link.up));
}
