#![no_main]
// the body is fuzz_targets::commitment_request (crates/fuzz-targets), which the corpus test replays
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::commitment_request(data));
