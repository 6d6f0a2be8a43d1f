#![no_main]
//! `opsctl::fuzz::inventory`: see src/fuzz.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| opsctl::fuzz::inventory(data));
