//! URI normalisation (`core::path::normalise`) and the decision taken on the
//! normalised path (`Authorizer::decide`). The input is a raw
//! `X-Original-URI`. For every URI that is accepted:
//! - the parts are the input's: the raw path up to the first `?`, the query
//!   after it;
//! - the normalised path is in normal form: it starts with `/`, has no `//`,
//!   no `.` or `..` segment, no control character, `\` or `;`, and no escape
//!   (at any depth: `%2f`, `%252F`, ...) of `/`, `\`, `.`, `;` or NUL;
//! - normalisation is idempotent: the normalised path, with only `%`, `?`,
//!   `#` and space escaped (what a URI cannot carry raw), normalises to
//!   itself, and a path without those characters normalises to itself as is;
//! - the normalised path as `X-Original-Path` is accepted, anything else not;
//! - re-encoding never changes the outcome: percent-encoding any characters
//!   of the raw path, or flipping the case of its escapes, gives the same
//!   normalised path — or `ambiguous_path` when an encoded character is `/`
//!   or `.` — and the decision for the re-encoded URI (against a fixed
//!   policy, with and without a key) is the same as for the original, or a
//!   deny: a denied request is never allowed after re-encoding;
//! - without a credential (no key header, no `api_key` parameter), only a
//!   public route ever allows;
//! - the route a decision names is the one a plain scan of the fixed
//!   policy's routes picks for the normalised path (most specific domain,
//!   then most specific path).

use gatekeeper::core::decision::Reason;
use gatekeeper::core::path::{normalise, NormalisedUri, PathError};

use super::fixed_policy::{decide, expected_route, Outcome, CONTEXTS, HOST};
use super::{percent, Variants};

pub fn check(data: &[u8]) {
    let first = normalise(data, None);
    assert_eq!(normalise(data, None), first, "not deterministic");
    let Ok(uri) = first else {
        return;
    };
    let shown = data.escape_ascii().to_string();
    check_parts(data, &uri, &shown);
    check_normal_form(&uri.path, &shown);
    check_idempotent(&uri, &shown);
    check_original_path(data, &uri, &shown);
    let outcomes: Vec<Outcome> = CONTEXTS.iter().map(|&c| decide(c, data)).collect();
    check_reencodings(data, &uri, &outcomes, &shown);
    check_public_only_without_credentials(data, &outcomes, &shown);
    check_route_oracle(&uri.path, &outcomes, &shown);
}

/// `raw_path` and `query` are the input split at its first `?`.
fn check_parts(data: &[u8], uri: &NormalisedUri, shown: &str) {
    let mut joined = uri.raw_path.clone().into_bytes();
    if let Some(query) = &uri.query {
        joined.push(b'?');
        joined.extend_from_slice(query.as_bytes());
    }
    assert_eq!(joined, data, "parts of {shown}");
    assert!(!uri.raw_path.contains('?'), "raw path of {shown}");
}

fn check_normal_form(path: &str, shown: &str) {
    let why = |what: &str| format!("normalised {shown} to {path:?}, which {what}");
    assert!(path.starts_with('/'), "{}", why("does not start with /"));
    assert!(!path.contains("//"), "{}", why("has //"));
    let dot_segment = path[1..].split('/').any(|s| s == "." || s == "..");
    assert!(!dot_segment, "{}", why("has a dot segment"));
    let bad_char = |c: char| c.is_ascii_control() || c == '\\' || c == ';';
    assert!(
        !path.contains(bad_char),
        "{}",
        why("has a control, \\ or ;")
    );
    let hidden = path
        .match_indices('%')
        .any(|(i, _)| escapes_separator(&path.as_bytes()[i + 1..]));
    assert!(!hidden, "{}", why("has an escaped separator"));
}

/// Whether the text after a `%` is `(25)*XX` with `XX` the hex of `/`, `\`,
/// `.`, `;` or NUL, in either case: one or more decodings away from it.
fn escapes_separator(mut after: &[u8]) -> bool {
    while let Some(rest) = after.strip_prefix(b"25") {
        after = rest;
    }
    let hex = |b: &u8| char::from(*b).to_digit(16);
    match after {
        [hi, lo, ..] => match (hex(hi), hex(lo)) {
            (Some(hi), Some(lo)) => matches!(hi * 16 + lo, 0x2f | 0x5c | 0x2e | 0x3b | 0),
            _ => false,
        },
        _ => false,
    }
}

/// What a request target cannot carry raw: `%`, `?`, `#` and space.
fn escape_delimiters(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' | ' ' => out.push_str(&percent(c as u8, true)),
            _ => out.push(c),
        }
    }
    out
}

fn check_idempotent(uri: &NormalisedUri, shown: &str) {
    let escaped = escape_delimiters(&uri.path);
    let again = normalise(escaped.as_bytes(), None).map(|u| u.path);
    assert_eq!(again.as_ref(), Ok(&uri.path), "{shown} via {escaped:?}");
    if escaped == uri.path {
        let as_is = normalise(uri.path.as_bytes(), None).map(|u| u.path);
        assert_eq!(as_is.as_ref(), Ok(&uri.path), "{shown} as is");
    }
}

fn check_original_path(data: &[u8], uri: &NormalisedUri, shown: &str) {
    let same = normalise(data, Some(uri.path.as_bytes()));
    assert_eq!(
        same.as_ref(),
        Ok(uri),
        "{shown} with its own X-Original-Path"
    );
    let other = format!("{}x", uri.path);
    let differs = normalise(data, Some(other.as_bytes()));
    assert_eq!(differs, Err(PathError::Ambiguous), "{shown} with {other:?}");
}

// ---- Re-encoding. -------------------------------------------------------

/// The raw path's characters (start, length) that are not part of an escape:
/// what may be percent-encoded. Whole characters, because a character split
/// between raw and escaped bytes is refused by design; not the leading `/`,
/// without which a URI is no request target.
fn encodable_chars(raw_path: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut chars = raw_path.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '%' => drop((chars.next(), chars.next())),
            _ => out.push((i, c.len_utf8())),
        }
    }
    out
}

/// A re-encoding of the URI and whether it must be refused as ambiguous.
struct Reencoded {
    uri: Vec<u8>,
    encodes_separator: bool,
}

/// Encodes the chosen characters of the raw path; the query is kept.
fn encode(uri: &NormalisedUri, chosen: &[(usize, usize)], upper: bool) -> Reencoded {
    let raw = uri.raw_path.as_bytes();
    let mut out = Vec::with_capacity(raw.len() * 3);
    let (mut at, mut encodes_separator) = (0, false);
    for &(start, len) in chosen {
        out.extend_from_slice(&raw[at..start]);
        for &b in &raw[start..start + len] {
            out.extend_from_slice(percent(b, upper).as_bytes());
            encodes_separator |= matches!(b, b'/' | b'.');
        }
        at = start + len;
    }
    out.extend_from_slice(&raw[at..]);
    if let Some(query) = &uri.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    Reencoded {
        uri: out,
        encodes_separator,
    }
}

/// The raw path with the hex digits of its escapes in the other case.
fn flip_escape_case(uri: &NormalisedUri) -> Reencoded {
    let mut out = uri.raw_path.clone().into_bytes();
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'%' {
            for b in out.iter_mut().skip(i + 1).take(2) {
                *b = match b.is_ascii_uppercase() {
                    true => b.to_ascii_lowercase(),
                    false => b.to_ascii_uppercase(),
                };
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if let Some(query) = &uri.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    Reencoded {
        uri: out,
        encodes_separator: false,
    }
}

/// Every single character (the first 64), all of them in both cases, a few
/// pseudo-random subsets, and the escapes' case flipped.
fn reencodings(data: &[u8], uri: &NormalisedUri) -> (Vec<Reencoded>, Vec<Reencoded>) {
    let chars = encodable_chars(&uri.raw_path);
    let singles = chars.iter().take(64).map(|c| encode(uri, &[*c], true));
    let mut variants = Variants::of(data);
    let mut wholes = vec![
        encode(uri, &chars, true),
        encode(uri, &chars, false),
        flip_escape_case(uri),
    ];
    for _ in 0..4 {
        let mask = variants.next();
        let chosen: Vec<_> = chars
            .iter()
            .enumerate()
            .filter(|(i, _)| mask >> (i % 64) & 1 == 1)
            .map(|(_, c)| *c)
            .collect();
        wholes.push(encode(uri, &chosen, mask & 1 << 63 != 0));
    }
    (singles.collect(), wholes)
}

/// `outcomes`: the decisions for the original URI in each of `CONTEXTS`.
fn check_reencodings(data: &[u8], uri: &NormalisedUri, outcomes: &[Outcome], shown: &str) {
    let (singles, wholes) = reencodings(data, uri);
    for variant in singles.iter().chain(&wholes) {
        check_same_path(uri, variant, shown);
    }
    for variant in &wholes {
        check_same_decision(uri, &variant.uri, outcomes, shown);
    }
}

fn check_same_path(uri: &NormalisedUri, variant: &Reencoded, shown: &str) {
    let got = normalise(&variant.uri, None);
    let as_sent = variant.uri.escape_ascii();
    if variant.encodes_separator {
        assert_eq!(
            got,
            Err(PathError::Ambiguous),
            "{shown} re-encoded {as_sent}"
        );
        return;
    }
    let got = got.unwrap_or_else(|e| panic!("{shown} re-encoded {as_sent}: {e:?}"));
    assert_eq!(got.path, uri.path, "{shown} re-encoded {as_sent}");
    assert_eq!(got.query, uri.query, "{shown} re-encoded {as_sent}");
}

// ---- Decisions against the fixed policy. ------------------------------

fn check_same_decision(uri: &NormalisedUri, reencoded: &[u8], outcomes: &[Outcome], shown: &str) {
    let same_path = normalise(reencoded, None).is_ok_and(|u| u.path == uri.path);
    let as_sent = reencoded.escape_ascii();
    for (&context, original) in CONTEXTS.iter().zip(outcomes) {
        let again = decide(context, reencoded);
        if again.allow || same_path {
            assert_eq!(&again, original, "{context:?} {shown} re-encoded {as_sent}");
        }
    }
}

/// Contexts without a key header, for a URI without an `api_key` parameter.
fn check_public_only_without_credentials(data: &[u8], outcomes: &[Outcome], shown: &str) {
    let query = data.splitn(2, |b| *b == b'?').nth(1).unwrap_or_default();
    if query.windows(7).any(|w| w == b"api_key") {
        return;
    }
    let keyless = CONTEXTS
        .iter()
        .zip(outcomes)
        .filter(|((_, _, key), _)| key.is_none());
    for (context, outcome) in keyless {
        if outcome.allow {
            let route = outcome.route.as_deref();
            let public = matches!(route, Some("public" | "models"));
            assert!(
                public,
                "{context:?} {shown} allowed on {route:?} without a key"
            );
            assert_eq!(outcome.reason, Reason::NoAuthRequired, "{shown}");
        }
    }
}

fn check_route_oracle(path: &str, outcomes: &[Outcome], shown: &str) {
    for (context, outcome) in CONTEXTS.iter().zip(outcomes) {
        if matches!(outcome.reason, Reason::BadRequest | Reason::AmbiguousPath) {
            continue;
        }
        let host = context.1.map(|_| HOST);
        let want = expected_route(host, path);
        let got = outcome.route.as_deref();
        assert_eq!(got, want, "{context:?} {shown} normalised to {path:?}");
        let no_route = outcome.reason == Reason::NoRouteMatch;
        assert_eq!(no_route, want.is_none(), "{context:?} {shown}: {outcome:?}");
    }
}
