//! config.json bytes through parsing, planning and the seccomp compiler (chitin::fuzzing::config).
//! Half the mutations are libFuzzer's own, on bytes (for the parser); half change the JSON tree
//! (chitin::fuzzing::mutate_config), which reaches the planner's checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chitin::fuzzing::config(data));

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if seed % 2 == 0 {
        if let Some(out) = chitin::fuzzing::mutate_config(&data[..size], seed >> 1) {
            if out.len() <= max_size {
                data[..out.len()].copy_from_slice(&out);
                return out.len();
            }
        }
    }
    libfuzzer_sys::fuzzer_mutate(data, size, max_size)
});
