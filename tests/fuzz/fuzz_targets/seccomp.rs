//! A seccomp profile and its probes chosen by the input, compiled by chitin and by libseccomp:
//! every decision must match (chitin::fuzzing::seccomp).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chitin::fuzzing::seccomp(data));
