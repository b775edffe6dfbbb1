//! Fuzz target `credential`: the properties in `src/properties/credential.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/properties/mod.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::credential::check(data));
