//! The rules that span fields, run on the whole plan (so on whatever providers added too): the
//! namespaces that sysctls, the hostname, id maps, time offsets and masks need; and the fields
//! chitin refuses.

use super::host::Host;
use super::{Namespaces, NsKind, OCI_MAJOR, Plan, PlanError};

/// Every cross-field rule of a plan.
pub fn plan(p: &Plan, host: &dyn Host) -> Result<(), PlanError> {
    namespaces(p, host)?;
    rlimits(p, host)?;
    for (field, set) in [("hostname", &p.hostname), ("domainname", &p.domainname)] {
        if set.is_some() && !p.namespaces.is_private(NsKind::Uts) {
            return Err(PlanError::field(
                field,
                format!("setting the {field} needs a private uts namespace"),
            ));
        }
    }
    let restricted = !(p.masked_paths.is_empty() && p.readonly_paths.is_empty());
    if restricted && !p.namespaces.is_new(NsKind::Mount) {
        // runc's words: without a mount namespace of its own the container's mounts are the
        // caller's, and runc refuses to mask in them.
        let field = match p.masked_paths.is_empty() {
            true => "linux.readonlyPaths",
            false => "linux.maskedPaths",
        };
        return Err(PlanError::field(
            field,
            "unable to restrict sys entries without a private MNT namespace",
        ));
    }
    for (k, _) in &p.sysctls {
        sysctl(k, &p.namespaces)?;
    }
    if let Some(i) = p.mounts.iter().position(|m| m.idmap.is_some())
        && !p.namespaces.is_new(NsKind::Mount)
    {
        // It is attached by the init, in the container's mount namespace.
        return Err(PlanError::field(
            &format!("mounts[{i}]"),
            "an idmapped mount needs a mount namespace of the container's own",
        ));
    }
    Ok(())
}

/// What providers' actions need of the plan: an RDMA device that moves into the container's
/// network namespace needs one of the container's own, as linux.netDevices does.
pub fn actions(p: &Plan) -> Result<(), PlanError> {
    if let Some((_, annotation)) = p.rdma_namespaces().first()
        && !p.namespaces.is_new(NsKind::Net)
    {
        return Err(PlanError::field(
            &format!("annotations[{annotation:?}]"),
            "in the RDMA subsystem's exclusive mode the device moves into the container's \
             network namespace, which must be its own: not the host's, nor a joined one",
        ));
    }
    Ok(())
}

/// Hard limits the init could not set: raising one needs CAP_SYS_RESOURCE in the initial user
/// namespace, which the runtime may lack (this machine's bounding set drops it) and the init has
/// not once it is in the container's user namespace. Refused here, before anything is made,
/// instead of failing in the init.
fn rlimits(p: &Plan, host: &dyn Host) -> Result<(), PlanError> {
    let userns = p.namespaces.is_new(NsKind::User) || p.namespaces.joined(NsKind::User).is_some();
    for (i, r) in p.process.rlimits.iter().enumerate() {
        let Some(ceiling) = host
            .rlimit_ceiling(r.resource, userns)
            .filter(|c| r.hard > *c)
        else {
            continue;
        };
        let show = |v: u64| match v {
            u64::MAX => "unlimited".to_owned(),
            v => v.to_string(),
        };
        let why = match userns {
            true => "which the init cannot raise inside a user namespace",
            false => "which it cannot raise without CAP_SYS_RESOURCE",
        };
        return Err(PlanError::field(
            &format!("process.rlimits[{i}]"),
            format!(
                "{}'s hard limit {} is above this runtime's own, {}, {why}",
                super::process::rlimit_name(r.resource),
                show(r.hard),
                show(ceiling)
            ),
        ));
    }
    Ok(())
}

/// A user namespace against the namespaces joined and the id maps; time offsets against a
/// time namespace.
fn namespaces(p: &Plan, host: &dyn Host) -> Result<(), PlanError> {
    let ns = &p.namespaces;
    if ns.is_new(NsKind::User) {
        // The init starts inside its new user namespace, which owns none of the host's.
        if let Some((k, _)) = ns
            .join
            .iter()
            .find(|(k, _)| !matches!(k, NsKind::Pid | NsKind::Time))
        {
            return Err(PlanError::field(
                "linux.namespaces",
                format!(
                    "joining a {} namespace by path while creating a user namespace is not supported",
                    k.spec_name()
                ),
            ));
        }
        if p.uid_map.is_empty() || p.gid_map.is_empty() {
            return Err(PlanError::field(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    } else if !p.uid_map.is_empty() || !p.gid_map.is_empty() {
        match ns.joined(NsKind::User) {
            Some(path) => super::userns::check_joined(host, path, &p.uid_map, &p.gid_map)?,
            None => {
                return Err(PlanError::field(
                    "linux.uidMappings",
                    "mappings need a user namespace of the container's own",
                ));
            }
        }
    }
    if !p.time_offsets.is_empty() && !ns.is_new(NsKind::Time) {
        return Err(PlanError::field(
            "linux.timeOffsets",
            "offsets need a new time namespace",
        ));
    }
    Ok(())
}

/// ociVersion: a runtime-spec of the major version chitin implements.
pub fn version(version: &str) -> Result<(), PlanError> {
    match version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
    {
        None => Err(PlanError::field(
            "ociVersion",
            format!("{version:?} is not a version"),
        )),
        Some(m) if m != OCI_MAJOR => Err(PlanError::field(
            "ociVersion",
            format!("{version}: chitin implements runtime-spec {OCI_MAJOR}.x"),
        )),
        Some(_) => Ok(()),
    }
}

/// Sysctls are only allowed when the namespace they belong to is the container's own.
fn sysctl(key: &str, ns: &Namespaces) -> Result<(), PlanError> {
    let field = format!("linux.sysctl[{key:?}]");
    if key.is_empty()
        || key.contains("..")
        || key.starts_with(['.', '/'])
        || key.contains('/') && key.contains('.')
    {
        return Err(PlanError::field(&field, "not a valid sysctl name"));
    }
    let ipc = matches!(
        key,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || key.starts_with("fs.mqueue.");
    let (kind, ok) = if ipc {
        (NsKind::Ipc, ns.is_private(NsKind::Ipc))
    } else if key.starts_with("net.") {
        (NsKind::Net, ns.is_private(NsKind::Net))
    } else if matches!(key, "kernel.hostname" | "kernel.domainname") {
        (NsKind::Uts, ns.is_private(NsKind::Uts))
    } else if key.starts_with("user.") {
        // The per-user-namespace counts (max_user_namespaces and the like), as runc 1.4.
        (NsKind::User, ns.is_private(NsKind::User))
    } else {
        return Err(PlanError::field(
            &field,
            "not a namespaced sysctl; it would change the host",
        ));
    };
    if ok {
        Ok(())
    } else {
        Err(PlanError::field(
            &field,
            format!("needs a private {} namespace", kind.spec_name()),
        ))
    }
}
