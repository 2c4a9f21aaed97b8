//! Running OCI hooks: the state JSON on stdin, the hook's own args and env, and its timeout.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::plan::Hook;

#[derive(Debug, thiserror::Error)]
#[error("{phase} hook {path}: {reason}")]
pub struct HookError {
    pub phase: &'static str,
    pub path: String,
    pub reason: String,
}

pub fn run_all(phase: &'static str, hooks: &[Hook], state: &str) -> Result<(), HookError> {
    hooks.iter().try_for_each(|h| run(phase, h, state))
}

fn run(phase: &'static str, hook: &Hook, state: &str) -> Result<(), HookError> {
    let fail = |reason: String| HookError {
        phase,
        path: hook.path.display().to_string(),
        reason,
    };
    let mut cmd = Command::new(&hook.path);
    if let Some((argv0, rest)) = hook.args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear()
        .envs(hook.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    // A hook that does not read its stdin must not block us: ignore EPIPE.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook.timeout.map(|t| Instant::now() + t);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout.unwrap_or_default().as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut out = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    if out.trim().is_empty() {
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    let out = out.trim();
    Err(fail(if out.is_empty() {
        how
    } else {
        format!("{how}: {out}")
    }))
}
