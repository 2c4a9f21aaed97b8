//! Through Docker by annotation: CDI devices and chitin's hardened profile. dockerd passes
//! `HostConfig.Annotations` (Engine API 1.43, Docker 24, on) to the runtime, which acts on them.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use super::docker::{Docker, IMAGE, docker};
use super::{ok, sandbox};
use crate::harness::{Outcome, TestResult, at_exit, skip};

/// A dockerd whose Engine API carries annotations to the runtime (1.43, Docker 24, on): the
/// run's own where it is that new, else Debian 13's, which tests/fetch-dockerd.sh fetches
/// (CHITIN_NEWER_DOCKERD names it); Debian 12's 20.10 (1.41) passes none.
fn annotating() -> Result<&'static Docker, Outcome> {
    let d = docker()?;
    if api_minor(d) >= 43 {
        return Ok(d);
    }
    let Some(newer) = std::env::var("CHITIN_NEWER_DOCKERD")
        .ok()
        .filter(|p| Path::new(p).is_file())
    else {
        return skip(format!(
            "dockerd's API is 1.{}: annotations reach the runtime from 1.43 on, and CHITIN_NEWER_DOCKERD names no newer dockerd (tests/fetch-dockerd.sh fetches Debian 13's)",
            api_minor(d)
        ));
    };
    static D: OnceLock<Docker> = OnceLock::new();
    Ok(D.get_or_init(|| {
        let d = Docker::start(
            sandbox(),
            &newer,
            "docker-newer",
            &["--userland-proxy=false"],
        );
        at_exit(|| {
            if let Ok(d) = annotating() {
                d.stop();
            }
        });
        d
    }))
}

fn api_minor(d: &Docker) -> u32 {
    let api = ok(d.cli().args(["version", "-f", "{{.Server.APIVersion}}"]));
    api.trim()
        .strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// A container made through the Engine API with these annotations, started attached: its
/// output.
fn run_annotated(d: &Docker, name: &str, annotations: serde_json::Value, script: &str) -> String {
    let body = serde_json::json!({
        "Image": IMAGE,
        "Cmd": ["sh", "-c", script],
        "HostConfig": {"Annotations": annotations},
    });
    let made = ok(Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(d.dir.join("sock"))
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(body.to_string())
        .arg(format!(
            "http://localhost/v1.43/containers/create?name={name}"
        )));
    assert!(made.contains("\"Id\""), "{made}");
    let out = ok(d.cli().args(["start", "-a", name]));
    ok(d.cli().args(["rm", name]));
    out
}

/// A CDI device asked for by annotation, which dockerd passes on and chitin resolves: the node
/// opens despite Docker's deny-all device rules, with the spec's variable; without the
/// annotation there is neither. The CLI of Debian 12 has no --annotation, so the container is
/// made through the Engine API's HostConfig.Annotations, as Compose's `annotations` make it.
pub fn cdi_device_by_annotation() -> TestResult {
    super::runtime_resolves_cdi()?;
    let d = annotating()?;
    super::cdi_spec()?;
    let (key, value) = super::CDI_ANNOTATION.split_once('=').unwrap();
    for (name, annotations, want) in [
        (
            "cdi",
            serde_json::json!({key: value}),
            "fuse-opened\nenv=spec-level\n",
        ),
        ("nocdi", serde_json::json!({}), "fuse-absent\nenv=\n"),
    ] {
        let out = run_annotated(d, name, annotations, super::CDI_SCRIPT);
        assert_eq!(out, want, "{name}");
    }
    Ok(())
}

/// An interface handed over by a CDI device's netDevices, asked for through the Engine API's
/// annotations: net1 in the container (on Docker's default bridge network it has eth0 too), with
/// its address, and gone from dockerd's namespace.
pub fn net_device_by_annotation() -> TestResult {
    super::runtime_resolves_cdi()?;
    let d = annotating()?;
    let (annotation, want) = super::net_device("dk-vf0", 3);
    let (key, value) = annotation.split_once('=').unwrap();
    let out = run_annotated(d, "net", serde_json::json!({key: value}), super::NET_SCRIPT);
    assert_eq!(out, want);
    assert!(!super::sandbox_has_interface("dk-vf0"));
    Ok(())
}

/// The hardened profile asked for through the Engine API's annotations: Docker's default
/// capabilities narrowed, no_new_privs, a second filter, no user namespace, a read-only /sys;
/// the same container without it has Docker's own.
pub fn hardened_by_annotation() -> TestResult {
    super::runtime_has_security_profiles()?;
    let d = annotating()?;
    let (key, value) = super::HARDENED;
    let out = run_annotated(
        d,
        "hard",
        serde_json::json!({key: value}),
        super::HARDENED_SCRIPT,
    );
    assert_eq!(out, super::HARDENED_OUT);
    let out = run_annotated(d, "soft", serde_json::json!({}), super::HARDENED_SCRIPT);
    assert!(
        out.starts_with("CapEff:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp_filters:\t1\n"),
        "{out}"
    );
    Ok(())
}
