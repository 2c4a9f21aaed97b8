//! runc-compatible logging: `--log` (a file, default stderr), `--log-format text|json`, `--debug`.
//!
//! containerd's shim passes `--log <file> --log-format json` and, when a command fails, reads the
//! last `"level":"error"` line's `msg`; so every fatal error goes through [`error`], once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    sink: Option<File>,
    format: Format,
    min: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up the process-wide logger. The file is opened O_APPEND|O_CLOEXEC so that the container
/// never inherits it.
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> std::io::Result<()> {
    let sink = match path {
        None => None,
        Some(p) if p == Path::new("/dev/stderr") => None,
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)?,
        ),
    };
    let min = if debug { Level::Debug } else { Level::Info };
    let _ = LOGGER.set(Logger { sink, format, min });
    Ok(())
}

/// The log file's fd, which the container init keeps until its execve (CLOEXEC closes it then).
pub fn fd() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    LOGGER.get()?.sink.as_ref().map(|f| f.as_raw_fd())
}

/// True when log lines already land on stderr (then a fatal error is not printed twice).
pub fn to_stderr() -> bool {
    LOGGER.get().is_none_or(|l| l.sink.is_none())
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn line(format: Format, level: Level, msg: &str) -> String {
    let time = crate::timefmt::rfc3339(SystemTime::now());
    match format {
        Format::Json => {
            let v = serde_json::json!({"level": level.name(), "msg": msg, "time": time});
            format!("{v}\n")
        }
        Format::Text => format!(
            "time=\"{time}\" level={} msg={}\n",
            level.name(),
            quote(msg)
        ),
    }
}

pub fn log(level: Level, msg: &str) {
    let (format, min) = LOGGER
        .get()
        .map_or((Format::Text, Level::Info), |l| (l.format, l.min));
    if level < min {
        return;
    }
    let text = line(format, level, msg);
    match LOGGER.get().and_then(|l| l.sink.as_ref()) {
        Some(mut f) => {
            let _ = f.write_all(text.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// True with --debug: the steps of create, start and exec are traced.
pub fn debugging() -> bool {
    LOGGER.get().is_some_and(|l| l.min == Level::Debug)
}

/// A debug line, formatted only with --debug (nothing is spent on the way otherwise).
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::logger::debugging() {
            $crate::logger::debug(&format!($($arg)*));
        }
    };
}
pub(crate) use trace;

pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

pub fn error(msg: &str) {
    log(Level::Error, msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines_follow_logrus() {
        let t = line(Format::Text, Level::Error, "bad \"x\"");
        assert!(t.starts_with("time=\""), "{t}");
        assert!(t.ends_with(" level=error msg=\"bad \\\"x\\\"\"\n"), "{t}");
        let j: serde_json::Value =
            serde_json::from_str(&line(Format::Json, Level::Warn, "m")).unwrap();
        assert_eq!(j["level"], "warning");
        assert_eq!(j["msg"], "m");
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }
}
