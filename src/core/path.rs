//! Decoding and normalising the raw `X-Original-URI` into the path routes are
//! matched on, exactly as nginx computes `$uri` (`ngx_http_parse_complex_uri`
//! with `merge_slashes on`): split off the query at the first `?`,
//! percent-decode once, resolve `.` / `..` segments, merge repeated slashes.
//!
//! This module owns the path-safety rules of DESIGN §4, §10 and §11: what is
//! malformed (`bad_request`) and what is ambiguous (`ambiguous_path`). When a
//! URI could be read two ways it is refused rather than guessed at. Decisions
//! beyond the design, following what nginx does:
//! - a raw `#` in the path is ambiguous: nginx ends `$uri` at it (a fragment
//!   that a client should never send), so the path nginx routes on and the
//!   bytes around it disagree;
//! - raw non-ASCII bytes are kept as they are (nginx copies them into `$uri`
//!   verbatim), so `/café` and `/caf%C3%A9` are the same path; both the raw
//!   path and the decoded one must be valid UTF-8, or the path is ambiguous;
//! - a raw space ends nginx's request target, so one here is malformed;
//! - a query that is not valid UTF-8 is malformed (it is kept as text).
//!
//! It must not do I/O, look at the route table, or panic on any input.

/// The longest `X-Original-URI` accepted, query included. nginx's default
/// `large_client_header_buffers` caps a request line at 8 KiB.
pub const MAX_URI_LEN: usize = 16 * 1024;

/// A request target split and normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalisedUri {
    /// The normalised path: what routes match.
    pub path: String,
    /// The raw path as sent, up to the first `?`: what HMAC signatures cover.
    pub raw_path: String,
    /// The raw query, after the first `?`, when there is one.
    pub query: Option<String>,
}

/// Why a URI was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not a request target at all: reason `bad_request`.
    Malformed,
    /// A target nginx and gatekeeper could read differently: reason
    /// `ambiguous_path`.
    Ambiguous,
}

use PathError::{Ambiguous, Malformed};

/// Decodes and normalises `raw_uri` (`$request_uri`). When `original_path`
/// (`$uri`, from `X-Original-Path`) is given, the result must equal it byte
/// for byte. Malformed is checked before ambiguous.
pub fn normalise(raw_uri: &[u8], original_path: Option<&[u8]>) -> Result<NormalisedUri, PathError> {
    let (raw_path, query) = split_query(raw_uri);
    check_well_formed(raw_uri.len(), raw_path)?;
    let query = query
        .map(|q| String::from_utf8(q.to_vec()).map_err(|_| Malformed))
        .transpose()?;
    // The raw path is signed as text; a character split between raw and
    // escaped bytes has no single spelling.
    let raw_path = String::from_utf8(raw_path.to_vec()).map_err(|_| Ambiguous)?;
    let decoded = decode(raw_path.as_bytes())?;
    check_decoded(&decoded)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Ambiguous)?;
    let path = resolve_segments(&decoded)?;
    if original_path.is_some_and(|orig| orig != path.as_bytes()) {
        return Err(Ambiguous);
    }
    Ok(NormalisedUri {
        path,
        raw_path,
        query,
    })
}

/// Splits at the first `?`: escapes in the query are not the path's business.
fn split_query(raw_uri: &[u8]) -> (&[u8], Option<&[u8]>) {
    match raw_uri.iter().position(|&b| b == b'?') {
        Some(i) => (&raw_uri[..i], Some(&raw_uri[i + 1..])),
        None => (raw_uri, None),
    }
}

/// The malformed cases: what nginx itself would reject with a 400 before
/// routing, plus our length bound.
fn check_well_formed(uri_len: usize, raw_path: &[u8]) -> Result<(), PathError> {
    if uri_len > MAX_URI_LEN || raw_path.first() != Some(&b'/') || raw_path.contains(&b' ') {
        return Err(Malformed);
    }
    let mut rest = raw_path;
    while let Some(i) = rest.iter().position(|&b| b == b'%') {
        let escape = rest.get(i + 1..i + 3).ok_or(Malformed)?;
        escape_value(escape).ok_or(Malformed)?;
        rest = &rest[i + 3..];
    }
    Ok(())
}

/// The byte two hex digits stand for (either case).
fn escape_value(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match pair {
        [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}

/// Percent-decodes once. An escape that hides a separator (`/`, `\`, `.`,
/// `;`) or NUL is ambiguous: nginx would act on the decoded byte, proxies and
/// upstreams might not. Raw `\`, `;` and `#` are ambiguous for the same
/// reason (upstream path parameters, Windows separators, a fragment).
fn decode(raw_path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw_path.len());
    let mut i = 0;
    while let Some(&b) = raw_path.get(i) {
        if b == b'%' {
            let value = raw_path.get(i + 1..i + 3).and_then(escape_value);
            let value = value.ok_or(Malformed)?;
            if matches!(value, b'/' | b'\\' | b'.' | b';' | 0) {
                return Err(Ambiguous);
            }
            out.push(value);
            i += 3;
        } else {
            if matches!(b, b'\\' | b';' | b'#') {
                return Err(Ambiguous);
            }
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Checks on the decoded bytes: no control character, and no escape of a
/// separator or NUL left behind by double (or deeper) encoding, which a
/// second decoder downstream would turn into one.
fn check_decoded(decoded: &[u8]) -> Result<(), PathError> {
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(Ambiguous);
    }
    let hides_separator = decoded
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'%')
        .any(|(i, _)| escapes_separator(decoded.get(i + 1..).unwrap_or_default()));
    if hides_separator {
        return Err(Ambiguous);
    }
    Ok(())
}

/// Whether the text after a decoded `%` is `(25)*` then the hex of `/`, `\`,
/// `.`, `;` or NUL: `%2e`, `%252e`, `%25252e`, ... once more decoded.
fn escapes_separator(mut after_percent: &[u8]) -> bool {
    while let Some(rest) = after_percent.strip_prefix(b"25") {
        after_percent = rest;
    }
    let value = after_percent.get(..2).and_then(escape_value);
    matches!(value, Some(b'/' | b'\\' | b'.' | b';' | 0))
}

/// Resolves `.` and `..` and merges slashes as nginx does: a path ending in
/// `/`, `/.` or `/..` keeps a trailing slash; `..` above the root is refused
/// (nginx answers 400 there too). `decoded` starts with `/`.
fn resolve_segments(decoded: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        trailing_slash = true;
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop().ok_or(Ambiguous)?;
            }
            name => {
                kept.push(name);
                trailing_slash = false;
            }
        }
    }
    // One allocation, sized for the result: this runs for every request.
    let mut path = String::with_capacity(decoded.len() + 1);
    for name in &kept {
        path.push('/');
        path.push_str(name);
    }
    if kept.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
