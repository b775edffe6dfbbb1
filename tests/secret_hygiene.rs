//! No secret leaves gatekeeper except where it is shown on purpose (DESIGN
//! §3, §7; STYLE 11). A full scenario — allowed and denied requests of every
//! credential type, a prompt in forwarded bodies, the CLI commands that
//! handle secrets — runs at `trace` in DB-less mode and in PostgreSQL + Redis
//! mode. Then everything gatekeeper put anywhere — its whole output, every
//! response (headers and body), `/metrics`, `/readyz`, `/livez`, every column
//! of every table, every `NOTIFY` payload, every Redis key and value under the
//! prefix, the CLI's output — is searched for every secret and the prompt:
//! raw, hex, standard and URL-safe base64 at each of the three alignments a
//! secret can have inside a longer encoded text (so `Basic base64(id:secret)`
//! is found too), padded or not, and as the `Debug` of a byte slice; any 12
//! consecutive characters of one of those forms is a leak. A self-check plants
//! each form in the real evidence and must find it, so a search that finds
//! nothing cannot pass by being blind.
//!
//! The only places a secret may appear: `key generate` / `key create` print
//! the key they made, `client secret set --hmac` the HMAC secret it made.
//! A key's public id (`gk_<12 chars>`) is not secret; its secret part is.

mod common;
mod pg;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Every target at trace, the libraries' included: a bare `trace` raises
/// only gatekeeper's own logs (src/logging.rs), and this test wants all the
/// output there can be.
const EVERYTHING_AT_TRACE: &str = "trace,gatekeeper=trace";

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use deadpool_redis::redis;

use common::hmac::now;
use common::redis::TestRedis;
use common::{poll_until, Gatekeeper, Req, Response};
use pg::TestDb;

// ── The search ──────────────────────────────────────────────────────────────

/// The shortest run of a written-out secret that counts as a leak: 12
/// characters of base62, base64 or hex carry 48 to 72 bits of it.
const WINDOW: usize = 12;

/// A secret, under the name a leak is reported with.
#[derive(Clone)]
struct Secret {
    name: String,
    bytes: Vec<u8>,
}

fn secret(name: &str, bytes: impl AsRef<[u8]>) -> Secret {
    Secret {
        name: name.to_owned(),
        bytes: bytes.as_ref().to_vec(),
    }
}

/// Every way `secret` could be written out, as `(form, text, window)`: any
/// `window` consecutive bytes of `text` in the evidence are a leak.
fn forms(secret: &[u8]) -> Vec<(&'static str, Vec<u8>, usize)> {
    let mut out = vec![
        ("raw", secret.to_vec(), WINDOW),
        ("hex", hex::encode(secret).into_bytes(), WINDOW),
        ("HEX", hex::encode_upper(secret).into_bytes(), WINDOW),
    ];
    let engines = [
        ("base64", STANDARD),
        ("base64 unpadded", STANDARD_NO_PAD),
        ("base64url", URL_SAFE),
        ("base64url unpadded", URL_SAFE_NO_PAD),
    ];
    for (name, engine) in engines {
        out.push((name, engine.encode(secret).into_bytes(), WINDOW));
        // Inside a longer encoded text the secret may start one or two bytes
        // into a 3-byte group: its whole groups then encode like this.
        for shift in 1..3 {
            let rest = &secret[shift.min(secret.len())..];
            let whole = rest.len() / 3 * 3;
            out.push((name, engine.encode(&rest[..whole]).into_bytes(), WINDOW));
        }
    }
    // `{:?}` of a byte slice: `[103, 107, 95, …]`; matched whole.
    let list = format!("{:?}", &secret[..secret.len().min(WINDOW)]);
    let list = list.trim_matches(['[', ']']).as_bytes().to_vec();
    let len = list.len();
    out.push(("debug bytes", list, len));
    out
}

/// Finds windows of every form of every secret in one pass per window
/// length; a two-byte prefilter keeps hashing off most positions.
struct Detector {
    by_len: BTreeMap<usize, Windows>,
}

#[derive(Default)]
struct Windows {
    first_two: Vec<bool>,
    found: HashMap<Vec<u8>, Vec<(String, &'static str)>>,
}

/// One leak: which secret, in which form, where.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    secret: String,
    form: &'static str,
    offset: usize,
}

impl Detector {
    fn new(secrets: &[Secret]) -> Detector {
        let mut by_len: BTreeMap<usize, Windows> = BTreeMap::new();
        for s in secrets {
            assert!(s.bytes.len() >= WINDOW, "{} is too short to search", s.name);
            for (form, text, window) in forms(&s.bytes) {
                let len = window.min(text.len());
                if len < 2 {
                    continue;
                }
                let windows = by_len.entry(len).or_insert_with(|| Windows {
                    first_two: vec![false; 1 << 16],
                    found: HashMap::new(),
                });
                for w in text.windows(len) {
                    windows.first_two[usize::from(w[0]) << 8 | usize::from(w[1])] = true;
                    let names = windows.found.entry(w.to_vec()).or_default();
                    if !names.iter().any(|(n, f)| *n == s.name && *f == form) {
                        names.push((s.name.clone(), form));
                    }
                }
            }
        }
        Detector { by_len }
    }

    /// The first hit of each (secret, form) in `haystack`.
    fn scan(&self, haystack: &[u8]) -> Vec<Hit> {
        let mut seen = BTreeMap::new();
        for (&len, windows) in &self.by_len {
            for (offset, w) in haystack.windows(len).enumerate() {
                if !windows.first_two[usize::from(w[0]) << 8 | usize::from(w[1])] {
                    continue;
                }
                for (secret, form) in windows.found.get(w).into_iter().flatten() {
                    seen.entry((secret.clone(), *form)).or_insert(offset);
                }
            }
        }
        seen.into_iter()
            .map(|((secret, form), offset)| Hit {
                secret,
                form,
                offset,
            })
            .collect()
    }
}

/// Everything gatekeeper wrote somewhere, labelled by where.
#[derive(Default)]
struct Evidence {
    items: Vec<(String, Vec<u8>)>,
}

impl Evidence {
    fn add(&mut self, label: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.items.push((label.into(), bytes.into()));
    }

    fn total_bytes(&self) -> usize {
        self.items.iter().map(|(_, b)| b.len()).sum()
    }

    /// Every hit outside `allowed` (label prefix, secret name), described
    /// with its surroundings.
    fn leaks(&self, detector: &Detector, allowed: &[(&str, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        for (label, bytes) in &self.items {
            for hit in detector.scan(bytes) {
                let ok = allowed
                    .iter()
                    .any(|(place, name)| label.starts_with(place) && hit.secret == *name);
                if !ok {
                    out.push(format!(
                        "{} ({}) in {label}: …{}…",
                        hit.secret,
                        hit.form,
                        context(bytes, hit.offset)
                    ));
                }
            }
        }
        out
    }
}

fn context(bytes: &[u8], offset: usize) -> String {
    let start = offset.saturating_sub(80);
    let end = (offset + 120).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

/// The search is not blind: each form of each secret, planted in the real
/// evidence (at every alignment for base64), is found and named.
#[track_caller]
fn assert_search_finds_planted_secrets(
    detector: &Detector,
    secrets: &[Secret],
    evidence: &Evidence,
) {
    let base: Vec<u8> = evidence
        .items
        .iter()
        .flat_map(|(_, b)| b.iter().copied())
        .take(64 * 1024)
        .collect();
    for s in secrets {
        let mut plants: Vec<Vec<u8>> = vec![
            s.bytes.clone(),
            s.bytes[..WINDOW + 2].to_vec(),
            hex::encode(&s.bytes).into_bytes(),
            hex::encode_upper(&s.bytes).into_bytes(),
            format!("{:?}", s.bytes).into_bytes(),
        ];
        for lead in ["", "a", "id", "abc:", "team-a:"] {
            let text = [lead.as_bytes(), &s.bytes].concat();
            for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
                plants.push(engine.encode(&text).into_bytes());
            }
        }
        for (i, plant) in plants.iter().enumerate() {
            let at = (i * 7919) % base.len().max(1);
            let haystack = [&base[..at], b" \"x\":\"", plant, b"\" ", &base[at..]].concat();
            let hits = detector.scan(&haystack);
            assert!(
                hits.iter().any(|h| h.secret == s.name),
                "the search misses {} planted as {:?}",
                s.name,
                String::from_utf8_lossy(plant)
            );
        }
    }
}

// ── The scenario ────────────────────────────────────────────────────────────

const HOST: &str = "api.test";
/// Clean requests come from here; never throttled.
const GOOD_IP: &str = "192.0.2.10";
/// Wrong credentials come from here: fewer than the 20 a minute allowed.
const BAD_IP: &str = "192.0.2.20";
/// The address hammered with wrong keys until it is throttled.
const HAMMER_IP: &str = "192.0.2.30";

fn random_text(alphabet: &[u8], len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).expect("random bytes");
    bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

fn random_token(len: usize) -> String {
    random_text(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        len,
    )
}

/// A prompt no log line could contain by chance.
fn random_prompt() -> String {
    format!(
        "Quillwort {} please summarise the zebra-quartz ledger of {} for Ottoline",
        random_token(10),
        random_token(10)
    )
}

/// The credentials and the prompt one scenario uses.
struct Creds {
    key: String,
    wrong_key: String,
    basic_client: String,
    basic_secret: String,
    hmac_client: String,
    hmac_secret: String,
    prompt: String,
}

impl Creds {
    /// The secret part of the key: everything after `gk_<public id>_`.
    fn key_secret(&self) -> &str {
        &self.key[16..]
    }

    fn secrets(&self) -> Vec<Secret> {
        vec![
            secret("api key (secret part)", self.key_secret()),
            secret("basic secret", &self.basic_secret),
            secret("hmac secret", &self.hmac_secret),
            secret("prompt", &self.prompt),
        ]
    }
}

/// One run's evidence and the requests' bookkeeping.
struct Run {
    evidence: Evidence,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    requests: usize,
}

impl Run {
    fn new(env: &[(&str, &str)]) -> Run {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.push(("GATEKEEPER_LOG_LEVEL".into(), EVERYTHING_AT_TRACE.into()));
        Run {
            evidence: Evidence::default(),
            env,
            dir: tempfile::tempdir().expect("temp dir"),
            requests: 0,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Runs a CLI command with the run's settings; its output is evidence.
    fn cli(&mut self, label: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = common::run(args, &self.env(), stdin);
        self.evidence
            .add(format!("cli {label} stdout"), out.stdout.clone());
        self.evidence
            .add(format!("cli {label} stderr"), out.stderr.clone());
        out
    }

    #[track_caller]
    fn cli_ok(&mut self, label: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.cli(label, args, stdin);
        assert!(out.status.success(), "{label}: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Sends `req` with a request id of its own; checks the outcome.
    #[track_caller]
    fn send(&mut self, gk: &Gatekeeper, label: &str, req: Req, expect: (u16, &str)) -> Response {
        self.requests += 1;
        let req = req.header("X-Request-ID", format!("hyg-{}", self.requests));
        let r = gk.send(&req);
        self.evidence
            .add(format!("response to {label}"), render(&r));
        assert_eq!((r.status, r.reason()), expect, "{label}: {r:?}");
        r
    }

    /// `gatekeeper sign`, as a client runs it.
    fn sign(
        &mut self,
        creds: (&str, &str),
        method: &str,
        path: &str,
        body: &[u8],
        ts: i64,
    ) -> String {
        let nonce = random_token(16);
        let dir = self.dir.path().to_owned();
        let args = common::hmac::sign_args(&dir, creds, method, path, body, ts, &nonce);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::hmac::authorization(&self.cli_ok("sign", &args, None))
    }
}

fn render(r: &Response) -> Vec<u8> {
    let mut out = format!("{}\n", r.status).into_bytes();
    for (name, value) in &r.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&r.body);
    out
}

fn get(path: &str) -> Req {
    Req::get(path).host(HOST)
}

fn chat_body(model: &str, prompt: &str) -> Vec<u8> {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string()
    .into_bytes()
}

fn chat(body: &[u8]) -> Req {
    Req::new("POST", "/v1/chat/completions")
        .host(HOST)
        .header("X-Original-Content-Length", body.len().to_string())
        .body(body)
}

const OK: (u16, &str) = (200, "authenticated");
const INVALID: (u16, &str) = (401, "invalid_credentials");

/// Every credential path, allowed and denied, and the prompt where it
/// could be read: the same in both modes.
fn exercise(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    api_keys(run, gk, c);
    basic_secrets(run, gk, c);
    hmac_signatures(run, gk, c);
    prompts(run, gk, c);
    throttled(run, gk, c);
    odd_connections(run, gk, c);
}

fn api_keys(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    let good = |r: Req| r.header("X-Real-IP", GOOD_IP);
    let bad = |r: Req| r.header("X-Real-IP", BAD_IP);
    let key = &c.key;
    run.send(gk, "key", good(get("/data/x").bearer(key)), OK);
    let x_api_key = good(get("/data/x").header("X-API-Key", key));
    run.send(gk, "x-api-key", x_api_key, OK);
    let in_query = good(get(&format!("/data/x?api_key={key}")));
    run.send(gk, "query key", in_query, (401, "missing_credentials"));
    run.send(
        gk,
        "wrong key",
        bad(get("/data/x").bearer(&c.wrong_key)),
        INVALID,
    );
    let last = key.len() - 1;
    let typo = format!(
        "{}{}",
        &key[..last],
        if key.ends_with('A') { 'B' } else { 'A' }
    );
    run.send(gk, "key typo", bad(get("/data/x").bearer(&typo)), INVALID);
    let truncated = &key[..key.len() - 7];
    run.send(
        gk,
        "truncated key",
        bad(get("/data/x").bearer(truncated)),
        INVALID,
    );
    let longer = format!("{key}x");
    run.send(
        gk,
        "longer key",
        bad(get("/data/x").bearer(&longer)),
        INVALID,
    );
    let secret_only = bad(get("/data/x").bearer(c.key_secret()));
    run.send(gk, "key secret alone", secret_only, INVALID);
    let other_type = good(get("/basic/x").bearer(key));
    run.send(
        gk,
        "key on basic",
        other_type,
        (401, "credential_type_not_allowed"),
    );
    let both = bad(get("/data/x").bearer(&c.wrong_key).header("X-API-Key", key));
    run.send(gk, "bad header and good x-api-key", both, INVALID);
}

fn basic_secrets(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    let good = |r: Req| r.header("X-Real-IP", GOOD_IP);
    let bad = |r: Req| r.header("X-Real-IP", BAD_IP);
    let (id, secret) = (c.basic_client.as_str(), c.basic_secret.as_str());
    for _ in 0..2 {
        run.send(gk, "basic", good(get("/basic/x").basic(id, secret)), OK);
    }
    let wrong = format!("{secret}x");
    run.send(
        gk,
        "wrong basic",
        bad(get("/basic/x").basic(id, &wrong)),
        INVALID,
    );
    let nobody = bad(get("/basic/x").basic("nobody", secret));
    run.send(gk, "basic unknown client", nobody, INVALID);
    let no_colon = format!("Basic {}", STANDARD.encode(secret));
    let no_colon = bad(get("/basic/x").header("Authorization", no_colon));
    run.send(gk, "basic without colon", no_colon, INVALID);
    let raw = bad(get("/basic/x").header("Authorization", format!("Basic {id}:{secret}")));
    run.send(gk, "basic not base64", raw, INVALID);
}

fn hmac_signatures(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    let good = |r: Req| r.header("X-Real-IP", GOOD_IP);
    let bad = |r: Req| r.header("X-Real-IP", BAD_IP);
    let who = (c.hmac_client.as_str(), c.hmac_secret.as_str());
    let auth = run.sign(who, "GET", "/signed/x", b"", now());
    let signed = || get("/signed/x").header("Authorization", &auth);
    run.send(gk, "hmac", good(signed()), OK);
    run.send(gk, "hmac replay", good(signed()), (401, "replayed_request"));

    let auth = run.sign(who, "GET", "/signed/x", b"", now());
    let (head, sig) = auth.rsplit_once("signature=\"").expect("a signature");
    let flipped = if sig.starts_with('0') { '1' } else { '0' };
    let tampered = format!("{head}signature=\"{flipped}{}", &sig[1..]);
    let tampered = bad(get("/signed/x").header("Authorization", tampered));
    run.send(gk, "hmac bad signature", tampered, INVALID);
    let secret_as_signature = format!(
        "HMAC client_id=\"{}\",timestamp=\"{}\",nonce=\"n1\",signature=\"{}\"",
        c.hmac_client,
        now(),
        c.hmac_secret
    );
    let malformed = bad(get("/signed/x").header("Authorization", secret_as_signature));
    run.send(gk, "hmac secret as signature", malformed, INVALID);
    let stale = run.sign(who, "GET", "/signed/x", b"", now() - 1_000);
    let stale = bad(get("/signed/x").header("Authorization", stale));
    run.send(gk, "hmac stale", stale, (401, "stale_signature"));

    let body = chat_body("llama3:8b", &c.prompt);
    let auth = run.sign(who, "POST", "/signed/x", &body, now());
    let post = |b: &[u8]| {
        Req::new("POST", "/signed/x")
            .host(HOST)
            .header("Authorization", &auth)
            .header("X-Original-Content-Length", b.len().to_string())
            .body(b)
    };
    run.send(gk, "hmac post with prompt", good(post(&body)), OK);
    let other = chat_body("llama3:70b", &c.prompt);
    run.send(gk, "hmac post tampered", bad(post(&other)), INVALID);
}

fn prompts(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    let good = |r: Req| r.header("X-Real-IP", GOOD_IP);
    let key = &c.key;
    let allowed = chat_body("llama3:8b", &c.prompt);
    run.send(gk, "prompt allowed", good(chat(&allowed).bearer(key)), OK);
    let refused = chat_body("gpt-4o", &c.prompt);
    let model = (403, "model_not_allowed");
    run.send(
        gk,
        "prompt model refused",
        good(chat(&refused).bearer(key)),
        model,
    );
    let basic = good(chat(&refused).basic(&c.basic_client, &c.basic_secret));
    run.send(gk, "prompt model refused (basic)", basic, model);
    let not_json = format!("model=gpt-4o&prompt={}", c.prompt).into_bytes();
    run.send(
        gk,
        "prompt not json",
        good(chat(&not_json).bearer(key)),
        model,
    );
    let huge: Vec<u8> = chat_body("llama3:8b", &c.prompt.repeat(60));
    assert!(huge.len() > 4096, "larger than GATEKEEPER_MAX_BODY");
    let r = run.send(
        gk,
        "prompt too large",
        good(chat(&huge).bearer(key)),
        (403, "bad_request"),
    );
    assert_eq!(r.auth_status(), 400);
}

/// Wrong keys from one address until it is refused before any look-up.
fn throttled(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    let mut throttled = 0;
    for i in 0..24 {
        let wrong = format!("{}{i}", c.key_secret());
        let req = get("/data/x")
            .bearer(&wrong)
            .header("X-Real-IP", HAMMER_IP)
            .header("X-Request-ID", format!("hammer-{i}"));
        let r = gk.send(&req);
        run.evidence
            .add(format!("response to hammer {i}"), render(&r));
        match r.reason() {
            "invalid_credentials" => {}
            "rate_limited" => throttled += 1,
            other => panic!("hammer {i}: {other}: {r:?}"),
        }
    }
    assert!(throttled > 0, "the hammering address was never throttled");
}

/// Requests no nginx would send, on raw connections: a malformed chunked
/// body holding the prompt, a body cut short, duplicate credentials, an
/// HTTP/1.0 request. Whatever they do, no panic and no echo.
fn odd_connections(run: &mut Run, gk: &Gatekeeper, c: &Creds) {
    let head = |extra: &str| {
        format!(
            "POST /authz HTTP/1.1\r\nHost: x\r\nX-Original-Method: POST\r\n\
             X-Original-URI: /v1/chat/completions\r\nX-Original-Host: {HOST}\r\n\
             X-Original-Body: present\r\nAuthorization: Bearer {}\r\n{extra}",
            c.key
        )
    };
    let prompt = &c.prompt;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad chunk",
            format!("{}Transfer-Encoding: chunked\r\n\r\nzz{prompt}\r\n0\r\n\r\n", head("")).into_bytes(),
        ),
        (
            "body cut short",
            format!("{}Content-Length: 100000\r\n\r\n{{\"model\":\"x\",\"p\":\"{prompt}", head("")).into_bytes(),
        ),
        (
            "duplicate credentials",
            format!(
                "GET /authz HTTP/1.1\r\nHost: x\r\nX-Original-Method: GET\r\nX-Original-URI: /data/x\r\n\
                 X-Original-Host: {HOST}\r\nAuthorization: Bearer {}\r\nAuthorization: Bearer {}\r\n\
                 Connection: close\r\n\r\n",
                c.wrong_key, c.key
            )
            .into_bytes(),
        ),
        (
            "http/1.0",
            format!(
                "GET /authz HTTP/1.0\r\nX-Original-Method: GET\r\nX-Original-URI: /data/x\r\n\
                 X-Original-Host: {HOST}\r\nX-API-Key: {}\r\n\r\n",
                c.key
            )
            .into_bytes(),
        ),
        (
            "space before colon",
            format!("{}Content-Length : 5\r\n\r\n{prompt}", head("")).into_bytes(),
        ),
    ];
    for (label, bytes) in cases {
        let answer = raw_exchange(gk, &bytes);
        run.evidence.add(format!("raw answer to {label}"), answer);
    }
}

/// Writes `bytes`, half-closes, and reads whatever comes back (bounded).
fn raw_exchange(gk: &Gatekeeper, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(gk.authz_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut answer);
    answer
}

/// `/livez`, `/readyz`, `/metrics` and an unknown admin path, whole.
fn scrape_admin(run: &mut Run, gk: &Gatekeeper) {
    for path in ["/livez", "/readyz", "/metrics", "/debug"] {
        let r = gk.admin_get(path);
        run.evidence.add(format!("admin {path}"), render(&r));
    }
    let metrics = gk.metrics();
    assert!(metrics.contains("gatekeeper_build_info"), "{metrics}");
}

/// Waits until the last request's decision is logged, stops the service
/// with SIGTERM so shutdown is logged too, and takes its whole output.
fn stop_and_collect(run: &mut Run, mut gk: Gatekeeper) {
    let last = format!("\"hyg-{}\"", run.requests);
    let logged = poll_until(Duration::from_secs(10), || {
        gk.logs().iter().any(|l| l.contains(&last))
    });
    assert!(logged, "{last} never logged: {:#?}", gk.logs());
    let status = Command::new("kill")
        .args(["-TERM", &gk.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    assert!(
        poll_until(Duration::from_secs(15), || !gk.is_alive()),
        "gatekeeper did not stop on SIGTERM"
    );
    // The pipes' last lines: the output stops growing once they are read.
    let mut seen = 0;
    poll_until(Duration::from_secs(2), || {
        let now = gk.logs().len();
        std::mem::replace(&mut seen, now) == now
    });
    let logs = gk.logs();
    let traced = logs.iter().any(|l| l.contains("\"level\":\"TRACE\""));
    assert!(traced, "GATEKEEPER_LOG_LEVEL=trace logs at trace");
    let panics: Vec<&String> = logs.iter().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "gatekeeper panicked: {panics:#?}");
    run.evidence.add("gatekeeper output", logs.join("\n"));
}

/// No secret outside `allowed`; each allowed disclosure really happened
/// (the search saw it where it belongs). `GK_HYGIENE_DUMP=dir` writes the
/// evidence there, one file per place, for a look by hand.
#[track_caller]
fn assert_no_leaks(run: &Run, secrets: &[Secret], allowed: &[(&str, &str)]) {
    if let Some(dir) = std::env::var_os("GK_HYGIENE_DUMP") {
        let test = std::thread::current().name().unwrap_or("main").to_owned();
        dump_evidence(&Path::new(&dir).join(test), &run.evidence);
    }
    let detector = Detector::new(secrets);
    assert_search_finds_planted_secrets(&detector, secrets, &run.evidence);
    for (place, name) in allowed {
        let seen = run.evidence.items.iter().any(|(label, bytes)| {
            label.starts_with(place) && detector.scan(bytes).iter().any(|h| h.secret == *name)
        });
        assert!(
            seen,
            "{name} is shown in {place}, and the search should see it"
        );
    }
    let leaks = run.evidence.leaks(&detector, allowed);
    println!(
        "searched {} places, {} bytes, for {} secrets",
        run.evidence.items.len(),
        run.evidence.total_bytes(),
        secrets.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n\n"));
}

fn dump_evidence(dir: &Path, evidence: &Evidence) {
    std::fs::create_dir_all(dir).expect("GK_HYGIENE_DUMP directory");
    for (i, (label, bytes)) in evidence.items.iter().enumerate() {
        let name: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(80)
            .collect();
        std::fs::write(dir.join(format!("{i:03}-{name}")), bytes).expect("write evidence");
    }
}

// ── DB-less mode ────────────────────────────────────────────────────────────

fn file_policy(key: &common::Key, basic_hash: &str) -> String {
    let route = |id: &str, path: &str, methods: &str| {
        format!(
            "[[route]]\nid = \"{id}\"\ndomain = \"{HOST}\"\npath = \"{path}\"\nservice = \"t\"\n\
             [route.methods]\n{methods}\n\n"
        )
    };
    let grant = |route: &str, methods: &str, extra: &str| {
        format!(
            "[[grant]]\nclient = \"team-a\"\nroute = \"{route}\"\nmethods = {methods}\n{extra}\n\n"
        )
    };
    route("data", "/data/*", "GET = [\"api_key\"]")
        + &route("basic", "/basic/*", "GET = [\"basic\"]")
        + &route("signed", "/signed/*", "GET = [\"hmac\"]\nPOST = [\"hmac\"]")
        + &route("llm", "/v1/*", "POST = [\"api_key\", \"basic\"]")
        + &format!(
            "[[client]]\nid = \"team-a\"\nname = \"Team A\"\nsecret_hash = \"{basic_hash}\"\n\
             hmac_secret = {{ env = \"GK_HYGIENE_HMAC\" }}\n\n{}",
            key.toml("active", None)
        )
        + &grant("data", "[\"GET\"]", "")
        + &grant("basic", "[\"GET\"]", "")
        + &grant("signed", "[\"GET\", \"POST\"]", "")
        + &grant("llm", "[\"POST\"]", "models = [\"llama3*\"]")
}

fn key_from_json(stdout: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(stdout).expect("key JSON");
    let field = |name: &str| v[name].as_str().expect(name).to_owned();
    (field("key"), field("id"))
}

#[test]
fn no_secret_or_prompt_leaves_gatekeeper_in_db_less_mode() {
    let hmac_secret = random_token(40);
    let mut run = Run::new(&[
        ("GK_HYGIENE_HMAC", hmac_secret.as_str()),
        ("GATEKEEPER_MAX_BODY", "4096"),
    ]);
    let (key, key_id) =
        key_from_json(&run.cli_ok("key generate", &["key", "generate", "--json"], None));
    let (wrong_key, _) =
        key_from_json(&run.cli_ok("key generate (other)", &["key", "generate", "--json"], None));
    let basic_secret = random_token(28);
    let hash_args = ["secret", "hash", "--cost", "4"];
    let hash = run.cli_ok("secret hash", &hash_args, Some(basic_secret.as_bytes()));
    let digest = format!(
        "sha256:{}",
        hex::encode(gatekeeper::core::model::Digest::of(key.as_bytes()).0)
    );
    let file_key = common::Key {
        key: key.clone(),
        id: key_id,
        digest,
    };
    let creds = Creds {
        key,
        wrong_key,
        basic_client: "team-a".into(),
        basic_secret,
        hmac_client: "team-a".into(),
        hmac_secret,
        prompt: random_prompt(),
    };
    let gk = Gatekeeper::start_with_env(&file_policy(&file_key, hash.trim()), &run.env());
    exercise(&mut run, &gk, &creds);
    gk.sighup();
    let reloaded = poll_until(Duration::from_secs(5), || {
        gk.readyz()["reload"]["reloads"].as_u64() >= Some(1)
    });
    assert!(reloaded, "the reload was not seen");
    scrape_admin(&mut run, &gk);
    stop_and_collect(&mut run, gk);

    let secrets = creds.secrets();
    let allowed = [("cli key generate stdout", "api key (secret part)")];
    assert_no_leaks(&run, &secrets, &allowed);
}

// ── PostgreSQL + Redis mode ─────────────────────────────────────────────────

/// The test database's URL with a password added (trust authentication
/// ignores it), so the password is one more secret to look for.
fn with_password(url: &str, password: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    (!userinfo.contains(':')).then(|| format!("{scheme}://{userinfo}:{password}@{host}"))
}

/// Every row of every table in every schema of the test database, each as
/// its whole record (`t::text`: every column, `bytea` as hex).
async fn dump_database(db: &TestDb, evidence: &mut Evidence) -> usize {
    let client = db.client().await;
    let tables = client
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .expect("list tables");
    let mut rows_read = 0;
    for t in &tables {
        let (schema, table): (String, String) = (t.get(0), t.get(1));
        let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t");
        let rows = client.query(&sql, &[]).await.expect("dump table");
        rows_read += rows.len();
        let text: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        evidence.add(format!("table {schema}.{table}"), text.join("\n"));
    }
    rows_read
}

/// What PostgreSQL shows of the service's sessions (their last queries).
async fn dump_sessions(db: &TestDb, evidence: &mut Evidence) {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT coalesce(application_name, '') || ' ' || coalesce(query, '') \
             FROM pg_stat_activity WHERE datname = $1",
            &[&db.name],
        )
        .await
        .expect("pg_stat_activity");
    let text: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    evidence.add("pg_stat_activity", text.join("\n"));
}

/// Every key under the prefix, with its value whatever its type.
fn dump_redis(redis: &TestRedis, evidence: &mut Evidence) -> usize {
    let mut conn = redis.connect();
    let keys = redis.keys("*");
    for key in &keys {
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).expect("TYPE");
        let value: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(key).query(&mut conn).expect("GET")],
            "hash" => redis::cmd("HGETALL")
                .arg(key)
                .query(&mut conn)
                .expect("HGETALL"),
            "list" => redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query(&mut conn)
                .expect("LRANGE"),
            "set" => redis::cmd("SMEMBERS")
                .arg(key)
                .query(&mut conn)
                .expect("SMEMBERS"),
            "zset" => redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(&mut conn)
                .expect("ZRANGE"),
            _ => vec![redis::cmd("DUMP").arg(key).query(&mut conn).expect("DUMP")],
        };
        let mut bytes = format!("{key} ({kind}): ").into_bytes();
        for v in value {
            bytes.extend_from_slice(&v);
            bytes.push(b' ');
        }
        evidence.add(format!("redis {key}"), bytes);
    }
    keys.len()
}

/// Routes, clients, grants and secrets made with the CLI, as an operator
/// would; returns the team-a key and the HMAC secret the CLI generated.
fn provision(run: &mut Run, basic_secret: &str, given_hmac: &str) -> (String, String) {
    let routes: [(&str, &str, &[&str]); 4] = [
        ("data", "/data/*", &["GET=api_key"]),
        ("basic", "/basic/*", &["GET=basic"]),
        ("signed", "/signed/*", &["GET=hmac", "POST=hmac"]),
        ("llm", "/v1/*", &["POST=api_key,basic"]),
    ];
    for (id, path, methods) in routes {
        let mut args = vec![
            "route",
            "create",
            "--id",
            id,
            "--domain",
            HOST,
            "--path",
            path,
            "--service",
            "t",
        ];
        for m in methods {
            args.extend(["--method", m]);
        }
        run.cli_ok("route create", &args, None);
    }
    for (id, name) in [("team-a", "Team A"), ("team-b", "Team B")] {
        run.cli_ok(
            "client create",
            &["client", "create", "--id", id, "--name", name],
            None,
        );
    }
    let basic = [
        "client", "secret", "set", "team-a", "--basic", "--cost", "4",
    ];
    run.cli_ok(
        "client secret set --basic",
        &basic,
        Some(format!("{basic_secret}\n").as_bytes()),
    );
    let generated = run.cli_ok(
        "client secret set --hmac",
        &["client", "secret", "set", "team-a", "--hmac"],
        None,
    );
    let hmac_secret = generated
        .lines()
        .find_map(|l| l.strip_prefix("hmac secret: "))
        .expect("the generated secret is shown once")
        .trim()
        .to_owned();
    let given = ["client", "secret", "set", "team-b", "--hmac", "--stdin"];
    run.cli_ok(
        "client secret set --hmac --stdin",
        &given,
        Some(given_hmac.as_bytes()),
    );
    let grants: [(&str, &str, &[&str]); 5] = [
        ("team-a", "data", &["--method", "GET"]),
        ("team-a", "basic", &["--method", "GET"]),
        ("team-a", "signed", &["--method", "GET", "--method", "POST"]),
        ("team-a", "llm", &["--method", "POST", "--model", "llama3*"]),
        ("team-b", "signed", &["--method", "GET"]),
    ];
    for (client, route, extra) in grants {
        let mut args = vec!["grant", "create", "--client", client, "--route", route];
        args.extend_from_slice(extra);
        run.cli_ok("grant create", &args, None);
    }
    let created = run.cli_ok(
        "key create",
        &["key", "create", "--client", "team-a", "--json"],
        None,
    );
    (key_from_json(&created).0, hmac_secret)
}

/// Secret commands that must fail without echoing what they were given.
fn refused_secrets(run: &mut Run, too_short: &str, not_utf8: &[u8]) {
    let given = ["client", "secret", "set", "team-b", "--hmac", "--stdin"];
    let out = run.cli(
        "client secret set --hmac --stdin (too short)",
        &given,
        Some(too_short.as_bytes()),
    );
    assert!(
        !out.status.success(),
        "a 15-character HMAC secret is refused"
    );
    let basic = [
        "client", "secret", "set", "team-b", "--basic", "--cost", "4",
    ];
    let out = run.cli(
        "client secret set --basic (not UTF-8)",
        &basic,
        Some(not_utf8),
    );
    assert!(
        !out.status.success(),
        "a secret that is not UTF-8 is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_prompt_leaves_gatekeeper_in_postgres_and_redis_mode() {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let db_password = random_token(24);
    let db_url = with_password(&db.url, &db_password);
    let url = db_url.clone().unwrap_or_else(|| db.url.clone());
    let mut master = [0u8; 32];
    getrandom::getrandom(&mut master).expect("random bytes");
    let master_hex = hex::encode(master);
    let mut env = vec![
        ("GATEKEEPER_DATABASE_URL", url.clone()),
        ("GATEKEEPER_MASTER_KEY", master_hex.clone()),
        ("GATEKEEPER_MAX_BODY", "4096".to_owned()),
        ("GATEKEEPER_LAST_USED_INTERVAL", "200ms".to_owned()),
    ];
    env.extend(redis.env());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut run = Run::new(&env);

    let basic_secret = random_token(28);
    let given_hmac = random_token(32);
    let (key, hmac_secret) = provision(&mut run, &basic_secret, &given_hmac);
    let (wrong_key, _) =
        key_from_json(&run.cli_ok("key generate", &["key", "generate", "--json"], None));
    let too_short = random_token(15);
    let not_utf8 = [random_token(20).as_bytes(), b"\xff\xfe"].concat();
    refused_secrets(&mut run, &too_short, &not_utf8);
    let (_listener, mut notifications) = db.listen().await;

    let gk = Gatekeeper::start_postgres(&run.env());
    let creds = Creds {
        key,
        wrong_key,
        basic_client: "team-a".into(),
        basic_secret,
        hmac_client: "team-a".into(),
        hmac_secret,
        prompt: random_prompt(),
    };
    exercise(&mut run, &gk, &creds);
    // team-b signs with the secret it brought (`--hmac --stdin`).
    let auth = run.sign(("team-b", &given_hmac), "GET", "/signed/b", b"", now());
    let signed = get("/signed/b")
        .header("Authorization", auth)
        .header("X-Real-IP", GOOD_IP);
    run.send(&gk, "hmac (given secret)", signed, OK);
    revoked_key(&mut run, &gk);
    for args in [
        &["key", "list", "--json"][..],
        &["client", "show", "team-a", "--json"],
        &["client", "list"],
    ] {
        run.cli_ok("listing", args, None);
    }
    let used = poll_until(Duration::from_secs(5), || {
        let out = common::run(&["key", "list", "--json"], &run.env(), None);
        String::from_utf8_lossy(&out.stdout).contains("last_used_at\":\"")
    });
    assert!(used, "last_used_at was never written");
    scrape_admin(&mut run, &gk);
    dump_sessions(&db, &mut run.evidence).await;
    stop_and_collect(&mut run, gk);

    let rows = dump_database(&db, &mut run.evidence).await;
    assert!(rows >= 12, "the database holds the policy: {rows} rows");
    let keys = dump_redis(&redis, &mut run.evidence);
    assert!(
        keys >= 3,
        "Redis holds nonces, throttles and records: {keys} keys"
    );
    let mut payloads = Vec::new();
    while let Ok(n) = notifications.try_recv() {
        payloads.push(n.payload().to_owned());
    }
    assert!(!payloads.is_empty(), "NOTIFY payloads were heard");
    run.evidence.add("notify payloads", payloads.join("\n"));

    let mut secrets = creds.secrets();
    secrets.extend([
        secret("hmac secret (given)", &given_hmac),
        secret("refused hmac secret", &too_short),
        secret("refused basic secret", &not_utf8[..20]),
        secret("master key (text)", &master_hex),
        secret("master key (bytes)", master),
    ]);
    if db_url.is_some() {
        secrets.push(secret("database password", &db_password));
    }
    let allowed = [
        ("cli key create stdout", "api key (secret part)"),
        ("cli client secret set --hmac stdout", "hmac secret"),
    ];
    assert_no_leaks(&run, &secrets, &allowed);
}

/// A key created and revoked while the service runs: NOTIFY, eviction and
/// the Redis tombstone all handle its digest, never the key.
fn revoked_key(run: &mut Run, gk: &Gatekeeper) {
    let created = run.cli_ok(
        "key create",
        &["key", "create", "--client", "team-a", "--json"],
        None,
    );
    let (key, id) = key_from_json(&created);
    let req = || get("/data/x").bearer(&key).header("X-Real-IP", GOOD_IP);
    run.send(gk, "second key", req(), OK);
    run.cli_ok("key revoke", &["key", "revoke", &id], None);
    let refused = poll_until(Duration::from_secs(2), || {
        gk.send(&req()).reason() == "key_revoked"
    });
    assert!(refused, "the revoked key is refused");
    let bad = get("/data/x").bearer(&key).header("X-Real-IP", BAD_IP);
    run.send(gk, "revoked key", bad, (401, "key_revoked"));
}

// ── Mistakes an operator makes ──────────────────────────────────────────────

/// One instance with its file replaced, again and again, by one that holds
/// a secret in a value where it should not be (a plain secret for a hash, the
/// key for its digest, an inline HMAC secret, a string or a line cut short,
/// an env-style line): each is rejected, and neither the log, `/readyz` nor
/// `check` repeats the secret. (Names are echoed on purpose — an unknown
/// field, an `{ env = … }` variable, a `{ file = … }` path — so a secret
/// written where a name belongs is repeated; not asserted here.)
#[test]
fn a_rejected_file_holding_a_secret_is_not_echoed() {
    let mut run = Run::new(&[("GK_HYGIENE_HMAC", "unused-hmac-secret-0000")]);
    let key = common::generate_key();
    let hash = common::bcrypt_hash("s3cret-for-hygiene");
    let good = file_policy(&key, &hash);
    let gk = Gatekeeper::start_with_env(&good, &run.env());
    // Shaped like a key: a valid TOML bare key and environment variable name.
    let plain = format!(
        "gk_{}_{}",
        random_text(b"abcdefghijklmnopqrstuvwxyz", 12),
        random_token(38)
    );
    let digest_line = format!("digest = \"{}\"", key.digest);
    let hash_line = format!("secret_hash = \"{hash}\"");
    let hmac_line = "hmac_secret = { env = \"GK_HYGIENE_HMAC\" }";
    let mistakes = [
        (
            "a plain secret as the hash",
            hash_line.clone(),
            format!("secret_hash = \"{plain}\""),
        ),
        (
            "the key as its digest",
            digest_line.clone(),
            format!("digest = \"{plain}\""),
        ),
        (
            "an inline hmac secret",
            hmac_line.into(),
            format!("hmac_secret = \"{plain}\""),
        ),
        (
            "an unterminated string",
            hmac_line.into(),
            format!("name2 = \"{plain}"),
        ),
        ("the key pasted alone", digest_line.clone(), plain.clone()),
        (
            "an env-style line",
            hmac_line.into(),
            format!("TEAM_A_HMAC={plain}"),
        ),
    ];
    for (i, (label, line, mistake)) in mistakes.iter().enumerate() {
        let text = &good.replace(line, mistake);
        assert_ne!(text, &good, "{label}: the mistake was not made");
        // The file watcher alone: SIGHUP too could count one file twice.
        let rejections = || gk.readyz()["reload"]["rejected"].as_u64().unwrap_or(0);
        let before = rejections();
        gk.rewrite_config(text);
        let rejected = poll_until(Duration::from_secs(5), || rejections() > before);
        assert!(rejected, "{label}: not rejected: {}", gk.readyz());
        let r = gk.admin_get("/readyz");
        run.evidence
            .add(format!("admin /readyz after {label}"), render(&r));
        let file = run.dir.path().join(format!("mistake-{i}.toml"));
        std::fs::write(&file, text).expect("write file");
        run.cli(
            &format!("check ({label})"),
            &["check", file.to_str().unwrap()],
            None,
        );
        run.cli(
            &format!("check --json ({label})"),
            &["check", "--json", file.to_str().unwrap()],
            None,
        );
    }
    scrape_admin(&mut run, &gk);
    stop_and_collect_all(&mut run, gk);
    assert_no_leaks(&run, &[secret("secret in a rejected file", &plain)], &[]);
}

/// Runs a command for at most three seconds (`serve` may keep running),
/// then stops it; its whole output.
fn run_bounded(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut child = common::gatekeeper_command(env)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn gatekeeper");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    };
    let mut input = child.stdin.take().expect("stdin");
    let _ = input.write_all(stdin);
    drop(input);
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let exited = poll_until(Duration::from_secs(3), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    let joined = |h: std::thread::JoinHandle<Vec<u8>>| h.join().unwrap_or_default();
    (joined(stdout), joined(stderr))
}

/// `stop_and_collect` for a run that sent no requests.
fn stop_and_collect_all(run: &mut Run, gk: Gatekeeper) {
    run.requests = 0;
    let probe = get("/data/x").header("X-Request-ID", "hyg-0");
    gk.send(&probe);
    stop_and_collect(run, gk);
}

/// Settings that hold a secret — a password in the database or Redis URL,
/// the master key — malformed, unreachable or wrong: the message names the
/// setting, never the value, at start-up, in the CLI and while serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_unreachable_secret_setting_is_never_echoed() {
    let db = TestDb::new().await;
    let password = random_token(24);
    let bad_master = random_token(40);
    let (master, other_master) = (random_master(), random_master());
    let hmac_secret = random_token(32);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut evidence = Evidence::default();
    let db_urls = [
        format!("postgres://u:{password}@127.0.0.1:notaport/db"),
        format!("postgres://u:{password}@127.0.0.1:5432/db?sslmode=bogus"),
        format!("postgres://u:{password}@127.0.0.1:9/db"),
        format!(
            "postgres://u:{password}@127.0.0.1:5432/no_such_db_{}",
            random_token(6)
        ),
    ];
    for url in &db_urls {
        let env = [("GATEKEEPER_DATABASE_URL", url.as_str())];
        for args in [&["serve"][..], &["migrate"], &["key", "list"]] {
            bounded(&mut evidence, "bad database url", args, &env, "");
        }
    }

    let policy = dir.path().join("gatekeeper.toml");
    let key = common::generate_key();
    std::fs::write(
        &policy,
        file_policy(&key, &common::bcrypt_hash("x-secret-123")),
    )
    .unwrap();
    let serve_file = ["serve", "--config", policy.to_str().unwrap()];
    for url in [
        format!("redis://u:{password}@127.0.0.1:notaport"),
        format!("rediss://:{password}@[::1/0"),
    ] {
        let env = [("GATEKEEPER_REDIS_URL", url.as_str())];
        bounded(&mut evidence, "bad redis url", &serve_file, &env, "");
    }

    // The master key: malformed (value and file), then well-formed but not
    // the one the secret was sealed with.
    let url = with_password(&db.url, &password).unwrap_or_else(|| db.url.clone());
    let db_env = ("GATEKEEPER_DATABASE_URL", url.as_str());
    let sealing = [db_env, ("GATEKEEPER_MASTER_KEY", master.as_str())];
    let out = common::run(
        &["client", "create", "--id", "c1", "--name", "C"],
        &sealing,
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let set = ["client", "secret", "set", "c1", "--hmac", "--stdin"];
    let out = common::run(&set, &sealing, Some(hmac_secret.as_bytes()));
    assert!(out.status.success(), "{out:?}");
    let master_file = dir.path().join("master");
    std::fs::write(&master_file, format!("{bad_master}\n")).unwrap();
    let generate = ["client", "secret", "set", "c1", "--hmac"];
    for setting in [
        ("GATEKEEPER_MASTER_KEY", bad_master.as_str()),
        ("GATEKEEPER_MASTER_KEY_FILE", master_file.to_str().unwrap()),
        ("GATEKEEPER_MASTER_KEY", other_master.as_str()),
    ] {
        let env = [db_env, setting];
        for args in [&["serve"][..], &set, &generate] {
            bounded(&mut evidence, "master key", args, &env, &hmac_secret);
        }
    }

    // Unreachable but well-formed Redis: the service serves and keeps trying.
    let redis_url = format!("redis://u:{password}@127.0.0.1:9/0");
    let env = [
        ("GATEKEEPER_REDIS_URL", redis_url.as_str()),
        ("GATEKEEPER_LOG_LEVEL", EVERYTHING_AT_TRACE),
        ("GK_HYGIENE_HMAC", "unused-hmac-secret-0000"),
    ];
    let gk = Gatekeeper::start_with_env(
        &file_policy(&key, &common::bcrypt_hash("x-secret-123")),
        &env,
    );
    for k in [&key.key, &format!("{}x", key.key)] {
        gk.send(&get("/data/x").bearer(k).header("X-Real-IP", BAD_IP));
    }
    let degraded = poll_until(Duration::from_secs(5), || {
        gk.readyz()["redis"] == "degraded"
    });
    assert!(degraded, "{}", gk.readyz());
    evidence.add(
        "readyz with redis unreachable",
        render(&gk.admin_get("/readyz")),
    );
    evidence.add(
        "metrics with redis unreachable",
        render(&gk.admin_get("/metrics")),
    );
    evidence.add("output with redis unreachable", gk.logs().join("\n"));

    let run = Run {
        evidence,
        env: Vec::new(),
        dir,
        requests: 0,
    };
    let secrets = [
        secret("password in a URL", &password),
        secret("malformed master key", &bad_master),
        secret("master key", &master),
        secret("master key (bytes)", hex::decode(&master).unwrap()),
        secret("another master key", &other_master),
        secret("hmac secret", &hmac_secret),
    ];
    assert_no_leaks(&run, &secrets, &[]);
}

/// `run_bounded` at `trace`, its output kept as evidence.
/// Standard input is the HMAC secret, for the commands that read one.
fn bounded(evidence: &mut Evidence, label: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) {
    let mut env = env.to_vec();
    env.push(("GATEKEEPER_LOG_LEVEL", EVERYTHING_AT_TRACE));
    env.push(("GK_HYGIENE_HMAC", "unused-hmac-secret-0000"));
    let (stdout, stderr) = run_bounded(args, &env, stdin.as_bytes());
    evidence.add(format!("{label} {args:?} stdout"), stdout);
    evidence.add(format!("{label} {args:?} stderr"), stderr);
}

fn random_master() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("random bytes");
    hex::encode(bytes)
}

// ── The search itself ───────────────────────────────────────────────────────

#[test]
fn the_search_finds_every_form_and_nothing_else() {
    let secrets = [
        secret("a", random_token(32)),
        secret(
            "b",
            [0u8, 1, 2, 254, 255, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
        ),
    ];
    let detector = Detector::new(&secrets);
    let mut evidence = Evidence::default();
    evidence.add("noise", random_token(100_000));
    assert_search_finds_planted_secrets(&detector, &secrets, &evidence);
    assert!(
        detector.scan(&evidence.items[0].1).is_empty(),
        "noise is no leak"
    );
    let inner = format!("team-a:{}", std::str::from_utf8(&secrets[0].bytes).unwrap());
    let basic = format!("Authorization: Basic {}", STANDARD.encode(inner));
    let found: BTreeSet<String> = detector
        .scan(basic.as_bytes())
        .into_iter()
        .map(|h| h.secret)
        .collect();
    assert_eq!(
        found,
        BTreeSet::from(["a".to_owned()]),
        "inside a Basic token"
    );
}
