#![no_main]
// the body is fuzz_targets::ecg_file (crates/fuzz-targets), which the corpus test replays
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::ecg_file(data));
