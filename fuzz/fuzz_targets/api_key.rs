//! Fuzz target `api_key`: the properties in `src/properties/api_key.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/properties/mod.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::api_key::check(data));
