//! Bad input never panics and never allows: random bytes in every header
//! `/authz` reads, and one-byte mutations of a valid request, against a
//! policy whose only allow needs one specific key on one specific route.
//! Against an App in this process: a crash there would take the test
//! binary with it.

mod common;

use std::collections::BTreeMap;

use common::{generate_key, spawn_app_with_env, Key, Req, Response, TestApp, XorShift};

const REQUESTS: usize = 2_500;
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// The headers `/authz` reads, each with fragments that steer random values
/// towards the code paths behind it.
const HEADERS: &[(&str, &[&str])] = &[
    (
        "X-Original-Method",
        &["GET", "POST", "get", "DELETE", "G", "CONNECT", " "],
    ),
    (
        "X-Original-URI",
        &[
            "/vault/",
            "/vault",
            "/other/",
            "/",
            "//",
            "..",
            ".",
            "%2e",
            "%2F",
            "%5c",
            "%",
            "%zz",
            "%c0%ae",
            "%25",
            "%00",
            "?",
            "?api_key=",
            "#",
            ";",
            "\\",
            "caf\u{e9}",
        ],
    ),
    (
        "X-Original-Path",
        &["/vault/x", "/other/", "/", "..", "%2e", "\u{e9}"],
    ),
    (
        "X-Original-Host",
        &[
            "api.test", "API.TEST", ":", ":443", ".", "..", "*", "[::1]", "[", "]", "-", "x",
        ],
    ),
    (
        "X-Original-Content-Length",
        &["0", "42", "chunked", "-1", "99999999999999999999999", " "],
    ),
    ("X-Original-Body", &["present", "PRESENT", "absent"]),
    (
        "Authorization",
        &[
            "Bearer ",
            "Basic ",
            "HMAC ",
            "ApiKey ",
            "bearer",
            "gk_",
            "_",
            "=",
            "dGVhbS1hOnM=",
            "client_id=\"team-a\"",
            "timestamp=\"1\"",
            "nonce=\"n\"",
            "signature=\"",
            ",",
            "\"",
            ":",
        ],
    ),
    ("X-API-Key", &["gk_", "_", "team-a", "key", " "]),
    (
        "X-Real-IP",
        &["127.0.0.1", "::1", "10.0.0.1", "[", "%", "999.1.1.1"],
    ),
    ("X-Request-ID", &["req-1", "{\"", "\\u0000", "%n"]),
];

fn policy(key: &Key) -> String {
    format!(
        "[[route]]\nid = \"vault\"\ndomain = \"api.test\"\npath = \"/vault/*\"\nservice = \"t\"\n\
         [route.methods]\nGET = [\"api_key\"]\n\n\
         [[route]]\nid = \"other\"\ndomain = \"*\"\npath = \"/other/*\"\nservice = \"t\"\n\
         [route.methods]\n\"*\" = [\"api_key\", \"basic\", \"hmac\"]\n\n\
         [[client]]\nid = \"team-a\"\nname = \"Team A\"\nsecret_hash = \"{}\"\n\
         hmac_secret = {{ env = \"GK_TEST_HMAC_SECRET\" }}\n\n{}\
         [[grant]]\nclient = \"team-a\"\nroute = \"vault\"\nmethods = [\"GET\"]\n",
        common::bcrypt_hash("s"),
        key.toml("active", None)
    )
}

fn start(key: &Key) -> TestApp {
    spawn_app_with_env(&policy(key), &[("GK_TEST_HMAC_SECRET", "hmac-secret")])
}

/// From an address of its own: the garbage that came before it is mostly
/// failed credentials, which throttle the address they came from.
fn valid(key: &Key) -> Req {
    Req::get("/vault/data")
        .host("api.test")
        .bearer(&key.key)
        .header("x-real-ip", "192.0.2.77")
}

/// HTTP forbids CR, LF and NUL in a header value; everything else goes.
fn sendable(b: u8) -> bool {
    !matches!(b, b'\r' | b'\n' | 0)
}

/// Random bytes, up to 4 KiB. `lenient`: only bytes an HTTP parser accepts
/// in a value (TAB, visible ASCII, obs-text), so the request reaches
/// gatekeeper's own code instead of being refused by actix.
fn random_bytes(rng: &mut XorShift, lenient: bool) -> Vec<u8> {
    let len = if rng.chance(8) {
        rng.below(4096)
    } else {
        rng.below(64)
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let b = rng.next() as u8;
        let parser_ok = b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80;
        if sendable(b) && (!lenient || parser_ok) {
            out.push(b);
        }
    }
    out
}

fn plausible(rng: &mut XorShift, fragments: &[&str], lenient: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..=rng.below(6) {
        if rng.chance(4) {
            out.extend(random_bytes(rng, lenient).into_iter().take(8));
        } else {
            out.extend_from_slice(rng.pick(fragments).as_bytes());
        }
    }
    out
}

/// A well-formed value for header `name` (None: leave it out). The real
/// key is never among them, so nothing here may be allowed.
fn well_formed(name: &str, rng: &mut XorShift) -> Option<Vec<u8>> {
    let pick = |rng: &mut XorShift, values: &[&str]| Some(rng.pick(values).as_bytes().to_vec());
    match name {
        "X-Original-Method" => pick(rng, &["GET", "GET", "POST", "PUT", "DELETE", "HEAD"]),
        "X-Original-URI" => pick(
            rng,
            &[
                "/vault/data",
                "/vault",
                "/other/x",
                "/other/../vault/x",
                "/nowhere",
                "/vault/x?api_key=abc",
                "/other/a//b/./c",
            ],
        ),
        "X-Original-Host" => pick(rng, &["api.test", "API.TEST:443", "other.example", ""]),
        "X-Original-Path" if rng.chance(4) => pick(rng, &["/vault/data", "/other/x"]),
        "X-Original-Content-Length" if rng.chance(3) => pick(rng, &["0", "42", "chunked"]),
        "X-Original-Body" if rng.chance(4) => pick(rng, &["present"]),
        "Authorization" if !rng.chance(3) => Some(credential(rng)),
        "X-API-Key" if rng.chance(3) => Some(format!("gk_{}", hex(rng)).into_bytes()),
        "X-Real-IP" if rng.chance(2) => pick(rng, &["127.0.0.1", "10.1.2.3", "::1"]),
        "X-Request-ID" if rng.chance(2) => Some(hex(rng).into_bytes()),
        _ => None,
    }
}

fn hex(rng: &mut XorShift) -> String {
    format!("{:016x}{:016x}", rng.next(), rng.next())
}

/// A credential of every scheme, well-formed but wrong.
fn credential(rng: &mut XorShift) -> Vec<u8> {
    use base64::Engine as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let value = match rng.below(5) {
        0 => format!("Bearer gk_{}_{}", hex(rng), hex(rng)),
        1 => format!("ApiKey legacy-{}", hex(rng)),
        2 => common::basic_value("team-a", &hex(rng)),
        3 => {
            let token = base64::engine::general_purpose::STANDARD.encode(hex(rng));
            format!("Basic {token}")
        }
        _ => format!(
            "HMAC client_id=\"team-a\",timestamp=\"{now}\",nonce=\"{}\",signature=\"{}{}\"",
            hex(rng),
            hex(rng),
            hex(rng)
        ),
    };
    value.into_bytes()
}

/// Header names and raw values.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// A well-formed request with one to four headers garbled (one request in
/// ten: all of them).
fn random_request(rng: &mut XorShift) -> (Headers, Option<Vec<u8>>) {
    // One request in eight may carry control bytes, which actix refuses.
    let lenient = !rng.chance(8);
    let all = rng.chance(10);
    let garbled: Vec<usize> = (0..=rng.below(4))
        .map(|_| rng.below(HEADERS.len()))
        .collect();
    let mut headers = Vec::new();
    for (i, (name, fragments)) in HEADERS.iter().enumerate() {
        let value = if all || garbled.contains(&i) {
            match rng.below(4) {
                0 => None,
                1 => Some(random_bytes(rng, lenient)),
                _ => Some(plausible(rng, fragments, lenient)),
            }
        } else {
            well_formed(name, rng)
        };
        if let Some(value) = value {
            headers.push((*name, value));
        }
    }
    let body = rng.chance(4).then(|| match rng.below(3) {
        0 => br#"{"model":"llama3"}"#.to_vec(),
        _ => random_bytes(rng, false),
    });
    (headers, body)
}

/// A response that is not an allow, in one of the shapes nginx may see:
/// gatekeeper's own deny, or actix refusing a request it cannot parse.
#[track_caller]
fn assert_never_allowed(r: &Response, what: &dyn std::fmt::Debug) {
    match r.status {
        401 | 403 => {
            assert!(
                !r.reason().is_empty(),
                "a deny without a reason: {r:?} for {what:?}"
            );
            assert!(r.body.is_empty(), "a deny with a body: {r:?} for {what:?}");
        }
        400 | 431 => assert!(r.header("x-auth-reason").is_none(), "{r:?} for {what:?}"),
        _ => panic!("status {} for {what:?}: {r:?}", r.status),
    }
}

#[test]
fn thousands_of_random_headers_are_never_allowed_and_never_crash_the_service() {
    let key = generate_key();
    let gk = start(&key);
    let mut rng = XorShift::new(SEED);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let (headers, body) = random_request(&mut rng);
        let r = gk.authz(&headers, body.as_deref());
        assert_never_allowed(&r, &headers);
        let label = format!("{} {}", r.status, r.reason());
        *reasons.entry(label).or_default() += 1;
    }
    println!("outcomes: {reasons:#?}");
    assert!(gk.is_alive(), "the service died: {:#?}", gk.logs());
    assert_eq!(
        gk.send(&valid(&key)).status,
        200,
        "a valid request still passes"
    );
    let decided: usize = reasons
        .iter()
        .filter(|(l, _)| !l.starts_with("400"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        decided * 2 > REQUESTS,
        "most requests should reach gatekeeper: {reasons:#?}"
    );
    assert!(
        reasons.len() >= 8,
        "too few distinct outcomes: {reasons:#?}"
    );
}

/// Every byte of `value` XORed with a few masks (one from `rng`), skipping
/// results HTTP cannot carry.
fn one_byte_mutations(value: &[u8], rng: &mut XorShift) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..value.len() {
        for mask in [0x20, 0x01, 0x80, (rng.next() as u8) | 1] {
            let mut v = value.to_vec();
            v[i] ^= mask;
            if sendable(v[i]) {
                out.push(v);
            }
        }
    }
    out
}

#[test]
fn a_valid_key_with_any_one_byte_changed_is_refused() {
    let key = generate_key();
    let gk = start(&key);
    let mut rng = XorShift::new(SEED ^ 1);
    for mutated in one_byte_mutations(key.key.as_bytes(), &mut rng) {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&mutated);
        let req = valid(&key)
            .without("Authorization")
            .header("Authorization", &value);
        let r = gk.send(&req);
        assert_never_allowed(&r, &String::from_utf8_lossy(&value));
    }
}

#[test]
fn a_one_byte_change_in_method_or_host_is_refused_unless_it_only_changes_case() {
    let key = generate_key();
    let gk = start(&key);
    let mut rng = XorShift::new(SEED ^ 2);
    for (name, value) in [
        ("X-Original-Method", "GET"),
        ("X-Original-Host", "api.test"),
    ] {
        for mutated in one_byte_mutations(value.as_bytes(), &mut rng) {
            let req = valid(&key).without(name).header(name, &mutated);
            let r = gk.send(&req);
            let same_host = name == "X-Original-Host" && mutated.eq_ignore_ascii_case(b"api.test");
            let shown = String::from_utf8_lossy(&mutated).into_owned();
            if same_host {
                assert_eq!(r.status, 200, "{name}: {shown:?} is the same host: {r:?}");
            } else {
                assert_never_allowed(&r, &(name, shown));
            }
        }
    }
}

#[test]
fn a_one_byte_change_in_the_uri_is_allowed_only_when_it_still_lands_on_the_route() {
    let key = generate_key();
    let gk = start(&key);
    let mut rng = XorShift::new(SEED ^ 3);
    let mut unchecked = 0;
    for mutated in one_byte_mutations(b"/vault/data", &mut rng) {
        let req = valid(&key)
            .without("X-Original-URI")
            .header("X-Original-URI", &mutated);
        let r = gk.send(&req);
        let shown = String::from_utf8_lossy(&mutated).into_owned();
        match lands_on_vault(&mutated) {
            Some(true) => assert_eq!((r.status, r.route()), (200, "vault"), "{shown:?}: {r:?}"),
            Some(false) => assert_never_allowed(&r, &shown),
            None => {
                unchecked += 1;
                assert!(
                    r.status == 200 || r.status == 400 || r.status == 403,
                    "{shown:?}: {r:?}"
                );
            }
        }
    }
    assert!(unchecked < 20, "the oracle should decide most cases");
}

/// Whether a mutated `/vault/data` still normalises into `/vault/*`: `None`
/// for characters whose fate is not this test's business (`"`, `<`, `{` and
/// the like, which nginx passes through).
fn lands_on_vault(uri: &[u8]) -> Option<bool> {
    let path = uri.split(|&b| b == b'?').next().unwrap_or_default();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(b);
    if !path.iter().all(plain) {
        // Escapes, `\`, `;`, `#`, spaces, controls and lone non-ASCII bytes
        // are malformed or ambiguous here; other punctuation is undecided.
        let refused = |b: &u8| b"%\\;# ".contains(b) || b.is_ascii_control() || *b >= 0x80;
        return path.iter().any(refused).then_some(false);
    }
    let path = std::str::from_utf8(path).ok()?;
    if !path.starts_with('/') {
        return Some(false);
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." if kept.pop().is_none() => return Some(false),
            ".." => {}
            s => kept.push(s),
        }
    }
    Some(kept.first() == Some(&"vault"))
}
