//! Fuzz target `model_body`: the properties in `src/properties/model_body.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../src/properties/mod.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::model_body::check(data));
