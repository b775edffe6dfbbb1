//! Credential extraction (`core::credential::extract`). The input is up to
//! three lines: `Authorization`, `X-API-Key` and the query string (a missing
//! line is an absent header; the query only when it is UTF-8). Judged with
//! the query key both enabled and disabled:
//! - precedence: a non-blank `Authorization` decides alone, else a non-blank
//!   `X-API-Key`, else (only when enabled) the query; a credential that is
//!   present, even malformed, never falls through to the next source;
//! - the scheme word is case-insensitive;
//! - an API key is non-empty; one from a header has no surrounding blanks,
//!   and one from `Authorization` is printable ASCII without blanks;
//! - a Basic credential has a valid client id and a non-empty secret, and
//!   `Basic base64(id:secret)` reads back to the same;
//! - an HMAC credential, written back as a header, reads back to the same.

use base64::Engine as _;

use gatekeeper::core::credential::{extract, CredentialHeaders, HmacParams, Presented};
use gatekeeper::core::model::{valid_id, CredentialType};

use super::hmac_header::serialise;

/// `Presented`, comparable and printable (these are fuzz inputs, not
/// secrets).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    None,
    ApiKey(String),
    Basic(String, Vec<u8>),
    Hmac(HmacParams),
    Invalid(Option<CredentialType>),
}

fn seen(p: &Presented<'_>) -> Seen {
    match p {
        Presented::None => Seen::None,
        Presented::ApiKey(key) => Seen::ApiKey(key.to_string()),
        Presented::Basic { client_id, secret } => {
            Seen::Basic(client_id.to_string(), secret.expose().to_vec())
        }
        Presented::Hmac(params) => Seen::Hmac(params.clone()),
        Presented::Invalid(t) => Seen::Invalid(*t),
    }
}

fn extracted(h: &CredentialHeaders<'_>, allow_query: bool) -> Seen {
    seen(&extract(h, allow_query))
}

fn is_blank(v: &[u8]) -> bool {
    v.iter().all(|b| *b == b' ' || *b == b'\t')
}

fn headers(data: &[u8]) -> CredentialHeaders<'_> {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    CredentialHeaders {
        authorization: lines.next(),
        x_api_key: lines.next(),
        query: lines.next().and_then(|q| std::str::from_utf8(q).ok()),
    }
}

pub fn check(data: &[u8]) {
    let h = headers(data);
    let shown = data.escape_ascii().to_string();
    for allow_query in [false, true] {
        let got = extracted(&h, allow_query);
        assert_eq!(
            extracted(&h, allow_query),
            got,
            "not deterministic: {shown}"
        );
        check_precedence(&h, allow_query, &got, &shown);
        check_form(&h, &got, &shown);
    }
    check_scheme_case(&h, &shown);
}

fn check_precedence(h: &CredentialHeaders<'_>, allow_query: bool, got: &Seen, shown: &str) {
    let alone = |h: CredentialHeaders<'_>| extracted(&h, allow_query);
    if let Some(auth) = h.authorization.filter(|v| !is_blank(v)) {
        let only = alone(CredentialHeaders {
            authorization: Some(auth),
            ..CredentialHeaders::default()
        });
        assert_eq!(got, &only, "Authorization decides alone: {shown}");
        assert_ne!(got, &Seen::None, "Authorization ignored: {shown}");
    } else if let Some(key) = h.x_api_key.filter(|v| !is_blank(v)) {
        let only = alone(CredentialHeaders {
            x_api_key: Some(key),
            ..CredentialHeaders::default()
        });
        assert_eq!(got, &only, "X-API-Key decides alone: {shown}");
        assert_ne!(got, &Seen::None, "X-API-Key ignored: {shown}");
    } else if !allow_query {
        assert_eq!(got, &Seen::None, "query read while disabled: {shown}");
    }
}

fn check_form(h: &CredentialHeaders<'_>, got: &Seen, shown: &str) {
    let from_auth = h.authorization.is_some_and(|v| !is_blank(v));
    let from_header = from_auth || h.x_api_key.is_some_and(|v| !is_blank(v));
    match got {
        Seen::ApiKey(key) => {
            assert!(!key.is_empty(), "empty key from {shown}");
            let blank = |c: char| c == ' ' || c == '\t';
            if from_header {
                let trimmed = key.trim_matches(blank);
                assert_eq!(trimmed, key, "untrimmed key from {shown}");
            }
            if from_auth {
                let printable = key.bytes().all(|b| b.is_ascii_graphic());
                assert!(printable, "key {key:?} from Authorization {shown}");
            }
        }
        Seen::Basic(id, secret) => check_basic(id, secret, shown),
        Seen::Hmac(params) => check_hmac(params, shown),
        Seen::None | Seen::Invalid(_) => {}
    }
}

fn check_basic(id: &str, secret: &[u8], shown: &str) {
    assert!(valid_id(id), "Basic client id {id:?} from {shown}");
    assert!(!secret.is_empty(), "empty Basic secret from {shown}");
    let token =
        base64::engine::general_purpose::STANDARD.encode([id.as_bytes(), b":", secret].concat());
    let header = format!("Basic {token}");
    let again = extracted(
        &CredentialHeaders {
            authorization: Some(header.as_bytes()),
            ..CredentialHeaders::default()
        },
        false,
    );
    assert_eq!(
        again,
        Seen::Basic(id.to_owned(), secret.to_vec()),
        "{header}"
    );
}

fn check_hmac(params: &HmacParams, shown: &str) {
    let header = format!("HMAC {}", serialise(params, 0, true, ""));
    let again = extracted(
        &CredentialHeaders {
            authorization: Some(header.as_bytes()),
            ..CredentialHeaders::default()
        },
        false,
    );
    assert_eq!(
        again,
        Seen::Hmac(params.clone()),
        "{shown} written as {header}"
    );
}

/// The first word of a non-blank `Authorization`, when it is a scheme,
/// read the same in any case.
fn check_scheme_case(h: &CredentialHeaders<'_>, shown: &str) {
    let Some(auth) = h.authorization.filter(|v| !is_blank(v)) else {
        return;
    };
    let start = auth
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(0);
    let len = auth[start..]
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(auth.len() - start);
    let word = &auth[start..start + len];
    let schemes: [&[u8]; 4] = [b"hmac", b"basic", b"bearer", b"apikey"];
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(word)) {
        return;
    }
    let only = |a: &[u8]| {
        extracted(
            &CredentialHeaders {
                authorization: Some(a),
                ..CredentialHeaders::default()
            },
            false,
        )
    };
    let want = only(auth);
    for case in [u8::to_ascii_uppercase, u8::to_ascii_lowercase] {
        let mut changed = auth.to_vec();
        changed[start..start + len]
            .iter_mut()
            .for_each(|b| *b = case(b));
        assert_eq!(only(&changed), want, "{shown}: scheme case changed");
    }
}
