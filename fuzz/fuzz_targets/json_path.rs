#![no_main]
//! `opsctl::fuzz::json_path`: see src/fuzz.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| opsctl::fuzz::json_path(data));
