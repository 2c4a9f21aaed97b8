//! Edits into the spec, by the rules in mod.rs, keeping the origin of every item they add.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::rc::Rc;

use oci_spec::runtime::{Hooks, Linux, LinuxCpu, LinuxMemory, LinuxResources, Process, Spec};

use super::{Edit, Edits, HookPhase, Origin, Precedence, Provenance};
use crate::plan::PlanError;
use crate::plan::config::empty;

type Source = (Rc<Origin>, Precedence);

/// The sources of what the edits added so far: per list (by its JSON path) one entry per item,
/// None for config.json's; per map (annotations, linux.netDevices) the injected keys.
#[derive(Default)]
pub(super) struct Merge {
    lists: BTreeMap<String, Vec<Option<Source>>>,
    maps: BTreeMap<&'static str, BTreeMap<String, Source>>,
    /// Single values (linux.resources.cpu.cpus), by path.
    values: BTreeMap<&'static str, Source>,
}

impl Merge {
    pub(super) fn add(&mut self, spec: &mut Spec, edit: Edit) -> Result<(), PlanError> {
        let src: Source = (Rc::new(edit.origin), edit.precedence);
        let mut e = edit.edits;
        let mut linux = spec.linux().clone().unwrap_or_else(empty::<Linux>);
        self.linux(&mut linux, &mut e, &src)?;
        if linux != empty() || spec.linux().is_some() {
            spec.set_linux(Some(linux));
        }

        let mut v = spec.mounts().clone().unwrap_or_default();
        self.list(
            "mounts",
            &mut v,
            e.mounts,
            |m| Some(m.destination().clone()),
            &src,
        )?;
        spec.set_mounts(Some(v).filter(|v| !v.is_empty()));
        let mut m = spec.annotations().clone().unwrap_or_default();
        self.map("annotations", &mut m, e.annotations, &src)?;
        spec.set_annotations(Some(m).filter(|m| !m.is_empty()));
        self.hooks(spec, e.hooks, &src)?;
        // Without a process there is nothing to add to: the planner refuses the config.
        if let Some(mut p) = spec.process().clone() {
            self.process(&mut p, e.env, e.rlimits, e.additional_gids, &src)?;
            if let Some(s) = e.scheduler {
                let mut v = p.scheduler().clone();
                self.value("process.scheduler", &mut v, s, &src)?;
                p.set_scheduler(v);
            }
            if let Some(io) = e.io_priority {
                let mut v = *p.io_priority();
                self.value("process.ioPriority", &mut v, io, &src)?;
                p.set_io_priority(v);
            }
            if let Some(a) = e.exec_cpu_affinity {
                let mut v = p.exec_cpu_affinity().clone();
                self.value("process.execCPUAffinity", &mut v, a, &src)?;
                p.set_exec_cpu_affinity(v);
            }
            spec.set_process(Some(p));
        }
        Ok(())
    }

    /// The edits of the `linux` section (devices, their rules, resources, network devices),
    /// taken out of `e`.
    fn linux(&mut self, linux: &mut Linux, e: &mut Edits, src: &Source) -> Result<(), PlanError> {
        let mut res = linux
            .resources()
            .clone()
            .unwrap_or_else(empty::<LinuxResources>);
        let mut v = linux.devices().clone().unwrap_or_default();
        self.list(
            "linux.devices",
            &mut v,
            std::mem::take(&mut e.devices),
            |d| Some(d.path().clone()),
            src,
        )?;
        linux.set_devices(Some(v).filter(|v| !v.is_empty()));
        let mut v = res.devices().clone().unwrap_or_default();
        self.list(
            "linux.resources.devices",
            &mut v,
            std::mem::take(&mut e.device_rules),
            |_| None::<()>,
            src,
        )?;
        res.set_devices(Some(v).filter(|v| !v.is_empty()));
        let mut v = res.hugepage_limits().clone().unwrap_or_default();
        let key = |l: &oci_spec::runtime::LinuxHugepageLimit| Some(l.page_size().clone());
        self.list(
            "linux.resources.hugepageLimits",
            &mut v,
            std::mem::take(&mut e.hugepage_limits),
            key,
            src,
        )?;
        res.set_hugepage_limits(Some(v).filter(|v| !v.is_empty()));
        let mut m = res.rdma().clone().unwrap_or_default();
        let rdma = std::mem::take(&mut e.rdma);
        self.map("linux.resources.rdma", &mut m, rdma, src)?;
        res.set_rdma(Some(m).filter(|m| !m.is_empty()));
        if let Some((cpus, mems)) = e.cpuset.take() {
            let mut cpu = res.cpu().clone().unwrap_or_else(empty::<LinuxCpu>);
            let mut v = cpu.cpus().clone();
            self.value("linux.resources.cpu.cpus", &mut v, cpus, src)?;
            cpu.set_cpus(v);
            let mut v = cpu.mems().clone();
            self.value("linux.resources.cpu.mems", &mut v, mems, src)?;
            cpu.set_mems(v);
            res.set_cpu(Some(cpu));
        }
        if let Some((runtime, period)) = e.realtime.take() {
            let mut cpu = res.cpu().clone().unwrap_or_else(empty::<LinuxCpu>);
            let mut v = cpu.realtime_runtime();
            self.value("linux.resources.cpu.realtimeRuntime", &mut v, runtime, src)?;
            cpu.set_realtime_runtime(v);
            let mut v = cpu.realtime_period();
            self.value("linux.resources.cpu.realtimePeriod", &mut v, period, src)?;
            cpu.set_realtime_period(v);
            res.set_cpu(Some(cpu));
        }
        if let Some(limit) = e.memory_limit.take() {
            let mut mem = (*res.memory()).unwrap_or_else(empty::<LinuxMemory>);
            let mut v = mem.limit();
            self.value("linux.resources.memory.limit", &mut v, limit, src)?;
            mem.set_limit(v);
            res.set_memory(Some(mem));
        }
        if let Some(policy) = e.memory_policy.take() {
            let mut v = linux.memory_policy().clone();
            self.value("linux.memoryPolicy", &mut v, policy, src)?;
            linux.set_memory_policy(v);
        }
        if res != empty() || linux.resources().is_some() {
            linux.set_resources(Some(res));
        }
        let mut m = linux.net_devices().clone().unwrap_or_default();
        self.map(
            "linux.netDevices",
            &mut m,
            std::mem::take(&mut e.net_devices),
            src,
        )?;
        linux.set_net_devices(Some(m).filter(|m| !m.is_empty()));
        Ok(())
    }

    fn process(
        &mut self,
        p: &mut Process,
        env: Vec<String>,
        rlimits: Vec<oci_spec::runtime::PosixRlimit>,
        gids: Vec<u32>,
        src: &Source,
    ) -> Result<(), PlanError> {
        let name = |e: &String| Some(e.split_once('=').map_or(e.clone(), |(k, _)| k.to_owned()));
        let mut v = p.env().clone().unwrap_or_default();
        self.list("process.env", &mut v, env, name, src)?;
        p.set_env(Some(v).filter(|v| !v.is_empty()));
        let mut v = p.rlimits().clone().unwrap_or_default();
        self.list("process.rlimits", &mut v, rlimits, |r| Some(r.typ()), src)?;
        p.set_rlimits(Some(v).filter(|v| !v.is_empty()));
        let mut user = p.user().clone();
        let mut v = user.additional_gids().clone().unwrap_or_default();
        self.list(
            "process.user.additionalGids",
            &mut v,
            gids,
            |g| Some(*g),
            src,
        )?;
        user.set_additional_gids(Some(v).filter(|v| !v.is_empty()));
        p.set_user(user);
        Ok(())
    }

    #[allow(deprecated)]
    fn hooks(
        &mut self,
        spec: &mut Spec,
        hooks: Vec<(HookPhase, oci_spec::runtime::Hook)>,
        src: &Source,
    ) -> Result<(), PlanError> {
        if hooks.is_empty() {
            return Ok(());
        }
        let mut h = spec.hooks().clone().unwrap_or_else(empty::<Hooks>);
        for (phase, hook) in hooks {
            let (name, mut v) = match phase {
                HookPhase::Prestart => ("prestart", h.prestart().clone()),
                HookPhase::CreateRuntime => ("createRuntime", h.create_runtime().clone()),
                HookPhase::CreateContainer => ("createContainer", h.create_container().clone()),
                HookPhase::StartContainer => ("startContainer", h.start_container().clone()),
                HookPhase::Poststart => ("poststart", h.poststart().clone()),
                HookPhase::Poststop => ("poststop", h.poststop().clone()),
            };
            let mut list = v.take().unwrap_or_default();
            self.list(
                &format!("hooks.{name}"),
                &mut list,
                vec![hook],
                |_| None::<()>,
                src,
            )?;
            let v = Some(list);
            match phase {
                HookPhase::Prestart => h.set_prestart(v),
                HookPhase::CreateRuntime => h.set_create_runtime(v),
                HookPhase::CreateContainer => h.set_create_container(v),
                HookPhase::StartContainer => h.set_start_container(v),
                HookPhase::Poststart => h.set_poststart(v),
                HookPhase::Poststop => h.set_poststop(v),
            };
        }
        spec.set_hooks(Some(h));
        Ok(())
    }

    /// Items into a list, by the rules: a keyed item may meet one already there.
    fn list<T: PartialEq, K: PartialEq>(
        &mut self,
        path: &str,
        list: &mut Vec<T>,
        new: Vec<T>,
        key: impl Fn(&T) -> Option<K>,
        src: &Source,
    ) -> Result<(), PlanError> {
        let origins = self
            .lists
            .entry(path.to_owned())
            .or_insert_with(|| (0..list.len()).map(|_| None).collect());
        for item in new {
            let k = key(&item);
            let at = k
                .as_ref()
                .and_then(|k| list.iter().position(|e| key(e).as_ref() == Some(k)));
            match at {
                Some(_) if src.1 == Precedence::Fallback => {}
                Some(i) => match &origins[i] {
                    Some((_, Precedence::Replace)) if list[i] == item => {}
                    Some((other, Precedence::Replace)) => {
                        return Err(conflict(&format!("{path}[{i}]"), other, &src.0));
                    }
                    // In its place (the order of mounts matters); and the item is the edit's
                    // from now on, even when equal, so that a later edit that differs conflicts.
                    _ => {
                        list[i] = item;
                        origins[i] = Some(src.clone());
                    }
                },
                None => {
                    list.push(item);
                    origins.push(Some(src.clone()));
                }
            }
        }
        Ok(())
    }

    /// Entries into a map: the same rules, by key.
    fn map<T: PartialEq>(
        &mut self,
        path: &'static str,
        map: &mut HashMap<String, T>,
        new: Vec<(String, T)>,
        src: &Source,
    ) -> Result<(), PlanError> {
        let sources = self.maps.entry(path).or_default();
        for (k, item) in new {
            match (map.get(&k), sources.get(&k)) {
                (Some(_), _) if src.1 == Precedence::Fallback => continue,
                (Some(old), Some((_, Precedence::Replace))) if *old == item => continue,
                (Some(_), Some((other, Precedence::Replace))) => {
                    return Err(conflict(&format!("{path}[{k:?}]"), other, &src.0));
                }
                _ => {}
            }
            map.insert(k.clone(), item);
            sources.insert(k, src.clone());
        }
        Ok(())
    }

    /// A single value: the same rules, its path the key.
    fn value<T: PartialEq>(
        &mut self,
        path: &'static str,
        current: &mut Option<T>,
        new: T,
        src: &Source,
    ) -> Result<(), PlanError> {
        match (current.as_ref(), self.values.get(path)) {
            (Some(_), _) if src.1 == Precedence::Fallback => return Ok(()),
            (Some(old), Some((_, Precedence::Replace))) if *old == new => return Ok(()),
            (Some(_), Some((other, Precedence::Replace))) => {
                return Err(conflict(path, other, &src.0));
            }
            _ => {}
        }
        *current = Some(new);
        self.values.insert(path, src.clone());
        Ok(())
    }

    pub(super) fn finish(self) -> Provenance {
        let mut entries = Vec::new();
        for (path, origins) in &self.lists {
            for (i, o) in origins.iter().enumerate() {
                if let Some((origin, _)) = o {
                    entries.push((format!("{path}[{i}]"), origin.clone()));
                }
            }
        }
        for (path, sources) in &self.maps {
            for (k, (origin, _)) in sources {
                entries.push((format!("{path}[{k:?}]"), origin.clone()));
            }
        }
        for (path, (origin, _)) in &self.values {
            entries.push((path.to_string(), origin.clone()));
        }
        Provenance { entries }
    }
}

fn conflict(field: &str, first: &Origin, second: &Origin) -> PlanError {
    PlanError::field(
        field,
        format!("set by {first} and by {second}, differently"),
    )
}
