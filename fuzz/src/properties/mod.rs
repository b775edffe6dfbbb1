//! The properties the fuzz targets check, one module per parser. Each
//! `check(data)` panics when a property fails, so a fuzzer reports the input
//! as a crash; it returns quietly for any other input.
//!
//! This code is compiled twice: into each fuzz target (`fuzz_targets/*.rs`)
//! and into the main crate's `tests/fuzz_regressions.rs`, which replays every
//! file of `fuzz/corpus/<target>/` through the same `check`. So it uses only
//! the gatekeeper library's public API and crates the main crate depends on,
//! and it must stay deterministic: no clock, no randomness, no I/O beyond the
//! `file` target's scratch directory.

pub mod api_key;
pub mod credential;
pub mod file;
pub mod fixed_policy;
pub mod hmac_header;
pub mod host;
pub mod model_body;
pub mod path;

/// A target's check: panics when a property fails.
pub type Check = fn(&[u8]);

/// Every target: its name (the corpus directory `fuzz/corpus/<name>/` and the
/// binary `fuzz_targets/<name>.rs`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("path", path::check),
    ("host", host::check),
    ("credential", credential::check),
    ("hmac_header", hmac_header::check),
    ("api_key", api_key::check),
    ("file", file::check),
    ("model_body", model_body::check),
];

/// A small deterministic generator, seeded from the input, for the variants
/// a check derives (re-encoding masks, field orders, typo positions): the
/// same input always gets the same variants, so every crash replays.
pub struct Variants(u64);

impl Variants {
    /// Seeded with FNV-1a of `data` (never zero).
    pub fn of(data: &[u8]) -> Variants {
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Variants(hash | 1)
    }

    /// xorshift64.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `%XX` for `byte`, upper- or lower-case hex.
pub fn percent(byte: u8, upper: bool) -> String {
    match upper {
        true => format!("%{byte:02X}"),
        false => format!("%{byte:02x}"),
    }
}
