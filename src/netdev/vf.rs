//! SR-IOV virtual functions' settings on their physical function's side (org.chitin.devices.sriov's
//! `mac=` and `vlan=`), as the SR-IOV CNI sets them: the PF's administrative MAC and VLAN for
//! the VF, which the container cannot change from inside, and the MAC on the VF's own interface
//! too, which some drivers take only so. Only what is asked for is sent (a VLAN alone leaves the
//! MAC as it is; the VLAN's QoS stays). What each setting was goes into the container's record
//! before it is made; a failed create puts everything back, the interface's MAC too, and
//! `delete` puts back the PF's side where it is still what chitin set (another container may
//! have the VF by then). The VF's interface, which left with the container, keeps its MAC until
//! its driver resets it.

use serde::{Deserialize, Serialize};

use chitin_devices::Action;

use super::{NetDevError, Netlink, Side, VfChange};

/// A setting as it was, and as chitin made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    pub before: T,
    pub after: T,
}

/// What chitin changed of a VF: its MAC, its VLAN with QoS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfState {
    pub pf: String,
    pub vf: u32,
    pub mac: Option<Change<[u8; 6]>>,
    pub vlan: Option<Change<(u16, u32)>>,
}

const AT: &str = "annotations[\"org.chitin.devices.sriov\"]";

/// Settings made, put back on drop unless kept.
pub struct Configured {
    nl: Box<dyn Netlink>,
    states: Vec<VfState>,
    /// VFs' own interfaces whose MAC changed, with the MAC they had.
    ifaces: Vec<(String, [u8; 6])>,
}

type Failed = (String, std::io::Error);

/// Makes the settings of each ConfigureVf action, in order, `persist`ing what they were before
/// each is made; on a failure, those made go back first.
pub fn configure(
    nl: Box<dyn Netlink>,
    actions: &[Action],
    persist: &mut dyn FnMut(&[VfState]) -> std::io::Result<()>,
) -> Result<Configured, NetDevError> {
    let mut c = Configured {
        nl,
        states: Vec::new(),
        ifaces: Vec::new(),
    };
    for a in actions {
        let Action::ConfigureVf { pf, vf, .. } = a else {
            continue;
        };
        if let Err((what, source)) = c.configure_one(a, persist) {
            let undo = match c.restore() {
                Ok(()) => String::new(),
                Err(e) => format!("; and putting back {e}"),
            };
            return Err(NetDevError {
                at: AT.into(),
                what: format!("VF {vf} of {pf}: {what}"),
                source,
                undo,
            });
        }
    }
    Ok(c)
}

fn gone() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENODEV)
}

impl Configured {
    fn configure_one(
        &mut self,
        a: &Action,
        persist: &mut dyn FnMut(&[VfState]) -> std::io::Result<()>,
    ) -> Result<(), Failed> {
        let Action::ConfigureVf {
            pf: pf_name,
            vf,
            mac,
            vlan,
            iface,
        } = a
        else {
            return Ok(());
        };
        let nl = &mut self.nl;
        let pf = nl
            .link(Side::Host, pf_name)
            .and_then(|l| l.ok_or_else(gone))
            .map_err(|e| ("its physical function".to_owned(), e))?;
        let now = nl
            .vf(pf.index, *vf)
            .and_then(|s| s.ok_or_else(gone))
            .map_err(|e| ("reading its settings".to_owned(), e))?;
        let state = VfState {
            pf: pf_name.clone(),
            vf: *vf,
            mac: mac.map(|m| Change {
                before: now.mac,
                after: m,
            }),
            vlan: vlan.map(|v| Change {
                before: (now.vlan, now.qos),
                after: (v, now.qos),
            }),
        };
        let to = VfChange {
            mac: state.mac.map(|c| c.after),
            vlan: state.vlan.map(|c| c.after),
        };
        self.states.push(state);
        persist(&self.states).map_err(|e| ("recording its settings".to_owned(), e))?;
        nl.set_vf(pf.index, *vf, &to)
            .map_err(|e| ("setting its MAC and VLAN".to_owned(), e))?;
        if let (Some(mac), Some(iface)) = (mac, iface) {
            let what = || format!("the MAC of its interface {iface}");
            let l = nl
                .link(Side::Host, iface)
                .and_then(|l| l.ok_or_else(gone))
                .map_err(|e| (what(), e))?;
            nl.set_mac(Side::Host, l.index, *mac)
                .map_err(|e| (what(), e))?;
            if let Some(old) = l.mac {
                self.ifaces.push((iface.clone(), old));
            }
        }
        Ok(())
    }

    /// Everything back as it was: the interfaces' MACs, then the PF's side.
    fn restore(&mut self) -> Result<(), String> {
        let mut failed = Vec::new();
        while let Some((iface, mac)) = self.ifaces.pop() {
            let put = self.nl.link(Side::Host, &iface).and_then(|l| match l {
                Some(l) => self.nl.set_mac(Side::Host, l.index, mac),
                None => Err(gone()),
            });
            if let Err(e) = put {
                failed.push(format!("the MAC of {iface}: {e}"));
            }
        }
        if let Err(e) = restore(self.nl.as_mut(), &std::mem::take(&mut self.states)) {
            failed.push(e);
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join(", ")),
        }
    }

    /// The create succeeded: the settings stay (the record has them).
    pub fn keep(mut self) {
        self.states.clear();
        self.ifaces.clear();
    }
}

/// A later step of the create failed: its own error is the one reported; what could not be put
/// back is said beside it.
impl Drop for Configured {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            crate::logger::warn(&format!("{AT}: putting back {e}"));
        }
    }
}

/// Puts the PF's side of VFs back as `states` says it was, the last first, each setting only
/// where it is still what chitin made; what failed, if anything.
pub fn restore(nl: &mut dyn Netlink, states: &[VfState]) -> Result<(), String> {
    let mut failed = Vec::new();
    for s in states.iter().rev() {
        let put = nl.link(Side::Host, &s.pf).and_then(|pf| {
            let pf = pf.ok_or_else(gone)?;
            let Some(now) = nl.vf(pf.index, s.vf)? else {
                return Err(gone());
            };
            let back = VfChange {
                mac: s.mac.filter(|c| c.after == now.mac).map(|c| c.before),
                vlan: s
                    .vlan
                    .filter(|c| c.after == (now.vlan, now.qos))
                    .map(|c| c.before),
            };
            match back.mac.is_some() || back.vlan.is_some() {
                true => nl.set_vf(pf.index, s.vf, &back),
                false => Ok(()),
            }
        });
        if let Err(e) = put {
            failed.push(format!("VF {} of {}: {e}", s.vf, s.pf));
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join(", ")),
    }
}
