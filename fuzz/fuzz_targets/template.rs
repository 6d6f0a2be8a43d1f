#![no_main]
//! `opsctl::fuzz::template`: see src/fuzz.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| opsctl::fuzz::template(data));
