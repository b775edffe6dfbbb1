//! Unit tests of `core::credential`.
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
            Out::Basic(client_id.to_string(), secret.expose().to_vec())
        }
        Presented::Hmac(p) => Out::Hmac(p.client_id.to_string()),
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
    format!(r#"{scheme} client_id="team-a",timestamp="1700000000",nonce="n-1",signature="{SIG}""#)
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
        client_id: "team-a".parse().unwrap(),
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
