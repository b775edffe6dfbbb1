//! Which credential a request presents, and in what form (DESIGN §4, §10,
//! §11).
//!
//! This module owns the precedence rules (`Authorization`, else `X-API-Key`,
//! else — only when enabled — the `api_key` query parameter) and the syntax of
//! each scheme: Basic's base64 `client_id:secret`, the HMAC header's
//! parameters, bearer and bare keys. A credential that is present but
//! malformed is reported as such and never falls through to the next source.
//!
//! It must not verify anything (no look-ups, no bcrypt, no MAC, no clock) and
//! must never put a key or secret in `Debug` or error text. It never panics,
//! whatever bytes arrive.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;

use super::ids::ClientId;
use super::model::{CredentialType, Secret};

/// The request parts a credential can come from, as nginx forwarded them.
/// No `Debug`: it holds raw credentials.
#[derive(Clone, Copy, Default)]
pub struct CredentialHeaders<'a> {
    pub authorization: Option<&'a [u8]>,
    pub x_api_key: Option<&'a [u8]>,
    /// The raw query string of `X-Original-URI`, without the `?`.
    pub query: Option<&'a str>,
}

/// The credential a request presents. Its `Debug` prints no key or secret.
#[derive(Clone)]
pub enum Presented<'a> {
    None,
    /// An API key, not yet classified. Borrowed from a header, or owned when
    /// it was percent-decoded from the query string.
    ApiKey(Cow<'a, str>),
    /// A decoded Basic credential; `secret` is non-empty.
    Basic {
        client_id: ClientId,
        secret: Secret,
    },
    Hmac(HmacParams),
    /// Present but malformed; the type when the scheme was recognisable.
    Invalid(Option<CredentialType>),
}

impl Presented<'_> {
    pub fn credential_type(&self) -> Option<CredentialType> {
        match self {
            Presented::None => None,
            Presented::ApiKey(_) => Some(CredentialType::ApiKey),
            Presented::Basic { .. } => Some(CredentialType::Basic),
            Presented::Hmac(_) => Some(CredentialType::Hmac),
            Presented::Invalid(t) => *t,
        }
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presented::None => f.write_str("None"),
            Presented::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            // `client_id` is an id, not a secret, and `Secret`'s Debug is redacted.
            Presented::Basic { client_id, secret } => f
                .debug_struct("Basic")
                .field("client_id", client_id)
                .field("secret", secret)
                .finish(),
            Presented::Hmac(p) => f.debug_tuple("Hmac").field(p).finish(),
            Presented::Invalid(t) => f.debug_tuple("Invalid").field(t).finish(),
        }
    }
}

/// The parameters of `Authorization: HMAC …`. None of them is secret: the
/// signature is a MAC, checked later against the client's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacParams {
    pub client_id: ClientId,
    /// Unix seconds.
    pub timestamp: i64,
    pub nonce: String,
    pub signature: [u8; 32],
}

/// Picks the one credential the request presents. An empty or
/// whitespace-only header counts as absent.
pub fn extract<'a>(h: &CredentialHeaders<'a>, allow_query_key: bool) -> Presented<'a> {
    if let Some(raw) = h.authorization.filter(|v| !is_blank(v)) {
        return from_authorization(raw);
    }
    if let Some(raw) = h.x_api_key.filter(|v| !is_blank(v)) {
        return from_x_api_key(raw);
    }
    match h.query {
        Some(query) if allow_query_key => from_query(query),
        _ => Presented::None,
    }
}

/// HTTP's optional whitespace.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_blank(value: &[u8]) -> bool {
    value.iter().all(|b| *b == b' ' || *b == b'\t')
}

fn scheme_type(word: &str) -> Option<CredentialType> {
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    if is("hmac") {
        Some(CredentialType::Hmac)
    } else if is("basic") {
        Some(CredentialType::Basic)
    } else if is("bearer") || is("apikey") {
        Some(CredentialType::ApiKey)
    } else {
        None
    }
}

/// Every legitimate `Authorization` value is printable ASCII; anything else
/// (non-UTF-8, control characters) is refused before its scheme is read.
fn from_authorization(raw: &[u8]) -> Presented<'_> {
    let printable = raw.iter().all(|b| (0x20..=0x7e).contains(b) || *b == b'\t');
    let Some(value) = std::str::from_utf8(raw).ok().filter(|_| printable) else {
        return Presented::Invalid(None);
    };
    let value = value.trim_matches(is_ows);
    match value.split_once(is_ows) {
        Some((scheme, params)) => by_scheme(scheme, params.trim_start_matches(is_ows)),
        None => bare(value),
    }
}

/// A single word: a bare key (compatibility), unless it is a scheme name
/// with its parameters missing (`Authorization: Basic`).
fn bare(value: &str) -> Presented<'_> {
    match scheme_type(value) {
        Some(t) => Presented::Invalid(Some(t)),
        None => Presented::ApiKey(Cow::Borrowed(value)),
    }
}

fn by_scheme<'a>(scheme: &str, params: &'a str) -> Presented<'a> {
    match scheme_type(scheme) {
        Some(CredentialType::Hmac) => parse_hmac(params).map_or(
            Presented::Invalid(Some(CredentialType::Hmac)),
            Presented::Hmac,
        ),
        Some(CredentialType::Basic) => decode_basic(params).map_or(
            Presented::Invalid(Some(CredentialType::Basic)),
            |(client_id, secret)| Presented::Basic { client_id, secret },
        ),
        Some(CredentialType::ApiKey) if !params.contains(is_ows) => {
            Presented::ApiKey(Cow::Borrowed(params))
        }
        Some(CredentialType::ApiKey) => Presented::Invalid(Some(CredentialType::ApiKey)),
        None => Presented::Invalid(None),
    }
}

/// `base64(client_id:secret)`, standard alphabet with padding, split at the
/// first `:`. The client id must be a valid id (no client can have another)
/// and the secret non-empty (an empty secret is never a credential, and
/// refusing it here spares a bcrypt run).
fn decode_basic(token: &str) -> Option<(ClientId, Secret)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let (id, secret) = (&decoded[..colon], &decoded[colon + 1..]);
    let client_id = ClientId::parse(std::str::from_utf8(id).ok()?).ok()?;
    if secret.is_empty() {
        return None;
    }
    Some((client_id, Secret::new(secret.to_vec())))
}

/// Trimmed; a non-UTF-8 value is a malformed key. Further checks on the key
/// belong to `apikey::classify`.
fn from_x_api_key(raw: &[u8]) -> Presented<'_> {
    match std::str::from_utf8(raw) {
        Ok(key) => Presented::ApiKey(Cow::Borrowed(key.trim_matches(is_ows))),
        Err(_) => Presented::Invalid(Some(CredentialType::ApiKey)),
    }
}

/// The first `api_key` parameter, decoded as form data (`+` is a space, as
/// in Flask's `request.args`). An empty value is no credential, like an
/// empty header.
fn from_query(query: &str) -> Presented<'_> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let Some(raw) = query.split('&').find_map(api_key_value) else {
        return Presented::None;
    };
    if raw.is_empty() {
        return Presented::None;
    }
    match super::form::decode(raw) {
        Some(key) => Presented::ApiKey(key),
        None => Presented::Invalid(Some(CredentialType::ApiKey)),
    }
}

fn api_key_value(pair: &str) -> Option<&str> {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (name == "api_key").then_some(value)
}

/// Parses `client_id="…",timestamp="…",nonce="…",signature="…"`: the four
/// fields in any order, each exactly once, quoted or not, with optional
/// spaces around the commas. Anything else is `None`.
pub fn parse_hmac(params: &str) -> Option<HmacParams> {
    let mut fields: [Option<&str>; 4] = [None; 4];
    for part in params.split(',') {
        let (name, value) = part.trim_matches(is_ows).split_once('=')?;
        let slot = match name {
            "client_id" => &mut fields[0],
            "timestamp" => &mut fields[1],
            "nonce" => &mut fields[2],
            "signature" => &mut fields[3],
            _ => return None,
        };
        if slot.replace(unquote(value)?).is_some() {
            return None;
        }
    }
    let [client_id, timestamp, nonce, signature] = fields;
    Some(HmacParams {
        client_id: ClientId::parse(client_id?).ok()?,
        timestamp: parse_timestamp(timestamp?)?,
        nonce: nonce.filter(|n| valid_nonce(n))?.to_owned(),
        signature: parse_signature(signature?)?,
    })
}

/// `"v"` or `v`; a stray quote anywhere else is malformed.
fn unquote(value: &str) -> Option<&str> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    (!inner.contains('"')).then_some(inner)
}

/// Unix seconds: ASCII digits only. No sign: a signed or negative value is
/// malformed (`invalid_credentials`), not merely stale.
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// 1–128 visible ASCII characters, without `"` or `,`.
fn valid_nonce(nonce: &str) -> bool {
    (1..=128).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b',')
}

/// Exactly 64 lower-case hex characters, as the compatible scheme sends.
fn parse_signature(s: &str) -> Option<[u8; 32]> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if s.len() != 64 || !s.bytes().all(lower_hex) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
#[path = "credential_tests.rs"]
mod tests;
