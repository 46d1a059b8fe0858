#![no_main]
// the body is fuzz_targets::find_identifier (crates/fuzz-targets), which the corpus test replays
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::find_identifier(data));
