//! The bodies of the fuzz targets (tests/fuzz runs them under libFuzzer), kept here so that every
//! input that ever made one fail is replayed as a unit test (tests/fuzz/regressions/TARGET/), with
//! the seed corpus (tests/fuzz/corpus/TARGET/).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::plan::{Plan, PlanError};

/// Where the generator's choices come from.
pub trait Choices {
    fn next(&mut self) -> u64;
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
pub struct Rng(pub u64);

impl Choices for Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A fuzzer's input: each choice takes as few bytes as it needs, so that a mutation changes one
/// choice; zeros once the input is used up.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> u64 {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.iter().fold(0, |v, b| v << 8 | u64::from(*b))
    }
}

impl Choices for Bytes<'_> {
    fn next(&mut self) -> u64 {
        self.take(8)
    }
    fn below(&mut self, n: usize) -> usize {
        let width = if n <= 0x100 { 1 } else { 2 };
        (self.take(width) % n as u64) as usize
    }
}

/// A bundle to plan against: a rootfs with the files the planner reads (users and groups), in
/// the build's own target directory (a fixed path under /tmp could be planted by another user).
fn bundle() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-bundle");
        let etc = dir.join("rootfs/etc");
        std::fs::create_dir_all(&etc).expect("making the fuzz bundle");
        // Written aside and renamed: parallel tests and fuzz jobs share the bundle.
        for (name, text) in [
            ("passwd", "root:x:0:0::/root:/bin/sh\nu:x:7:8::/:/bin/sh\n"),
            ("group", "root:x:0:\ng:x:8:u\n"),
        ] {
            let tmp = etc.join(format!("{name}.{}", std::process::id()));
            std::fs::write(&tmp, text).expect("writing the fuzz bundle");
            std::fs::rename(&tmp, etc.join(name)).expect("writing the fuzz bundle");
        }
        dir
    })
}

/// config.json's bytes through parsing, planning and compiling the seccomp filter: any input may
/// be refused, none may panic, and a refusal names what it refuses.
pub fn config(data: &[u8]) {
    let dir = bundle();
    let path = dir.join("config.json");
    let config = match crate::plan::config::parse(data, &path) {
        Ok(s) => s,
        // Bad JSON, or a section of another platform's, named.
        Err(e) => {
            let named = matches!(&e, PlanError::Field { field, .. } if !field.is_empty());
            return assert!(matches!(e, PlanError::Parse { .. }) || named, "{e}");
        }
    };
    let plan = match Plan::new(
        &config,
        dir,
        "fuzz",
        &crate::plan::host::RealHost,
        crate::plan::Driver::Cgroupfs,
    ) {
        Ok(p) => p,
        Err(e) => {
            let named = match &e {
                PlanError::Field { field, .. } => !field.is_empty(),
                PlanError::Seccomp(_) | PlanError::Bundle { .. } | PlanError::Saved { .. } => true,
                PlanError::Parse { .. } | PlanError::Options(_) => false,
            };
            return assert!(named, "a refusal that names no field: {e}");
        }
    };
    if let Err(e) = crate::seccomp::prepare(
        plan.seccomp.as_ref(),
        plan.seccomp_beneath.as_ref(),
        &plan.annotations,
    ) {
        assert!(e.to_string().starts_with("linux.seccomp"), "{e}");
    }
}

/// Numbers at the edges of the integer types of the spec's fields, and a fraction.
const NUMBERS: [&str; 12] = [
    "0",
    "1",
    "-1",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "0.5",
];

/// Strings that paths, names and option lists should refuse or survive.
const STRINGS: [&str; 12] = [
    "",
    "/",
    "..",
    "../../..",
    "/proc/self/fd/3",
    "/proc/self/exe",
    "a/../../b",
    "\0",
    "rbind",
    "tmpfs",
    "SCMP_ACT_ALLOW",
    "user",
];

/// A change of a config.json's tree, for libFuzzer's custom mutator (tests/fuzz): byte mutations
/// seldom keep JSON valid or turn a number into one at a type's edge, which is where the
/// planner's checks are. None if `data` is not JSON.
pub fn mutate_config(data: &[u8], seed: u32) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(data).ok()?;
    let mut rng = Rng(u64::from(seed) << 1 | 1);
    for _ in 0..=rng.below(3) {
        mutate(&mut v, &mut rng);
    }
    serde_json::to_vec(&v).ok()
}

/// Walks to a random node (stopping early a third of the time) and changes it.
fn mutate(v: &mut Value, rng: &mut Rng) {
    let mut node = v;
    loop {
        let n = match &*node {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        if n == 0 || rng.below(3) == 0 {
            break;
        }
        let i = rng.below(n);
        node = match node {
            Value::Array(a) => &mut a[i],
            Value::Object(o) => o.values_mut().nth(i).expect("i < len"),
            _ => unreachable!("only containers have children"),
        };
    }
    let number = |rng: &mut Rng| -> Value {
        serde_json::from_str(NUMBERS[rng.below(NUMBERS.len())]).expect("a JSON number")
    };
    match (node, rng.below(4)) {
        (Value::Array(a), 0) if !a.is_empty() => {
            let i = rng.below(a.len());
            let copy = a[i].clone();
            a.insert(i, copy);
        }
        (Value::Array(a), 1) if !a.is_empty() => {
            a.remove(rng.below(a.len()));
        }
        (Value::Object(o), 0 | 1) if !o.is_empty() => {
            let key = o.keys().nth(rng.below(o.len())).cloned().expect("i < len");
            o.remove(&key);
        }
        (node @ Value::Number(_), 0 | 1) => *node = number(rng),
        (node, 0) => *node = number(rng),
        (node, 1) => *node = Value::from(STRINGS[rng.below(STRINGS.len())]),
        (node, 2) => {
            *node = [Value::Null, Value::Bool(true), Value::Array(vec![])][rng.below(3)].clone()
        }
        (node, _) => *node = Value::Object(Default::default()),
    }
}

/// A random seccomp profile compiled by chitin and by libseccomp: every decision must match.
#[cfg(feature = "fuzzing")]
pub use crate::seccomp::differential::fuzz as seccomp;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Runs a target on its seed corpus and on every input that once made it fail.
    fn replay(target: &str, run: fn(&[u8])) -> usize {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
        let mut n = 0;
        for dir in ["corpus", "regressions"] {
            let dir = fuzz.join(dir).join(target);
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = e.unwrap().path();
                println!("replaying {}", path.display());
                run(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        n
    }

    #[test]
    fn config_corpus_and_regressions() {
        assert!(replay("config", super::config) >= 3);
    }

    /// The tree mutator keeps JSON valid and gets past the parser to the planner's checks.
    #[test]
    fn config_mutations_reach_the_planner() {
        let seed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/config/userns.json"),
        )
        .unwrap();
        let dir = super::bundle();
        let mut refused_by_planner = 0;
        for i in 0..500 {
            let out = super::mutate_config(&seed, i).expect("the seed is JSON");
            let Ok(config) = crate::plan::config::parse(&out, &dir.join("config.json")) else {
                continue;
            };
            if crate::plan::Plan::new(
                &config,
                dir,
                "fuzz",
                &crate::plan::host::RealHost,
                crate::plan::Driver::Cgroupfs,
            )
            .is_err()
            {
                refused_by_planner += 1;
            }
            super::config(&out);
        }
        assert!(refused_by_planner > 50, "{refused_by_planner} of 500");
    }

    #[cfg(all(target_env = "gnu", any(target_arch = "x86_64", target_arch = "s390x")))]
    #[test]
    fn seccomp_corpus_and_regressions() {
        assert!(replay("seccomp", crate::seccomp::differential::fuzz) >= 4);
    }
}
