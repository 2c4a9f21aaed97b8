//! A small test runner for tests that need root and real containers: each test passes, fails, or
//! is skipped with the reason printed, and the run ends with "N passed, N failed, N skipped".

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Instant;

pub enum Outcome {
    Skip(String),
}

pub type TestResult = Result<(), Outcome>;

pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

pub fn skip<T>(why: impl Into<String>) -> Result<T, Outcome> {
    Err(Outcome::Skip(why.into()))
}

/// Mode and owner of host device nodes a runtime could change by mistake (by fchown or fchmod of
/// inherited stdio, or through a bind mount): a test that changes them fails.
fn host_nodes() -> Vec<(u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    [
        "/dev/null",
        "/dev/zero",
        "/dev/tty",
        "/dev/ptmx",
        "/dev/net/tun",
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| (m.mode(), m.uid(), m.gid()))
    .collect()
}

type Teardown = Box<dyn FnOnce() + Send>;

static TEARDOWNS: Mutex<Vec<Teardown>> = Mutex::new(Vec::new());

/// Runs `f` after the last test, for fixtures that tests share (a daemon, say); the latest
/// registered runs first.
pub fn at_exit(f: impl FnOnce() + Send + 'static) {
    TEARDOWNS.lock().unwrap().push(Box::new(f));
}

pub fn main(tests: &[Test]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for t in tests {
        if !filter.is_empty() && !filter.iter().any(|f| t.name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        let host_before = host_nodes();
        let mut r = catch_unwind(AssertUnwindSafe(t.run));
        let ms = start.elapsed().as_millis();
        let host_after = host_nodes();
        if host_after != host_before {
            println!(
                "{} changed the host's devices: {host_before:?} -> {host_after:?}",
                t.name
            );
            r = Err(Box::new("host state changed"));
        }
        match r {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {} ... ok ({ms} ms)", t.name);
            }
            Ok(Err(Outcome::Skip(why))) => {
                skipped += 1;
                println!("test {} ... SKIPPED: {why}", t.name);
            }
            Err(_) => {
                failed += 1;
                failures.push(t.name);
                println!("test {} ... FAILED ({ms} ms)", t.name);
            }
        }
    }
    let teardowns = std::mem::take(&mut *TEARDOWNS.lock().unwrap());
    for f in teardowns.into_iter().rev() {
        f();
    }
    if !failures.is_empty() {
        println!("\nfailures:\n    {}", failures.join("\n    "));
    }
    println!("\nintegration: {passed} passed, {failed} failed, {skipped} skipped");
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
