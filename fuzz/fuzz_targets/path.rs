//! Fuzz target `path`: the properties in `src/properties/path.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/properties/mod.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::path::check(data));
