//! SR-IOV virtual functions' settings on their physical function's side (org.chitin.devices.sriov's
//! `mac=` and `vlan=`), as the SR-IOV CNI sets them: the PF's administrative MAC and VLAN for
//! the VF, which the container cannot change from inside, and the MAC on the VF's own interface
//! too, which some drivers take only so. What they were is kept in the container's record and
//! put back when it is deleted (the VF's own interface, gone with the container, keeps its MAC
//! until its driver resets it).

use serde::{Deserialize, Serialize};

use chitin_devices::Action;

use super::{NetDevError, Netlink, Side, VfSettings};

/// A VF's settings before chitin changed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfState {
    pub pf: String,
    pub vf: u32,
    pub before: VfSettings,
}

const AT: &str = "annotations[\"org.chitin.devices.sriov\"]";

/// Settings made, put back on drop unless kept.
pub struct Configured {
    nl: Box<dyn Netlink>,
    before: Vec<VfState>,
}

/// Makes the settings of each ConfigureVf action, in order; on a failure, those made go back
/// first.
pub fn configure(nl: Box<dyn Netlink>, actions: &[Action]) -> Result<Configured, NetDevError> {
    let mut c = Configured {
        nl,
        before: Vec::new(),
    };
    for a in actions {
        let Action::ConfigureVf { pf, vf, .. } = a else {
            continue;
        };
        if let Err((what, source)) = c.configure_one(a) {
            let undo = match restore(c.nl.as_mut(), &std::mem::take(&mut c.before)) {
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

impl Configured {
    fn configure_one(&mut self, a: &Action) -> Result<(), (String, std::io::Error)> {
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
        let gone = || std::io::Error::from_raw_os_error(libc::ENODEV);
        let pf = nl
            .link(Side::Host, pf_name)
            .and_then(|l| l.ok_or_else(gone))
            .map_err(|e| ("its physical function".to_owned(), e))?;
        let before = nl
            .vf(pf.index, *vf)
            .and_then(|s| s.ok_or_else(gone))
            .map_err(|e| ("reading its settings".to_owned(), e))?;
        let after = VfSettings {
            mac: mac.unwrap_or(before.mac),
            vlan: vlan.unwrap_or(before.vlan),
        };
        self.before.push(VfState {
            pf: pf_name.clone(),
            vf: *vf,
            before,
        });
        nl.set_vf(pf.index, *vf, &after)
            .map_err(|e| ("setting its MAC and VLAN".to_owned(), e))?;
        if let (Some(mac), Some(iface)) = (mac, iface) {
            let l = nl
                .link(Side::Host, iface)
                .and_then(|l| l.ok_or_else(gone))
                .map_err(|e| (format!("its interface {iface}"), e))?;
            nl.set_mac(Side::Host, l.index, *mac)
                .map_err(|e| (format!("the MAC of its interface {iface}"), e))?;
        }
        Ok(())
    }

    /// What the VFs' settings were, for the record.
    pub fn before(&self) -> &[VfState] {
        &self.before
    }

    /// The create succeeded: the settings stay.
    pub fn keep(mut self) {
        self.before.clear();
    }
}

impl Drop for Configured {
    fn drop(&mut self) {
        let _ = restore(self.nl.as_mut(), &std::mem::take(&mut self.before));
    }
}

/// Puts VFs' settings back as `states` says they were, the last first; what failed, if anything.
pub fn restore(nl: &mut dyn Netlink, states: &[VfState]) -> Result<(), String> {
    let mut failed = Vec::new();
    for s in states.iter().rev() {
        let put = nl.link(Side::Host, &s.pf).and_then(|l| match l {
            Some(pf) => nl.set_vf(pf.index, s.vf, &s.before),
            None => Err(std::io::Error::from_raw_os_error(libc::ENODEV)),
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
