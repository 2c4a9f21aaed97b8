//! TPM measurement against a real swtpm: a container with `org.chitin.tpm.measure` is measured
//! by `start` into PCR 16, its record is in the event log, `chitin tpm verify` replays the log
//! to the PCR, and tpm2-tools (its own TPM stack) reads the same value.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{TestResult, skip};
use crate::support::{Bundle, Ctx, Guard};

const MEASURE: &str = "org.chitin.tpm.measure";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh swtpm on loopback, started up, with its state in the test's directory; its TCTI.
fn swtpm(ctx: &Ctx) -> Result<(Guard, String), crate::harness::Outcome> {
    if Command::new("swtpm").arg("--version").output().is_err() {
        return skip("swtpm is not installed (Debian's swtpm)");
    }
    let state = ctx.base.join("swtpm");
    std::fs::create_dir_all(&state).unwrap();
    // tpm2-tss's swtpm TCTI takes the control port to be the next one.
    let port = loop {
        let p = free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let ctrl = port + 1;
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .args([
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        ])
        .args([
            "--ctrl",
            &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(child);
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "swtpm did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((guard, format!("swtpm:host=127.0.0.1,port={port}")))
}

fn chitin(ctx: &Ctx, tcti: &str, args: &[&str]) -> std::process::Output {
    ctx.cmd()
        .args(["--tpm-tcti", tcti])
        .args(args)
        .output()
        .unwrap()
}

/// create (which needs no TPM), the sha256 of the config saved for it, start.
fn create_and_start(ctx: &Ctx, tcti: &str, b: &Bundle) -> (String, String) {
    let id = ctx.id();
    let (code, err) = ctx.create(b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let saved = std::fs::read(ctx.root.join(&id).join("config.json")).unwrap();
    let out = chitin(ctx, tcti, &["start", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (id, sha256_hex(&saved))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

fn log(ctx: &Ctx, tcti: &str) -> Vec<Value> {
    let out = chitin(ctx, tcti, &["tpm", "log"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// PCR 16 as `chitin tpm verify` reports it (after checking it against the log).
fn verified(ctx: &Ctx, tcti: &str) -> String {
    let out = chitin(ctx, tcti, &["tpm", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = text.strip_prefix("PCR 16: sha256 ").expect("PCR 16's line");
    value[..64].to_owned()
}

/// PCR 16 as tpm2-tools reads it, through tpm2-tss: an oracle that shares nothing with chitin.
fn tpm2_pcrread(tcti: &str) -> Option<String> {
    let out = Command::new("tpm2_pcrread")
        .arg("sha256:16")
        .env("TPM2TOOLS_TCTI", tcti)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hex = text.split("0x").nth(1).expect("tpm2_pcrread's value");
    Some(hex.trim().to_lowercase())
}

pub fn measured_at_start_and_verified() -> TestResult {
    let ctx = Ctx::new("tpm")?;
    let (_swtpm, tcti) = swtpm(&ctx)?;
    let mut b = ctx.bundle("sleep 100");
    b.config["annotations"] = json!({MEASURE: "true"});
    let (a, a_config) = create_and_start(&ctx, &tcti, &b);
    let records = log(&ctx, &tcti);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["pcr"], 16);
    assert_eq!(r["content_type"], "chitin");
    assert_eq!(r["content"]["id"], a.as_str());
    assert_eq!(r["content"]["config"], format!("sha256:{a_config}"));
    assert_eq!(r["digests"][0]["hashAlg"], "sha256");
    let first = verified(&ctx, &tcti);
    assert_ne!(first, "0".repeat(64), "extended");
    if let Some(v) = tpm2_pcrread(&tcti) {
        assert_eq!(v, first, "tpm2-tools reads what chitin extended");
    }

    // Another config is another measurement; a container that does not ask is not measured.
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("OTHER=1".into());
    let (_, b_config) = create_and_start(&ctx, &tcti, &b);
    assert_ne!(a_config, b_config);
    b.config.as_object_mut().unwrap().remove("annotations");
    create_and_start(&ctx, &tcti, &b);
    let records = log(&ctx, &tcti);
    assert_eq!(records.len(), 2, "the third asked for nothing");
    assert_eq!(
        records[1]["content"]["config"],
        format!("sha256:{b_config}")
    );
    let second = verified(&ctx, &tcti);
    assert_ne!(second, first);
    if let Some(v) = tpm2_pcrread(&tcti) {
        assert_eq!(v, second);
    }

    // Starts at once measure one after the other: swtpm serves one client at a time, and a start
    // that opened it before waiting for the log's lock would hang the other for good.
    b.config["annotations"] = json!({MEASURE: "true"});
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let id = ctx.id();
            let (code, err) = ctx.create(&b, &id, &[]);
            assert_eq!(code, 0, "{err}");
            id
        })
        .collect();
    let starts: Vec<_> = ids
        .iter()
        .map(|id| {
            ctx.cmd()
                .args(["--tpm-tcti", &tcti, "start", id])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for s in starts {
        let out = s.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(log(&ctx, &tcti).len(), 5);
    // verify fails unless the five records replay to the PCR; tpm2-tools reads the same value.
    let third = verified(&ctx, &tcti);
    assert_ne!(third, second);
    if let Some(v) = tpm2_pcrread(&tcti) {
        assert_eq!(v, third);
    }
    Ok(())
}

/// A container with CDI devices is measured with the digest of each spec file its edits came
/// from (their hooks ran as root), as the file was at create.
pub fn cdi_specs_are_measured() -> TestResult {
    let ctx = Ctx::new("tpmcdi")?;
    let (_swtpm, tcti) = swtpm(&ctx)?;
    let (dirs, file) = crate::devices::spec_dir(&ctx);
    let id = ctx.id();
    let ask = json!({MEASURE: "true", "org.chitin.devices.cdi": "test.chitin.dev/dev=other"});
    let b = crate::devices::bundle(&ctx, &id, ask, false);
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 1, "{err}");
    let unknown = "no CDI spec defines the device test.chitin.dev/dev=other";
    assert!(err.contains(unknown), "without --cdi-spec-dirs: {err}");
    assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    let (code, err) = ctx.create_with(&["--cdi-spec-dirs", &dirs], &b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let want = sha256_hex(&std::fs::read(&file).unwrap());
    // Changed after create: the measurement keeps what the edits came from.
    std::fs::write(&file, "changed").unwrap();
    let out = chitin(&ctx, &tcti, &["start", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = log(&ctx, &tcti);
    assert_eq!(
        records[0]["content"]["cdi"],
        json!([{"file": file.display().to_string(), "sha256": want}])
    );
    verified(&ctx, &tcti);
    Ok(())
}

pub fn bad_requests_fail_before_anything_is_made() -> TestResult {
    let ctx = Ctx::new("tpmbad")?;
    // (The log quotes the message: its quotes come out escaped.)
    for (key, value, want) in [
        (MEASURE, "7", "PCR 7 is not one for containers"),
        (MEASURE, "yes", "is not true, false or a PCR number"),
        (
            "org.chitin.tpm.device",
            "true",
            "no tpmrm device tpmrm0 on this host",
        ),
    ] {
        if key == "org.chitin.tpm.device"
            && std::path::Path::new("/sys/class/tpmrm/tpmrm0").exists()
        {
            continue;
        }
        let mut b = ctx.bundle("true");
        b.config["annotations"] = json!({key: value});
        let id = ctx.id();
        let (code, err) = ctx.create(&b, &id, &[]);
        assert_eq!(code, 1, "{err}");
        let named = format!("config.json: annotations[\\\"{key}\\\"]: ");
        assert!(err.contains(&named) && err.contains(want), "{err}");
        assert!(!ctx.root.join(&id).exists(), "nothing left behind");
    }
    // A TPM that cannot be reached fails the start: the container stays created, unmeasured.
    let mut b = ctx.bundle("true");
    b.config["annotations"] = json!({MEASURE: "16"});
    let id = ctx.id();
    let (code, err) = ctx.create(&b, &id, &[]);
    assert_eq!(code, 0, "{err}");
    let nowhere = format!("swtpm:host=127.0.0.1,port={}", free_port());
    let out = chitin(&ctx, &nowhere, &["start", &id]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("TPM ({nowhere})")), "{err}");
    assert_eq!(ctx.state(&id)["status"], "created");
    Ok(())
}

/// The kernel's TPM, where it is the tests' (the v2 VM's, QEMU's TIS device backed by a swtpm,
/// which CHITIN_KERNEL_TPM marks): `org.chitin.tpm.device` puts /dev/tpmrm0 in a container whose own rules deny every
/// device, and it opens there; `org.chitin.tpm.measure` through the default TCTI
/// (device:/dev/tpmrm0) extends PCR 16, which `tpm verify` replays the log to.
pub fn kernel_tpm_in_the_container_and_measured() -> TestResult {
    let ctx = Ctx::new("ktpm")?;
    // Extending a real TPM's PCR changes the machine: only where its TPM is the tests' own.
    if std::env::var_os("CHITIN_KERNEL_TPM").is_none() {
        return skip(
            "CHITIN_KERNEL_TPM is not set: no TPM here is the tests' to extend (the v2 VM's is)",
        );
    }
    let Ok(dev) = std::fs::read_to_string("/sys/class/tpmrm/tpmrm0/dev") else {
        return skip("no TPM on this host (the v2 VM has QEMU's, backed by swtpm)");
    };
    let mut b = ctx.bundle(
        "[ -c /dev/tpmrm0 ] && (exec 3<>/dev/tpmrm0) && echo opened; stat -c '%a %u %g %t:%T' /dev/tpmrm0",
    );
    b.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    b.config["annotations"] = json!({MEASURE: "true", "org.chitin.tpm.device": "true"});
    let out = ctx.run_ok(&b);
    // The node as sysfs numbers it, with the host node's mode and owner.
    let (major, minor) = dev.trim().split_once(':').unwrap();
    let (major, minor): (u32, u32) = (major.parse().unwrap(), minor.parse().unwrap());
    let host = std::fs::metadata("/dev/tpmrm0").unwrap();
    use std::os::unix::fs::MetadataExt;
    let want = format!(
        "opened\n{:o} {} {} {major:x}:{minor:x}\n",
        host.mode() & 0o777,
        host.uid(),
        host.gid()
    );
    assert_eq!(out, want);
    let out = ctx.chitin_ok(&["tpm", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("PCR 16: sha256 ") && text.contains("as the log's 1 records replay"),
        "{text}"
    );
    Ok(())
}

/// `org.chitin.tpm.rootfs`: the record also holds a digest of the rootfs tree, taken at start:
/// two bundles made alike have the same, a changed file gives another. Without a measurement
/// it is refused, naming the annotation.
pub fn rootfs_is_measured_when_asked() -> TestResult {
    let ctx = Ctx::new("tpmrootfs")?;
    let (_swtpm, tcti) = swtpm(&ctx)?;
    let rootfs_of = |b: &Bundle| {
        let (id, _) = create_and_start(&ctx, &tcti, b);
        let records = log(&ctx, &tcti);
        let r = records
            .iter()
            .find(|r| r["content"]["id"] == id.as_str())
            .unwrap();
        r["content"]["rootfs"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let ask = json!({MEASURE: "true", "org.chitin.tpm.rootfs": "true"});
    let mut a = ctx.bundle("true");
    a.config["annotations"] = ask.clone();
    let mut b = ctx.bundle("true");
    b.config["annotations"] = ask;
    let first = rootfs_of(&a);
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
    assert_eq!(rootfs_of(&b), first, "alike trees");
    std::fs::write(b.rootfs().join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    assert_ne!(rootfs_of(&b), first, "a changed file");
    verified(&ctx, &tcti);
    let mut c = ctx.bundle("true");
    c.config["annotations"] = json!({"org.chitin.tpm.rootfs": "true"});
    let id = ctx.id();
    let (code, err) = ctx.create(&c, &id, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("org.chitin.tpm.rootfs") && err.contains("needs org.chitin.tpm.measure"),
        "{err}"
    );
    Ok(())
}
