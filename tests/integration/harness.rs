//! A small test runner for tests that need root and real containers: each test passes, fails, or
//! is skipped with the reason printed, and the run ends with "N passed, N failed, N skipped".
//!
//! A skip is not a pass: `CHITIN_MUST_RUN` names the file (tests/must-run/) listing the tests an
//! environment must run, and a listed test that skips, or is not selected, fails the run; so does
//! a run in which no test passed.

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

/// The names in a must-run file: one a line, `#` starts a comment.
fn names_in(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The tests this environment must run. Every name in the lists beside it must be a test, and
/// every test must be in one of them: none can skip everywhere unnoticed.
fn must_run(tests: &[Test]) -> Vec<String> {
    let Some(path) = std::env::var_os("CHITIN_MUST_RUN").filter(|p| !p.is_empty()) else {
        return Vec::new();
    };
    let path = std::path::PathBuf::from(path);
    let mut every = Vec::new();
    for e in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let list = e.unwrap().path();
        for n in names_in(&list) {
            assert!(
                tests.iter().any(|t| t.name == n),
                "{}: {n} is not a test",
                list.display()
            );
            every.push(n);
        }
    }
    for t in tests {
        assert!(
            every.iter().any(|n| n == t.name),
            "{} is in no list of tests/must-run/",
            t.name
        );
    }
    names_in(&path)
}

pub fn main(tests: &[Test]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let must = must_run(tests);
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for t in tests {
        let listed = must.iter().any(|n| n == t.name);
        if !filter.is_empty() && !filter.iter().any(|f| t.name.contains(f.as_str())) {
            if listed {
                failed += 1;
                failures.push(t.name);
                println!(
                    "test {} ... FAILED: must run here, but the filter leaves it out",
                    t.name
                );
            }
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
            Ok(Err(Outcome::Skip(why))) if listed => {
                failed += 1;
                failures.push(t.name);
                println!(
                    "test {} ... FAILED: must run here, but skipped: {why}",
                    t.name
                );
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
    if passed == 0 {
        println!("no test passed");
    }
    std::process::exit(if failed > 0 || passed == 0 { 1 } else { 0 });
}
