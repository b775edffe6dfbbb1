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

use super::model::{valid_id, CredentialType, Secret};

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
    /// A decoded Basic credential; `client_id` is a valid id, `secret` is
    /// non-empty.
    Basic {
        client_id: String,
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
            // `client_id` is a validated id, and `Secret`'s Debug is redacted.
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
    pub client_id: String,
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
fn decode_basic(token: &str) -> Option<(String, Secret)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let (id, secret) = (&decoded[..colon], &decoded[colon + 1..]);
    let client_id = std::str::from_utf8(id).ok().filter(|id| valid_id(id))?;
    if secret.is_empty() {
        return None;
    }
    Some((client_id.to_owned(), Secret::new(secret.to_vec())))
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
    match form_decode(raw) {
        Some(key) => Presented::ApiKey(key),
        None => Presented::Invalid(Some(CredentialType::ApiKey)),
    }
}

fn api_key_value(pair: &str) -> Option<&str> {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (name == "api_key").then_some(value)
}

/// Percent- and `+`-decodes; `None` on a bad escape or non-UTF-8 result.
fn form_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => hex_pair(bytes.next()?, bytes.next()?)?,
            b'+' => b' ',
            other => other,
        });
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    let value = digit(hi)? * 16 + digit(lo)?;
    u8::try_from(value).ok()
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
        client_id: client_id.filter(|id| valid_id(id))?.to_owned(),
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
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use CredentialType::{ApiKey as K, Basic as B, Hmac as H};

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A comparable projection of `Presented` (which has no `PartialEq`, so
    /// secrets are never compared by accident in non-test code).
    #[derive(Debug, PartialEq)]
    enum Out {
        None,
        Key(String),
        Basic(String, Vec<u8>),
        Hmac(String),
        Invalid(Option<CredentialType>),
    }

    fn project(p: &Presented<'_>) -> Out {
        match p {
            Presented::None => Out::None,
            Presented::ApiKey(k) => Out::Key(k.to_string()),
            Presented::Basic { client_id, secret } => {
                Out::Basic(client_id.clone(), secret.expose().to_vec())
            }
            Presented::Hmac(p) => Out::Hmac(p.client_id.clone()),
            Presented::Invalid(t) => Out::Invalid(*t),
        }
    }

    fn key(k: &str) -> Out {
        Out::Key(k.to_owned())
    }

    fn basic(id: &str, secret: &[u8]) -> Out {
        Out::Basic(id.to_owned(), secret.to_vec())
    }

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    fn hmac_header(scheme: &str) -> String {
        format!(
            r#"{scheme} client_id="team-a",timestamp="1700000000",nonce="n-1",signature="{SIG}""#
        )
    }

    fn bad(t: CredentialType) -> Out {
        Out::Invalid(Some(t))
    }

    fn a(value: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        Some(value.as_ref().to_vec())
    }

    fn basic_hdr(raw: &[u8]) -> String {
        format!("Basic {}", b64(raw))
    }

    /// Authorization, X-API-Key, query, query key enabled, expected.
    type Row = (
        Option<Vec<u8>>,
        Option<&'static [u8]>,
        Option<&'static str>,
        bool,
        Out,
    );

    #[rustfmt::skip]
    fn table() -> Vec<Row> {
        let unquoted = format!("HMAC signature={SIG}, nonce=n-1,  timestamp=1700000000, client_id=team-a");
        let no_nonce = format!("HMAC client_id=team-a,timestamp=1,signature={SIG}");
        let team_a = || Out::Hmac("team-a".into());
        vec![
            (None, None, None, false, Out::None),
            // Schemes, case-insensitive; bare keys.
            (a("Bearer gk_abc"), None, None, false, key("gk_abc")),
            (a("bearer k1"), None, None, false, key("k1")),
            (a("BEARER k1"), None, None, false, key("k1")),
            (a("ApiKey k1"), None, None, false, key("k1")),
            (a("apikey k1"), None, None, false, key("k1")),
            (a("Bearer\tk1"), None, None, false, key("k1")),
            (a("  Bearer   k1  "), None, None, false, key("k1")),
            (a("k1"), None, None, false, key("k1")),
            (a("Bearer"), None, None, false, bad(K)),
            (a("Bearer a b"), None, None, false, bad(K)),
            (a("Token k1"), None, None, false, Out::Invalid(None)),
            (a("Digest username=x"), None, None, false, Out::Invalid(None)),
            (a(b"Bearer \xff\xfe"), None, None, false, Out::Invalid(None)),
            (a(b"Bearer a\x01"), None, None, false, Out::Invalid(None)),
            // Basic.
            (a(basic_hdr(b"team-a:pw")), None, None, false, basic("team-a", b"pw")),
            (a(format!("basic {}", b64(b"team-a:pw"))), None, None, false, basic("team-a", b"pw")),
            (a(basic_hdr(b"team-a:p:w")), None, None, false, basic("team-a", b"p:w")),
            (a("Basic !!!!"), None, None, false, bad(B)),
            (a(basic_hdr(b"team-a:pw1").trim_end_matches('=')), None, None, false, bad(B)),
            (a(basic_hdr(b"team-a")), None, None, false, bad(B)),
            (a(basic_hdr(b"team-a:")), None, None, false, bad(B)),
            (a(basic_hdr(b":pw")), None, None, false, bad(B)),
            (a(basic_hdr(b"team a:pw")), None, None, false, bad(B)),
            (a(basic_hdr(b"\xffa:pw")), None, None, false, bad(B)),
            (a(basic_hdr(b"team-a:pw") + " x"), None, None, false, bad(B)),
            (a("Basic"), None, None, false, bad(B)),
            // HMAC.
            (a(hmac_header("HMAC")), None, None, false, team_a()),
            (a(hmac_header("hmac")), None, None, false, team_a()),
            (a(&unquoted), None, None, false, team_a()),
            (a(hmac_header("HMAC").replace("abcdef", "ABCDEF")), None, None, false, bad(H)),
            (a(&no_nonce), None, None, false, bad(H)),
            // Precedence: the first present credential is judged, good or bad.
            (a("Bearer a"), Some(b"b"), Some("api_key=c"), true, key("a")),
            (a("Basic !!!!"), Some(b"b"), Some("api_key=c"), true, bad(B)),
            (a(&no_nonce), Some(b"b"), None, false, bad(H)),
            (a(""), Some(b"b"), None, false, key("b")),
            (a(" \t "), Some(b"b"), None, false, key("b")),
            (a("  "), None, None, false, Out::None),
            (None, Some(b"  b\t"), None, false, key("b")),
            (None, Some(b"\xff"), Some("api_key=c"), true, bad(K)),
            (None, Some(b"  "), None, false, Out::None),
            (None, Some(b"b"), Some("api_key=c"), true, key("b")),
            (None, Some(b" "), Some("api_key=c"), true, key("c")),
            // The query key: off by default, then form-decoded.
            (None, None, Some("api_key=c"), false, Out::None),
            (None, None, Some("api_key=c"), true, key("c")),
            (None, None, Some("?api_key=c"), true, key("c")),
            (None, None, Some("x=1&api_key=c&y=2"), true, key("c")),
            (None, None, Some("api_key=first&api_key=second"), true, key("first")),
            (None, None, Some("api_key=a%2Bb%2f"), true, key("a+b/")),
            (None, None, Some("api_key=a+b"), true, key("a b")),
            (None, None, Some("api_key=a%zz"), true, bad(K)),
            (None, None, Some("api_key=a%2"), true, bad(K)),
            (None, None, Some("api_key=%ff"), true, bad(K)),
            (None, None, Some("api_key="), true, Out::None),
            (None, None, Some("api_key"), true, Out::None),
            (None, None, Some("apikey=c&api_key2=d&API_KEY=e"), true, Out::None),
        ]
    }

    #[test]
    fn extraction_follows_the_precedence_and_syntax_table() {
        let rows = table();
        assert!(rows.len() >= 30);
        for (auth, x_key, query, allow_query, want) in &rows {
            let h = CredentialHeaders {
                authorization: auth.as_deref(),
                x_api_key: *x_key,
                query: *query,
            };
            let got = project(&extract(&h, *allow_query));
            let shown = auth.as_deref().map(String::from_utf8_lossy);
            assert_eq!(&got, want, "{shown:?} {x_key:?} {query:?} {allow_query}");
        }
    }

    #[test]
    fn credential_type_names_the_recognised_scheme() {
        let h = |a: &'static [u8]| CredentialHeaders {
            authorization: Some(a),
            ..Default::default()
        };
        assert_eq!(extract(&h(b"Bearer k"), false).credential_type(), Some(K));
        assert_eq!(extract(&h(b"Basic !!"), false).credential_type(), Some(B));
        assert_eq!(extract(&h(b"HMAC x=1"), false).credential_type(), Some(H));
        assert_eq!(extract(&h(b"Token x"), false).credential_type(), None);
        assert_eq!(Presented::None.credential_type(), None);
    }

    fn hmac(params: &str) -> Option<HmacParams> {
        parse_hmac(params)
    }

    #[test]
    fn hmac_parameters_parse_in_any_order_quoted_or_not() {
        let want = HmacParams {
            client_id: "team-a".into(),
            timestamp: 1_700_000_000,
            nonce: "n-1".into(),
            signature: hex::decode(SIG).unwrap().try_into().unwrap(),
        };
        for ok in [
            format!(r#"client_id="team-a",timestamp="1700000000",nonce="n-1",signature="{SIG}""#),
            format!("nonce=n-1,signature={SIG},client_id=team-a,timestamp=1700000000"),
            format!(r#"timestamp=1700000000, client_id="team-a",   nonce=n-1, signature="{SIG}""#),
        ] {
            assert_eq!(hmac(&ok), Some(want.clone()), "{ok}");
        }
    }

    #[test]
    fn malformed_hmac_parameters_are_refused() {
        let good = |ts: &str, nonce: &str, sig: &str, id: &str| {
            format!("client_id={id},timestamp={ts},nonce={nonce},signature={sig}")
        };
        let cases = [
            String::new(),
            good("1", "n", &SIG.to_uppercase(), "a"),
            good("1", "n", &SIG[..63], "a"),
            good("1", "n", &format!("{SIG}0"), "a"),
            good("1", "n", &SIG.replace('a', "g"), "a"),
            good("-1", "n", SIG, "a"),
            good("+1", "n", SIG, "a"),
            good("", "n", SIG, "a"),
            good("1.5", "n", SIG, "a"),
            good("99999999999999999999", "n", SIG, "a"),
            good("1", "", SIG, "a"),
            good("1", &"n".repeat(129), SIG, "a"),
            good("1", "n\"x", SIG, "a"),
            good("1", "n x", SIG, "a"),
            good("1", "n", SIG, ""),
            good("1", "n", SIG, "team a"),
            good("1", "n", SIG, &"a".repeat(65)),
            format!("client_id=a,timestamp=1,signature={SIG}"),
            format!("client_id=a,timestamp=1,nonce=n,nonce=m,signature={SIG}"),
            format!("client_id=a,timestamp=1,nonce=n,signature={SIG},extra=1"),
            format!("client_id=a,timestamp=1,nonce=n,signature={SIG},"),
            format!("client_id=\"a,timestamp=1,nonce=n,signature={SIG}"),
            format!("client_id=a\",timestamp=1,nonce=n,signature={SIG}"),
            format!("client_id = a,timestamp=1,nonce=n,signature={SIG}"),
            format!("Client_Id=a,timestamp=1,nonce=n,signature={SIG}"),
        ];
        for bad in &cases {
            assert_eq!(hmac(bad), None, "{bad}");
        }
        assert!(hmac(&good("0", &"n".repeat(128), SIG, &"a".repeat(64))).is_some());
    }

    #[test]
    fn debug_prints_no_key_or_secret() {
        let auth = format!("Basic {}", b64(b"team-a:hunter2"));
        let basic = CredentialHeaders {
            authorization: Some(auth.as_bytes()),
            ..Default::default()
        };
        let bearer = CredentialHeaders {
            authorization: Some(b"Bearer sk-topsecret"),
            ..Default::default()
        };
        let basic = format!("{:?}", extract(&basic, false));
        let bearer = format!("{:?}", extract(&bearer, false));
        assert!(
            basic.contains("team-a") && !basic.contains("hunter2"),
            "{basic}"
        );
        assert!(!bearer.contains("topsecret"), "{bearer}");
    }

    #[test]
    fn no_input_panics() {
        let fragments: [&[u8]; 12] = [
            b"",
            b" ",
            b"Basic ",
            b"HMAC ",
            b"Bearer ",
            b"=",
            b",",
            b"\"",
            b"%",
            b"\xff",
            b"client_id=",
            b"api_key=",
        ];
        for a in fragments {
            for b in fragments {
                for c in fragments {
                    let value = [a, b, c].concat();
                    let query = String::from_utf8_lossy(&value);
                    let h = CredentialHeaders {
                        authorization: Some(&value),
                        x_api_key: Some(&value),
                        query: Some(&query),
                    };
                    let _ = extract(&h, true);
                    let only_query = CredentialHeaders {
                        query: Some(&query),
                        ..Default::default()
                    };
                    let _ = extract(&only_query, true);
                    let _ = parse_hmac(&query);
                }
            }
        }
    }
}
