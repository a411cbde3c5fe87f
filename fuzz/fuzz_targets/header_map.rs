#![no_main]
// Properties: see brickgate_core::fuzz_properties (replayed by `make test`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| brickgate_core::fuzz_properties::header_map(data));
