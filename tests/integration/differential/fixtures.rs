//! The config.json files Docker 20.10, Podman 4.3 and containerd 1.6 (ctr) wrote on this host
//! (fixtures/, captured by fixtures/capture/), rewritten to run here without their daemons: the
//! files they bind (resolv.conf, hosts, hostname, .containerenv, podman's shm) are made in the
//! bundle, namespaces they join are held by processes of the test's own, docker's prestart hook
//! (libnetwork-setkey, in dockerd's binary) is left out, and the cgroup goes under the tests'.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::Case;
use crate::support::Ctx;

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("fixtures/", $name, ".json")))),*]
    };
}

const FIXTURES: &[(&str, &str)] = fixtures![
    "docker-default",
    "docker-read-only",
    "docker-tmpfs",
    "docker-network-none",
    "docker-cgroupns-host",
    "docker-cgroupns-private",
    "docker-user-1000",
    "docker-tty",
    "docker-userns-remap",
    "docker-userns-remap-first",
    "docker-userns-remap-network-container",
    "podman-default",
    "podman-read-only",
    "podman-tmpfs",
    "podman-mount-tmpfs",
    "podman-network-none",
    "podman-cgroupns-host",
    "podman-cgroupns-private",
    "podman-user-1000",
    "podman-tty",
    "podman-pod-infra",
    "podman-pod-member",
    "ctr-default",
    "ctr-tty",
    "ctr-read-only",
];

pub fn cases(ctx: &Ctx) -> Vec<Case> {
    FIXTURES
        .iter()
        .map(|(name, text)| case(ctx, name, serde_json::from_str(text).unwrap()))
        .collect()
}

fn case(ctx: &Ctx, name: &str, mut config: Value) -> Case {
    let mut holders = Vec::new();
    let maps = (
        config["linux"]["uidMappings"].clone(),
        config["linux"]["gidMappings"].clone(),
    );
    if let Some(ns) = config["linux"]["namespaces"].as_array_mut() {
        // Namespaces joined by path: one holder process per config, in new namespaces of the
        // kinds joined (a user namespace with the config's own mappings).
        let joined: Vec<String> = ns
            .iter()
            .filter(|n| n.get("path").is_some())
            .map(|n| n["type"].as_str().unwrap().to_owned())
            .collect();
        if !joined.is_empty() {
            let holder = Holder::new(&joined, &maps);
            for n in ns.iter_mut().filter(|n| n.get("path").is_some()) {
                let kind = n["type"].as_str().unwrap();
                n["path"] = holder.ns_path(kind).into();
            }
            holders.push(holder);
        }
    }
    if let Some(hooks) = config.get_mut("hooks").and_then(|h| h.as_object_mut()) {
        hooks.remove("prestart");
    }
    config["linux"]["cgroupsPath"] = format!("/chitin-tests/diff-{name}").into();
    let bind_root = ctx.base.join(format!("binds-{name}"));
    if let Some(mounts) = config["mounts"].as_array_mut() {
        for (i, m) in mounts.iter_mut().enumerate() {
            if m["type"] == "bind" && !Path::new(m["source"].as_str().unwrap()).exists() {
                m["source"] = bind_source(&bind_root, i, m["destination"].as_str().unwrap())
                    .to_str()
                    .unwrap()
                    .into();
            }
        }
    }
    let mut c = Case::new(name, config);
    c.holders = holders;
    c
}

/// A stand-in for a file or directory a client would have bound into the container.
fn bind_source(root: &Path, i: usize, dest: &str) -> PathBuf {
    let base = dest.rsplit('/').next().unwrap();
    let p = root.join(format!("{i}-{base}"));
    std::fs::create_dir_all(root).unwrap();
    let text = match base {
        "resolv.conf" => Some("nameserver 127.0.0.1\n"),
        "hosts" => Some("127.0.0.1 localhost\n"),
        "hostname" => Some("fixture\n"),
        ".containerenv" => Some("engine=\"podman-4.3.1\"\n"),
        _ => None,
    };
    match text {
        Some(t) => std::fs::write(&p, t).unwrap(),
        None => std::fs::create_dir_all(&p).unwrap(),
    }
    p
}

/// A process in new namespaces, for a config that joins namespaces by path; killed with the case.
pub struct Holder(crate::support::Guard);

impl Holder {
    fn new(kinds: &[String], maps: &(Value, Value)) -> Holder {
        let mut cmd = Command::new("unshare");
        for k in kinds {
            cmd.arg(match k.as_str() {
                "network" => "--net",
                "ipc" => "--ipc",
                "uts" => "--uts",
                "user" => "--user",
                "mount" => "--mount",
                other => panic!("no holder for a {other} namespace"),
            });
        }
        let child = cmd
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let h = Holder(crate::support::Guard(child));
        let first = h.ns_path(&kinds[0]);
        let ours = std::fs::read_link(first.replace(&h.0.0.id().to_string(), "self")).unwrap();
        crate::clients::wait_until(10, "the holder's namespaces", || {
            std::fs::read_link(&first).is_ok_and(|l| l != ours)
        });
        if kinds.iter().any(|k| k == "user") {
            for (file, m) in [("uid_map", &maps.0), ("gid_map", &maps.1)] {
                let text: String = m
                    .as_array()
                    .unwrap_or(&Vec::new())
                    .iter()
                    .map(|r| format!("{} {} {}\n", r["containerID"], r["hostID"], r["size"]))
                    .collect();
                std::fs::write(format!("/proc/{}/{file}", h.0.0.id()), text).unwrap();
            }
        }
        h
    }

    fn ns_path(&self, kind: &str) -> String {
        let file = if kind == "network" { "net" } else { kind };
        format!("/proc/{}/ns/{file}", self.0.0.id())
    }
}
