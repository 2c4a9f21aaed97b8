//! `linux.netDevices` (runtime-spec 1.3): host interfaces moved into the container's network
//! namespace, each under the name it has there. Names are checked as the kernel's
//! dev_valid_name checks them, so that a bad one fails here and not halfway through the moves.

use std::collections::BTreeMap;

use super::host::Host;
use super::{Namespaces, NsKind, PlanError};

/// One interface to move: its name on the host, and in the container (which may be a template
/// with one `%d`, for the kernel to fill in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    pub host: String,
    pub name: String,
}

/// The planned moves, in the order of the host names (the config's map has no order).
pub fn plan(
    linux: &oci_spec::runtime::Linux,
    ns: &Namespaces,
    host: &dyn Host,
) -> Result<Vec<NetDevice>, PlanError> {
    let Some(map) = linux.net_devices().as_ref().filter(|m| !m.is_empty()) else {
        return Ok(Vec::new());
    };
    if !ns.is_new(NsKind::Net) {
        return Err(PlanError::field(
            "linux.netDevices",
            "needs a network namespace of the container's own: not the host's, nor a joined one",
        ));
    }
    if !host.is_root() {
        return Err(PlanError::field(
            "linux.netDevices",
            "moving host interfaces needs chitin run as root; a rootless container cannot",
        ));
    }
    let sorted: BTreeMap<&String, _> = map.iter().collect();
    let mut taken: BTreeMap<String, &String> = BTreeMap::new();
    let mut out = Vec::with_capacity(map.len());
    for (host_name, dev) in sorted {
        let field = format!("linux.netDevices[{host_name:?}]");
        valid_name(host_name, false).map_err(|r| PlanError::field(&field, r))?;
        if host.interface_index(host_name).is_none() {
            return Err(PlanError::field(&field, "no such interface on the host"));
        }
        let name = dev.name().clone().unwrap_or_else(|| host_name.clone());
        let name_field = format!("{field}.name");
        valid_name(&name, true).map_err(|r| PlanError::field(&name_field, r))?;
        if name == "lo" {
            return Err(PlanError::field(
                &name_field,
                "\"lo\" exists in every new network namespace",
            ));
        }
        if !name.contains('%') {
            if let Some(other) = taken.insert(name.clone(), host_name) {
                return Err(PlanError::field(
                    &name_field,
                    format!("{name:?} is also the name of {other:?} in the container"),
                ));
            }
        }
        out.push(NetDevice {
            host: host_name.clone(),
            name,
        });
    }
    Ok(out)
}

/// The kernel's rule for an interface name: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or
/// white space; a template (where allowed) has one `%`, and it is `%d`.
fn valid_name(name: &str, template: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{name:?} is not a valid interface name: {why}"));
    if name.is_empty() || name.len() > 15 {
        return bad("it needs 1 to 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("it is a path component");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_ascii_whitespace() || c == '\x0b')
    {
        return bad("no '/', ':' or white space");
    }
    match name.matches('%').count() {
        0 => Ok(()),
        1 if template && name.contains("%d") => Ok(()),
        _ if template => bad("a template has one %d and no other '%'"),
        _ => bad("a host interface has no '%'"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::host::FakeHost;
    use super::super::tests::{base, fails, on};
    use super::NetDevice;

    fn host() -> FakeHost {
        let mut h = FakeHost::bundle();
        h.interfaces
            .extend(["veth0", "veth1", "ens1f0v3"].map(String::from));
        h
    }

    fn with(devices: serde_json::Value) -> serde_json::Value {
        let mut c = base();
        c["linux"]["netDevices"] = devices;
        c
    }

    #[test]
    fn entries_plan_in_host_name_order_with_their_names() {
        let c =
            with(json!({"veth1": {"name": "net%d"}, "veth0": {}, "ens1f0v3": {"name": "eth1"}}));
        let p = on(&host(), c).unwrap();
        let got: Vec<(&str, &str)> = p
            .net_devices
            .iter()
            .map(|NetDevice { host, name }| (host.as_str(), name.as_str()))
            .collect();
        assert_eq!(
            got,
            [("ens1f0v3", "eth1"), ("veth0", "veth0"), ("veth1", "net%d")]
        );
    }

    #[test]
    fn the_container_needs_a_network_namespace_of_its_own() {
        let mut c = with(json!({"veth0": {}}));
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        let own = "linux.netDevices: needs a network namespace of the container's own";
        fails(&host(), c.clone(), own);
        let mut h = host();
        h.files.insert("/run/netns/x".into(), String::new());
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "network", "path": "/run/netns/x"}));
        fails(&h, c, own);
    }

    #[test]
    fn rootless_runtimes_cannot_move_interfaces() {
        let mut h = host();
        h.rootless = true;
        fails(&h, with(json!({"veth0": {}})), "needs chitin run as root");
    }

    #[test]
    fn names_are_checked_as_the_kernel_checks_them() {
        let h = host();
        let cases = [
            (
                json!({"veth0": {"name": "a-name-of-16-chr"}}),
                "[\"veth0\"].name: \"a-name-of-16-chr\" is not a valid interface name: it needs 1 to 15 bytes",
            ),
            (
                json!({"veth0": {"name": "eth 0"}}),
                "no '/', ':' or white space",
            ),
            (
                json!({"veth0": {"name": "eth:0"}}),
                "no '/', ':' or white space",
            ),
            (json!({"veth0": {"name": ".."}}), "it is a path component"),
            (json!({"veth0": {"name": "e%d%d"}}), "a template has one %d"),
            (json!({"veth0": {"name": "e%s"}}), "a template has one %d"),
            (
                json!({"veth%d": {}}),
                "[\"veth%d\"]: \"veth%d\" is not a valid interface name: a host interface has no '%'",
            ),
            (
                json!({"veth0": {"name": "lo"}}),
                "\"lo\" exists in every new network namespace",
            ),
            (
                json!({"veth0": {"name": "eth1"}, "veth1": {"name": "eth1"}}),
                "[\"veth1\"].name: \"eth1\" is also the name of \"veth0\" in the container",
            ),
            (
                json!({"veth0": {"name": "veth1"}, "veth1": {}}),
                "[\"veth1\"].name: \"veth1\" is also the name of \"veth0\"",
            ),
            (
                json!({"eth9": {}}),
                "linux.netDevices[\"eth9\"]: no such interface on the host",
            ),
        ];
        for (devices, want) in cases {
            fails(&h, with(devices), want);
        }
        // Two templates may coincide: the kernel numbers them apart.
        on(
            &h,
            with(json!({"veth0": {"name": "n%d"}, "veth1": {"name": "n%d"}})),
        )
        .unwrap();
    }
}
