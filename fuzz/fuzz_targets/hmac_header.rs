//! Fuzz target `hmac_header`: the properties in `src/properties/hmac_header.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/properties/mod.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::hmac_header::check(data));
