#![no_main]
//! `opsctl::fuzz::runbook`: see src/fuzz.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| opsctl::fuzz::runbook(data));
