//! Abuse against the real binary (the "Security hardening" issue): a flood
//! of wrong credentials on 32 concurrent keep-alive connections, header
//! values of 64 KB, thousands of headers in one request, bytes that are not
//! UTF-8 in every header `/authz` reads, bodies past `GATEKEEPER_MAX_BODY`.
//! Throughout, a canary sends the one valid key from an address of its own
//! and must be allowed every time; the flood's addresses are spread so the
//! failed-credential throttle does not hide the work, and one address that
//! hammers must be throttled. Afterwards the process is alive, `/livez`
//! answers 200 and resident memory stayed bounded. Requests of a valid
//! format never get a 5xx; oversized ones get a 4xx, not a crash.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use common::{Gatekeeper, Key, XorShift};

const GARBAGE: usize = 10_000;
const CONNECTIONS: usize = 32;
/// Every this many garbage requests, one from the hammering address.
const HAMMER_EVERY: usize = 16;
const HAMMER_IP: &str = "198.51.100.9";
const CANARY_IP: &str = "192.0.2.77";
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous bounds: a debug build, the allocator's own slack.
const MAX_RSS_KB: u64 = 200 * 1024;
const MAX_GROWTH_KB: u64 = 64 * 1024;

// ── A keep-alive HTTP/1.1 client that sends raw bytes ───────────────────────

/// The parts of a response the assertions need.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    reason: String,
    auth_status: String,
}

impl Answer {
    fn label(&self) -> String {
        format!("{} {} {}", self.status, self.auth_status, self.reason)
    }
}

struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None }
    }

    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        Ok(self.stream.as_mut().expect("just connected"))
    }

    /// Sends one request; on a connection the server closed after its last
    /// answer, reconnects once and sends it again.
    fn send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        match self.try_send(request) {
            Ok(a) => Ok(a),
            Err(_) => {
                self.stream = None;
                self.try_send(request)
            }
        }
    }

    fn try_send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let stream = self.stream()?;
        stream.write_all(request)?;
        let answer = read_answer(stream);
        if !matches!(&answer, Ok(a) if a.status < 400) {
            // actix closes after a parse error; start the next one afresh.
            self.stream = None;
        }
        answer
    }
}

/// Reads one response head and its `Content-Length` body.
fn read_answer(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw.len() - end - 4;
    while body < length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body += n;
    }
    let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
    Ok(Answer {
        status,
        reason: header("x-auth-reason"),
        auth_status: header("x-auth-status"),
    })
}

/// `GET /authz` (or `POST` with `body`) with these headers, kept alive.
fn request(headers: &[(&str, &[u8])], body: Option<&[u8]>) -> Vec<u8> {
    let method = if body.is_some() { "POST" } else { "GET" };
    let mut out = format!("{method} /authz HTTP/1.1\r\nHost: gatekeeper\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// `GET /data/x` as nginx would ask, with `extra` headers added; an extra
/// `X-Original-Method`, `-URI` or `-Host` replaces the usual one.
fn data_request(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let usual: [(&str, &[u8]); 3] = [
        ("X-Original-Method", b"GET"),
        ("X-Original-URI", b"/data/x"),
        ("X-Original-Host", b"api.test"),
    ];
    let mut headers: Vec<(&str, &[u8])> = usual
        .into_iter()
        .filter(|(name, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(name)))
        .collect();
    headers.extend_from_slice(extra);
    request(&headers, None)
}

fn valid_request(key: &Key) -> Vec<u8> {
    let auth = format!("Bearer {}", key.key);
    data_request(&[
        ("Authorization", auth.as_bytes()),
        ("X-Real-IP", CANARY_IP.as_bytes()),
    ])
}

// ── The service ─────────────────────────────────────────────────────────────

const BASIC_SECRET: &str = "abuse-basic-secret";
const HMAC_SECRET: &str = "abuse-hmac-secret-0123456789";

/// One route that judges every credential type, one client holding all.
fn policy(key: &Key) -> String {
    format!(
        "[[route]]\nid = \"data\"\ndomain = \"api.test\"\npath = \"/data/*\"\nservice = \"t\"\n\
         [route.methods]\nGET = [\"api_key\", \"basic\", \"hmac\"]\n\
         POST = [\"api_key\", \"basic\", \"hmac\"]\n\n\
         [[client]]\nid = \"team-a\"\nname = \"Team A\"\nsecret_hash = \"{}\"\n\
         hmac_secret = {{ env = \"GK_ABUSE_HMAC\" }}\n\n{}\
         [[grant]]\nclient = \"team-a\"\nroute = \"data\"\nmethods = [\"GET\", \"POST\"]\n\
         models = [\"llama3*\"]\n",
        common::bcrypt_hash(BASIC_SECRET),
        key.toml("active", None)
    )
}

fn start(key: &Key) -> Gatekeeper {
    Gatekeeper::start_with_env(
        &policy(key),
        &[
            ("GK_ABUSE_HMAC", HMAC_SECRET),
            ("GATEKEEPER_WORKERS", "2"),
            ("GATEKEEPER_MAX_BODY", "1048576"),
        ],
    )
}

/// `VmRSS` and `VmHWM` of the process, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sends the valid key until stopped; every answer must be an allow.
struct Canary {
    stop: AtomicBool,
    sent: Mutex<(usize, Vec<String>)>,
}

impl Canary {
    fn run(&self, addr: SocketAddr, key: &Key) {
        let mut conn = Conn::new(addr);
        let req = valid_request(key);
        while !self.stop.load(Ordering::Relaxed) {
            let outcome = conn.send(&req);
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            sent.0 += 1;
            match outcome {
                Ok(a) if a.status == 200 => {}
                Ok(a) => sent.1.push(a.label()),
                Err(e) => sent.1.push(format!("error: {e}")),
            }
            drop(sent);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

// ── Garbage ─────────────────────────────────────────────────────────────────

/// A wrong credential of every kind, well-formed or not.
fn garbage_credential(rng: &mut XorShift, keys: &[String]) -> (&'static str, Vec<u8>) {
    let hex = |rng: &mut XorShift| format!("{:016x}{:016x}", rng.next(), rng.next());
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let value = match rng.below(9) {
        // Checksum-valid keys nobody holds: a digest look-up each.
        0 | 1 => format!("Bearer {}", rng.pick(keys)),
        2 => {
            let mut k = rng.pick(keys).clone();
            k.pop();
            format!("Bearer {k}0")
        }
        3 => format!("ApiKey legacy-{}", hex(rng)),
        4 => format!(
            "Basic {}",
            b64(format!("nobody-{}:{}", rng.below(1000), hex(rng)))
        ),
        // A known client: bcrypt runs, so only now and then.
        5 if rng.chance(8) => format!("Basic {}", b64(format!("team-a:{}", hex(rng)))),
        6 => format!(
            "HMAC client_id=\"team-a\",timestamp=\"{}\",nonce=\"{}\",signature=\"{}{}\"",
            common::hmac::now(),
            hex(rng),
            hex(rng),
            hex(rng)
        ),
        7 => return ("X-API-Key", format!("sk-{}", hex(rng)).into_bytes()),
        _ => format!("Bearer gk_{}_{}", hex(rng), hex(rng)),
    };
    ("Authorization", value.into_bytes())
}

/// What one flooding connection saw.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, usize>,
    hammer_refused: usize,
    hammer_throttled: usize,
    problems: Vec<String>,
}

fn flood(addr: SocketAddr, seed: u64, count: usize, keys: &[String]) -> Tally {
    let mut rng = XorShift::new(seed);
    let mut conn = Conn::new(addr);
    let mut tally = Tally::default();
    for i in 0..count {
        let hammer = i % HAMMER_EVERY == 0;
        let ip = match hammer {
            true => HAMMER_IP.to_owned(),
            false => format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
        };
        let (name, value) = garbage_credential(&mut rng, keys);
        let req = data_request(&[(name, &value), ("X-Real-IP", ip.as_bytes())]);
        let a = match conn.send(&req) {
            Ok(a) => a,
            Err(e) => {
                tally.problems.push(format!("garbage {i}: {e}"));
                continue;
            }
        };
        *tally.outcomes.entry(a.label()).or_default() += 1;
        match (a.status, a.reason.as_str()) {
            (401, _) if hammer => tally.hammer_refused += 1,
            (403, "rate_limited") if hammer => tally.hammer_throttled += 1,
            (401, _) => {}
            _ => tally.problems.push(format!(
                "garbage {i} from {ip}: {} for {}",
                a.label(),
                String::from_utf8_lossy(&value)
            )),
        }
    }
    tally
}

// ── Oversized and malformed requests ────────────────────────────────────────

/// What a request should get: an allow (it carries the valid key, and the
/// oddity is in a header that does not decide), or a refusal — gatekeeper's
/// own deny (401/403 with a reason) or actix refusing what it cannot parse
/// (400, 431). Never a 5xx, never a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Refuse,
}

fn as_expected(expect: Expect, a: &Answer) -> bool {
    match (expect, a.status) {
        (Expect::Allow, status) => status == 200,
        (Expect::Refuse, 401 | 403) => !a.reason.is_empty(),
        (Expect::Refuse, status) => matches!(status, 400 | 413 | 431),
    }
}

type Case = (String, Expect, Vec<u8>);

/// Every oversized or malformed shape, each on a fresh connection; what
/// each was expected to get and got.
fn oversized_and_malformed(addr: SocketAddr, key: &Key) -> Vec<(String, Expect, Answer)> {
    let mut cases = huge_headers(key);
    cases.extend(many_headers(key));
    cases.extend(not_utf8(key));
    cases.extend(huge_bodies(key));
    cases
        .into_iter()
        .map(|(label, expect, req)| (label, expect, exchange(addr, &req)))
        .collect()
}

/// A 64 KB value in each header `/authz` reads (and in two it does not).
fn huge_headers(key: &Key) -> Vec<Case> {
    let auth = format!("Bearer {}", key.key);
    let big = vec![b'a'; 64 * 1024];
    let path = [&b"/data/"[..], &big].concat();
    let bearer = [&b"Bearer "[..], &big].concat();
    let mut out = Vec::new();
    let cases: [(&str, &[u8], Expect); 11] = [
        ("Authorization", &bearer, Expect::Refuse),
        ("X-API-Key", &big, Expect::Refuse),
        ("X-Original-Method", &big, Expect::Refuse),
        ("X-Original-Host", &big, Expect::Refuse),
        ("X-Original-Path", &path, Expect::Refuse),
        ("X-Original-Content-Length", &big, Expect::Refuse),
        // Longer than `MAX_URI_LEN` (16 KB): a bad request.
        ("X-Original-URI", &path, Expect::Refuse),
        ("X-Real-IP", &big, Expect::Allow),
        ("X-Request-ID", &big, Expect::Allow),
        ("X-Provider-Token", &big, Expect::Allow),
        ("Cookie", &big, Expect::Allow),
    ];
    for (name, value, expect) in cases {
        let mut headers: Vec<(&str, &[u8])> = vec![(name, value)];
        if !matches!(name, "Authorization" | "X-API-Key") {
            headers.push(("Authorization", auth.as_bytes()));
        }
        if name != "X-Real-IP" {
            headers.push(("X-Real-IP", b"203.0.113.1"));
        }
        out.push((format!("64 KB {name}"), expect, data_request(&headers)));
    }
    let bigger = vec![b'b'; 200 * 1024];
    let two = data_request(&[("X-Junk-1", &big), ("X-Junk-2", &big)]);
    out.push(("two 64 KB headers".into(), Expect::Refuse, two));
    let one = data_request(&[("X-Junk", &bigger)]);
    out.push(("one 200 KB header".into(), Expect::Refuse, one));
    out
}

/// Thousands of headers, thousands of credentials, and 80 headers (under
/// actix's limit of 96) beside the valid key.
fn many_headers(key: &Key) -> Vec<Case> {
    let auth = format!("Bearer {}", key.key);
    let names: Vec<String> = (0..5_000).map(|i| format!("X-H-{i}")).collect();
    let mut out = Vec::new();
    for (n, expect) in [
        (5_000, Expect::Refuse),
        (200, Expect::Refuse),
        (80, Expect::Allow),
    ] {
        let mut headers: Vec<(&str, &[u8])> =
            names[..n].iter().map(|h| (h.as_str(), &b"v"[..])).collect();
        headers.push(("Authorization", auth.as_bytes()));
        out.push((format!("{n} headers"), expect, data_request(&headers)));
    }
    let credentials: Vec<(&str, &[u8])> = (0..2_000)
        .map(|_| ("Authorization", auth.as_bytes()))
        .collect();
    let label = "2,000 Authorization headers".to_owned();
    out.push((label, Expect::Refuse, data_request(&credentials)));
    out
}

/// Bytes that are not UTF-8 (invalid, overlong, a surrogate) in every
/// header `/authz` reads, beside the valid key unless it replaces it.
fn not_utf8(key: &Key) -> Vec<Case> {
    let auth = format!("Bearer {}", key.key);
    let values: [&[u8]; 4] = [
        b"\xff\xfe\xfd",
        b"gk_\xc0\xaf\x80\x80_abc",
        b"caf\xe9",
        b"\xed\xa0\x80surrogate",
    ];
    let headers = [
        ("Authorization", Expect::Refuse),
        ("X-API-Key", Expect::Refuse),
        ("X-Original-Method", Expect::Refuse),
        ("X-Original-URI", Expect::Refuse),
        ("X-Original-Path", Expect::Refuse),
        ("X-Original-Host", Expect::Refuse),
        ("X-Original-Content-Length", Expect::Refuse),
        ("X-Original-Body", Expect::Allow),
        ("X-Real-IP", Expect::Allow),
        ("X-Request-ID", Expect::Allow),
        ("X-Provider-Token", Expect::Allow),
    ];
    let mut out = Vec::new();
    for (name, expect) in headers {
        for (i, v) in values.iter().enumerate() {
            let value = match name {
                "Authorization" => [&b"Bearer "[..], v].concat(),
                "X-Original-URI" | "X-Original-Path" => [&b"/data/"[..], v].concat(),
                _ => v.to_vec(),
            };
            let mut extra: Vec<(&str, &[u8])> = vec![(name, &value)];
            if !matches!(name, "Authorization" | "X-API-Key") {
                extra.push(("Authorization", auth.as_bytes()));
            }
            if name != "X-Real-IP" {
                extra.push(("X-Real-IP", b"203.0.113.2"));
            }
            out.push((
                format!("non-UTF-8 {name} #{i}"),
                expect,
                data_request(&extra),
            ));
        }
    }
    out
}

/// Forwarded bodies past `GATEKEEPER_MAX_BODY` (1 MiB here), by length and
/// chunked.
fn huge_bodies(key: &Key) -> Vec<Case> {
    let auth = format!("Bearer {}", key.key);
    let headers: Vec<(&str, &[u8])> = vec![
        ("X-Original-Method", b"POST"),
        ("X-Original-URI", b"/data/x"),
        ("X-Original-Host", b"api.test"),
        ("X-Original-Body", b"present"),
        ("X-Real-IP", b"203.0.113.3"),
        ("Authorization", auth.as_bytes()),
    ];
    let big = vec![b'{'; 3 * 1024 * 1024];
    let by_length = request(&headers, Some(&big));
    let mut chunked_headers = headers.clone();
    chunked_headers.push(("Transfer-Encoding", b"chunked"));
    let mut chunked = request(&chunked_headers, None);
    for chunk in big.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    vec![
        ("3 MiB body".into(), Expect::Refuse, by_length),
        ("3 MiB chunked body".into(), Expect::Refuse, chunked),
    ]
}

/// One request on a fresh connection, written by a thread of its own so a
/// server that answers before reading everything (a body past the limit)
/// cannot leave the writer and the reader waiting on each other.
fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let failed = |e: std::io::Error| Answer {
        status: 0,
        reason: format!("io error: {e}"),
        auth_status: String::new(),
    };
    let mut stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut writer = stream.try_clone().expect("clone the stream");
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = writer.write_all(request);
        });
        let answer = read_answer(&mut stream).unwrap_or_else(failed);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        answer
    })
}

// ── The test ────────────────────────────────────────────────────────────────

#[test]
fn a_flood_of_garbage_and_oversized_requests_leaves_the_service_up_bounded_and_serving() {
    let started = Instant::now();
    let key = common::generate_key();
    let mut gk = start(&key);
    let addr = gk.authz_addr;
    let mut warm = Conn::new(addr);
    for _ in 0..200 {
        assert_eq!(
            warm.send(&valid_request(&key)).expect("warm-up").status,
            200
        );
    }
    let (rss_before, _) = memory_kb(gk.pid());
    let keys: Vec<String> = (0..2_000)
        .map(|_| {
            gatekeeper::core::apikey::generate()
                .expect("a key")
                .key
                .expose()
                .to_owned()
        })
        .collect();

    let canary = Canary {
        stop: AtomicBool::new(false),
        sent: Mutex::new((0, Vec::new())),
    };
    let (tallies, refusals) = std::thread::scope(|s| {
        s.spawn(|| canary.run(addr, &key));
        let floods: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let keys = &keys;
                let count = GARBAGE / CONNECTIONS + usize::from(c < GARBAGE % CONNECTIONS);
                s.spawn(move || flood(addr, 0x5eed + c as u64, count, keys))
            })
            .collect();
        let tallies: Vec<Tally> = floods
            .into_iter()
            .map(|f| f.join().expect("flood"))
            .collect();
        let refusals = oversized_and_malformed(addr, &key);
        canary.stop.store(true, Ordering::Relaxed);
        (tallies, refusals)
    });
    let elapsed = started.elapsed();

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let (mut refused, mut throttled) = (0, 0);
    for t in tallies {
        for (k, n) in t.outcomes {
            *outcomes.entry(k).or_default() += n;
        }
        problems.extend(t.problems);
        refused += t.hammer_refused;
        throttled += t.hammer_throttled;
    }
    let sent: usize = outcomes.values().sum();
    println!("{sent} garbage requests in {elapsed:?}: {outcomes:#?}");
    let unexpected: Vec<String> = refusals
        .iter()
        .filter(|(_, expect, a)| !as_expected(*expect, a))
        .map(|(label, expect, a)| format!("{label}: expected {expect:?}, got {}", a.label()))
        .collect();
    let seen: Vec<String> = refusals
        .iter()
        .map(|(l, _, a)| format!("{l}: {}", a.label()))
        .collect();
    println!("oversized and malformed: {seen:#?}");

    assert!(gk.is_alive(), "the service died: {:#?}", gk.logs());
    let livez = gk.admin_get("/livez");
    assert_eq!(livez.status, 200, "{livez:?}");
    assert_eq!(
        Conn::new(addr)
            .send(&valid_request(&key))
            .expect("after")
            .status,
        200
    );
    assert!(
        problems.is_empty(),
        "{} garbage requests got something else than a 401 (or the hammer's 429): {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    assert!(
        sent >= GARBAGE,
        "only {sent} of {GARBAGE} garbage requests answered"
    );
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let (canary_sent, canary_failed) = canary.sent.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        canary_failed.is_empty(),
        "the valid key was refused: {canary_failed:#?}"
    );
    assert!(
        canary_sent >= 20,
        "the canary only sent {canary_sent} requests"
    );
    assert!(throttled > 0, "the hammering address was never throttled");
    // 20 a minute back to back, then one every 3 s.
    let allowed = 20 + elapsed.as_secs() as usize / 3 + 2;
    assert!(
        refused <= allowed,
        "{refused} wrong keys judged from one address (throttle at {allowed})"
    );

    // The flood did the work it asked for: digests, bcrypt, HMACs.
    let checks = common::metric(&gk.metrics(), "gatekeeper_credential_checks_total", &[]);
    assert!(
        checks > (GARBAGE / 3) as f64,
        "only {checks} credentials were verified"
    );

    let (rss_after, hwm) = memory_kb(gk.pid());
    println!("VmRSS {rss_before} kB -> {rss_after} kB (peak {hwm} kB); canary sent {canary_sent}");
    assert!(rss_after < MAX_RSS_KB, "resident {rss_after} kB");
    assert!(hwm < MAX_RSS_KB, "peak resident {hwm} kB");
    assert!(
        rss_after.saturating_sub(rss_before) < MAX_GROWTH_KB,
        "grew from {rss_before} kB to {rss_after} kB"
    );
}
