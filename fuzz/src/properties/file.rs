//! The declarative file (`file::parse_document`). The input is the file's
//! text (UTF-8 only, as the loader reads it). Secrets come from a fixed
//! environment and from a scratch directory holding one secret file; inputs
//! naming a secret file outside that directory (`/dev/zero` would never end)
//! are skipped.
//! - Parsing never panics and is deterministic: the same text gives the same
//!   document or the same errors, in the same order.
//! - A refused file names at least one problem, and no error repeats a
//!   secret's value.
//! - A file that validates is one the server accepts (`Policy::build`
//!   succeeds: what `gatekeeper check` calls valid, `serve` and reload
//!   load), and its route patterns print back to themselves.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gatekeeper::core::model::{DomainPattern, MethodRule, PathPattern};
use gatekeeper::core::policy::Policy;
use gatekeeper::sources::file_format::{parse_document, FileError};

/// The value of every `{ env = … }` secret the fixed environment knows.
const ENV_SECRET: &str = "fuzz-env-secret-value";
/// The content of the one secret file in the scratch directory.
const FILE_SECRET: &str = "fuzz-file-secret-value";
/// Its name.
pub const SECRET_FILE: &str = "team-a.secret";

fn env(name: &str) -> Option<String> {
    match name {
        "EMPTY" => Some(String::new()),
        "TEAM_A_HMAC_SECRET" | "DEMO_OPS_HMAC_SECRET" | "FUZZ_SECRET" => {
            Some(ENV_SECRET.to_owned())
        }
        _ => None,
    }
}

/// The scratch directory holding `SECRET_FILE`, shared by every process
/// that runs these checks: the file is written aside and renamed into
/// place, so a reader never sees it half written.
fn base_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("gatekeeper-fuzz-file");
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let aside = dir.join(format!(".{SECRET_FILE}.{}", std::process::id()));
        std::fs::write(&aside, format!("{FILE_SECRET}\n")).expect("a secret file");
        std::fs::rename(&aside, dir.join(SECRET_FILE)).expect("a secret file");
        dir
    })
}

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_outside_file(text) {
        return;
    }
    let parse = || parse_document(text, &env, base_dir()).map_err(|e| e.0);
    let got = parse();
    assert_eq!(parse(), got, "not deterministic: {text:?}");
    match got {
        Ok(doc) => {
            let (routes, keys) = (doc.routes.len(), doc.keys.len());
            check_patterns(&doc.routes, text);
            let policy = Policy::build(doc).unwrap_or_else(|e| {
                panic!("the file validates but the policy refuses it ({e}): {text:?}")
            });
            let counts = policy.counts();
            assert_eq!(counts.routes, routes, "{text:?}");
            assert_eq!(counts.keys, keys, "{text:?}");
        }
        Err(errors) => check_errors(&errors, text),
    }
}

/// Whether any `file = "…"` string in the TOML is not a plain name in the
/// scratch directory. Text that is not TOML reads no secret at all.
fn names_outside_file(text: &str) -> bool {
    fn outside(v: &toml::Value) -> bool {
        match v {
            toml::Value::Table(t) => t.iter().any(|(k, v)| match (k.as_str(), v) {
                ("file", toml::Value::String(name)) => !is_plain_name(name) || outside(v),
                _ => outside(v),
            }),
            toml::Value::Array(a) => a.iter().any(outside),
            _ => false,
        }
    }
    text.parse::<toml::Table>()
        .is_ok_and(|t| outside(&toml::Value::Table(t)))
}

fn is_plain_name(name: &str) -> bool {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    !name.is_empty() && name != "." && name != ".." && name.bytes().all(plain)
}

fn check_errors(errors: &[FileError], text: &str) {
    assert!(!errors.is_empty(), "refused with no error: {text:?}");
    for secret in [ENV_SECRET, FILE_SECRET] {
        if text.contains(secret) {
            continue;
        }
        for e in errors {
            let leaked = e.place.contains(secret) || e.message.contains(secret);
            assert!(!leaked, "an error repeats a secret: {e}");
        }
    }
}

fn check_patterns(routes: &[gatekeeper::core::model::Route], text: &str) {
    for r in routes {
        let domain = DomainPattern::parse(&r.domain.to_string());
        assert_eq!(domain.as_ref(), Ok(&r.domain), "{text:?}");
        let path = PathPattern::parse(&r.path.to_string());
        assert_eq!(path.as_ref(), Ok(&r.path), "{text:?}");
        for rule in r.methods.values().chain(&r.any_method) {
            assert_eq!(MethodRule::parse(&rule.names()), Ok(*rule), "{text:?}");
        }
    }
}
