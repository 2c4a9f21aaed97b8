//! The systemd cgroup driver. The container's cgroup is a transient scope that systemd makes
//! around the init's pid (StartTransientUnit, Delegate=yes) in the slice cgroupsPath names;
//! systemd then owns the cgroup's life in the hierarchies it manages, and chitin makes the
//! container's cgroup in the v1 hierarchies systemd leaves alone, as runc does.
//!
//! A scope needs a process, so it is made after the clone, while the init waits at the start
//! barrier: the init is in its cgroup, with its limits, before it runs anything of the
//! container's (with the cgroupfs driver it is there from its first instruction, clone3's
//! CLONE_INTO_CGROUP).

mod devices;
pub mod props;

use std::time::Duration;

use crate::dbus::{BUS_DRIVER, Bus, DbusError, Message, Target, Value};
use crate::plan::cgroups::Unit;
use props::Property;

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("systemd: {0}")]
    Bus(#[from] DbusError),
    #[error("systemd unit {unit}: {what}")]
    Unit { unit: String, what: String },
    #[error("annotation {key}: {reason}")]
    Annotation { key: String, reason: String },
}

impl From<props::BadAnnotation> for SystemdError {
    fn from(b: props::BadAnnotation) -> Self {
        SystemdError::Annotation {
            key: b.key,
            reason: b.reason,
        }
    }
}

const MANAGER: Target<'static> = Target {
    destination: "org.freedesktop.systemd1",
    path: "/org/freedesktop/systemd1",
    interface: "org.freedesktop.systemd1.Manager",
};

/// How long a reply, and a job, may take: systemd answers in milliseconds, but a busy host
/// (many containers starting at once) is slower.
const REPLY: Duration = Duration::from_secs(25);
const JOB: Duration = Duration::from_secs(30);

pub struct Systemd {
    bus: Bus,
    /// The manager's unique name on the bus: job signals from anyone else are not systemd's.
    owner: String,
    /// systemd's version (252 for "252.39-1~deb12u2"): which properties it takes.
    version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    This,
    Other,
    Nobody,
}

impl Systemd {
    /// The system's manager, or with `user` the user's own (rootless mode) on its session bus.
    pub fn connect(user: bool) -> Result<Systemd, SystemdError> {
        let mut bus = match user {
            false => Bus::system(REPLY)?,
            true => Bus::session(REPLY)?,
        };
        // Job signals are sent to those who asked for them; matched before any job is made.
        bus.call(
            &BUS_DRIVER,
            "AddMatch",
            &[Value::str(
                "type='signal',sender='org.freedesktop.systemd1',path='/org/freedesktop/systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'",
            )],
        )?;
        bus.call(&MANAGER, "Subscribe", &[])?;
        let owner = bus.call(
            &BUS_DRIVER,
            "GetNameOwner",
            &[Value::str(MANAGER.destination)],
        )?;
        let owner = owner
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let version = get(&mut bus, MANAGER.path, MANAGER.interface, "Version")?;
        // "252.39-1~deb12u2", "239 (239-74.el8)": the leading number.
        let version = version
            .as_str()
            .map(|v| {
                v.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Systemd {
            bus,
            owner,
            version,
        })
    }

    /// The properties this systemd takes (props::for_version); `v2` where the device rules are
    /// cgroup v2's.
    fn known(&self, props: Vec<Property>, v2: bool) -> Vec<Property> {
        let proc_devices = || std::fs::read_to_string("/proc/devices").unwrap_or_default();
        props::for_version(props, self.version, &proc_devices, v2)
    }

    /// Makes the transient unit and waits for systemd to have started it. A unit of that name
    /// left failed (by a crashed runtime, or a container killed by the OOM killer) is reset
    /// first, so that the name can be used again; a live one is an error.
    pub fn start(
        &mut self,
        unit: &Unit,
        pid: i32,
        props: Vec<Property>,
        v2: bool,
    ) -> Result<(), SystemdError> {
        let mut props = self.known(props, v2);
        let pids = Value::Array("u".into(), vec![Value::U32(pid as u32)]);
        props.push(props::prop("PIDs", pids));
        let args = [
            Value::str(&unit.name),
            Value::str("replace"),
            property_array(props),
            Value::Array("(sa(sv))".into(), Vec::new()),
        ];
        let job = match self.bus.call(&MANAGER, "StartTransientUnit", &args) {
            Err(e) if e.name() == Some("org.freedesktop.systemd1.UnitExists") => {
                self.reset_failed(&unit.name);
                self.bus
                    .call(&MANAGER, "StartTransientUnit", &args)
                    .map_err(|e| unit_error(&unit.name, "starting", e))?
            }
            r => r.map_err(|e| unit_error(&unit.name, "starting", e))?,
        };
        self.wait_job(&unit.name, "start", &job)
    }

    /// Changes a running unit's properties (runtime only, as runc: not written to /etc).
    pub fn set(&mut self, unit: &str, props: Vec<Property>, v2: bool) -> Result<(), SystemdError> {
        let props = self.known(props, v2);
        if props.is_empty() {
            return Ok(());
        }
        let args = [Value::str(unit), Value::Bool(true), property_array(props)];
        self.bus
            .call(&MANAGER, "SetUnitProperties", &args)
            .map_err(|e| unit_error(unit, "setting properties of", e))?;
        Ok(())
    }

    /// Stops the unit, if it is this container's, and waits for it to be gone. A unit that
    /// ended failed is reset, so that it does not linger in `systemctl --failed`. Returns whose
    /// the unit was.
    pub fn stop(&mut self, unit: &Unit) -> Result<Owner, SystemdError> {
        let owner = self.owner(unit)?;
        if owner != Owner::This {
            return Ok(owner);
        }
        let name = unit.name.as_str();
        let args = [Value::str(name), Value::str("replace")];
        match self.bus.call(&MANAGER, "StopUnit", &args) {
            // As runc: a stop that did not end well is told, and the unit reset all the same.
            Ok(job) => {
                if let Err(e) = self.wait_job(name, "stop", &job) {
                    crate::logger::warn(&e.to_string());
                }
            }
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(e) => return Err(unit_error(name, "stopping", e)),
        }
        self.reset_failed(name);
        Ok(owner)
    }

    /// Whose the unit of that name is now: this container's (its Description says so), another
    /// one's (made again after this one stopped), or nobody's.
    pub fn owner(&mut self, unit: &Unit) -> Result<Owner, SystemdError> {
        let path = match self
            .bus
            .call(&MANAGER, "GetUnit", &[Value::str(&unit.name)])
        {
            Ok(p) => p,
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                return Ok(Owner::Nobody);
            }
            Err(e) => return Err(unit_error(&unit.name, "looking up", e)),
        };
        let Some(path) = path.first().and_then(Value::as_str) else {
            return Ok(Owner::Nobody);
        };
        let desc = get(
            &mut self.bus,
            path,
            "org.freedesktop.systemd1.Unit",
            "Description",
        )
        .map_err(|e| unit_error(&unit.name, "reading the description of", e))?;
        Ok(if desc.as_str() == Some(unit.description.as_str()) {
            Owner::This
        } else {
            Owner::Other
        })
    }

    fn reset_failed(&mut self, unit: &str) {
        // NoSuchUnit or not failed: nothing to reset either way.
        let _ = self
            .bus
            .call(&MANAGER, "ResetFailedUnit", &[Value::str(unit)]);
    }

    /// Waits for JobRemoved of the job a call returned: (id, job, unit, result).
    fn wait_job(&mut self, unit: &str, verb: &str, reply: &[Value]) -> Result<(), SystemdError> {
        let Some(job) = reply.first().and_then(Value::as_str).map(str::to_owned) else {
            return Err(SystemdError::Unit {
                unit: unit.into(),
                what: format!("no job in systemd's answer to {verb}"),
            });
        };
        // From systemd itself: any client of the bus may send a signal of that name.
        let owner = self.owner.clone();
        let ours = |m: &Message| {
            m.sender.as_deref() == Some(owner.as_str())
                && m.path.as_deref() == Some(MANAGER.path)
                && m.interface.as_deref() == Some(MANAGER.interface)
                && m.member.as_deref() == Some("JobRemoved")
                && m.body.get(1).and_then(Value::as_str) == Some(&job)
        };
        let m = self
            .bus
            .wait_signal(JOB, &ours)
            .map_err(|e| unit_error(unit, verb, e))?;
        match m.body.get(3).and_then(Value::as_str) {
            Some("done") => Ok(()),
            result => Err(SystemdError::Unit {
                unit: unit.into(),
                what: format!(
                    "the {verb} job ended {} (journalctl -u {unit} says why)",
                    result.unwrap_or("without a result")
                ),
            }),
        }
    }
}

/// A property of an object of systemd's (org.freedesktop.DBus.Properties.Get), unwrapped from
/// its variant.
fn get(bus: &mut Bus, path: &str, interface: &str, name: &str) -> Result<Value, DbusError> {
    let props = Target {
        destination: MANAGER.destination,
        path,
        interface: "org.freedesktop.DBus.Properties",
    };
    let reply = bus.call(&props, "Get", &[Value::str(interface), Value::str(name)])?;
    match reply.into_iter().next() {
        Some(Value::Variant(v)) => Ok(*v),
        other => Err(DbusError::Malformed(crate::dbus::wire::Malformed(format!(
            "{name}: {other:?} is not a variant"
        )))),
    }
}

fn unit_error(unit: &str, verb: &str, e: DbusError) -> SystemdError {
    SystemdError::Unit {
        unit: unit.into(),
        what: format!("{verb}: {e}"),
    }
}

fn property_array(props: Vec<Property>) -> Value {
    Value::Array(
        "(sv)".into(),
        props
            .into_iter()
            .map(|(k, v)| Value::Struct(vec![Value::Str(k), Value::variant(v)]))
            .collect(),
    )
}

/// Everything a container's unit is made with but its process, worked out (and its annotations
/// checked) before create makes anything. The raw annotations come last: systemd takes the last
/// value of a property given twice.
pub fn unit_properties(
    plan: &crate::plan::Plan,
    layout: &super::Layout,
) -> Result<Vec<Property>, SystemdError> {
    let kind_of = |c: &str| layout.kind_of(c);
    let unit = plan
        .cgroup
        .unit
        .as_ref()
        .expect("the systemd driver's plan");
    let mut p = props::scope(unit, &kind_of);
    if let Some(r) = &plan.resources {
        p.extend(props::resources(r, &kind_of));
    }
    // A user's manager cannot attach a device program (it needs the host's CAP_SYS_ADMIN);
    // the user namespace keeps device nodes out of reach.
    if !unit.user {
        p.extend(devices::properties(
            &plan.device_rules,
            !layout.has_v1_devices(),
        ));
    }
    p.extend(props::annotations(&plan.annotations)?);
    Ok(p)
}
