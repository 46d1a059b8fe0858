#![no_main]
// the body is fuzz_targets::hl7_message (crates/fuzz-targets), which the corpus test replays
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::hl7_message(data));
