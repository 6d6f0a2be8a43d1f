#![no_main]
//! `opsctl::fuzz::units`: see src/fuzz.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| opsctl::fuzz::units(data));
