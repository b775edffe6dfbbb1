//! The integration-test harness, two ways to run gatekeeper on port 0 with
//! a declarative file in a temporary directory:
//! - in process ([`spawn_app`], `app.rs`): `App::build` and `run` with a
//!   oneshot as the stop, for the /authz contract;
//! - as a process ([`Gatekeeper`]): the real `gatekeeper serve` binary,
//!   for what only a process shows (signals, exit codes, its log output).
//!
//! Both are talked to over plain HTTP/1.1 (a tiny client that sends header
//! values as raw bytes, so tests can send what no well-behaved client
//! would), and tests poll with a deadline instead of sleeping.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod app;
pub mod hmac;
pub mod proxy;
pub mod redis;
pub mod topology;

#[allow(unused_imports)] // as dead_code above: not every binary runs an App
pub use app::{spawn_app, spawn_app_with, spawn_app_with_env, TestApp};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatekeeper");
const START_DEADLINE: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment every test instance runs with; tests add to it.
const BASE_ENV: &[(&str, &str)] = &[
    ("GATEKEEPER_LISTEN", "127.0.0.1:0"),
    ("GATEKEEPER_ADMIN_LISTEN", "127.0.0.1:0"),
    ("GATEKEEPER_LOG_FORMAT", "json"),
    ("GATEKEEPER_WORKERS", "1"),
    ("GATEKEEPER_RELOAD_INTERVAL", "200ms"),
    // HMAC is refused for this long (plus the rest of the start second)
    // after a start without Redis: no test waits 5 s (`hmac::now`).
    ("GATEKEEPER_HMAC_MAX_AHEAD", "0s"),
];

/// The latest Unix second by which a gatekeeper this binary started (in
/// process or as a process) was up: its nonce memory began no later.
pub static LATEST_START: AtomicI64 = AtomicI64::new(0);

/// Notes that a gatekeeper is up now (see [`LATEST_START`]).
pub fn note_started() {
    LATEST_START.fetch_max(hmac::unix_now(), Ordering::SeqCst);
}

/// A running `gatekeeper serve`, killed on drop.
pub struct Gatekeeper {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    pub authz_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl Gatekeeper {
    pub fn start(toml: &str) -> Gatekeeper {
        Gatekeeper::start_with_env(toml, &[])
    }

    /// Starts with `env` on top of the base settings; panics (with the
    /// collected output) when the service is not listening within 10 s.
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Gatekeeper {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gatekeeper.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut cmd = gatekeeper_command(env);
        cmd.arg("serve").arg("--config").arg(&config);
        Gatekeeper::spawn(cmd, dir, config)
    }

    /// Starts `serve` with no file: PostgreSQL mode, from `env`.
    pub fn start_postgres(env: &[(&str, &str)]) -> Gatekeeper {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("unused.toml");
        let mut cmd = gatekeeper_command(env);
        cmd.arg("serve");
        Gatekeeper::spawn(cmd, dir, config)
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir, config: PathBuf) -> Gatekeeper {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatekeeper");
        let logs = Arc::new(Mutex::new(Vec::new()));
        drain(child.stdout.take().expect("stdout"), logs.clone());
        drain(child.stderr.take().expect("stderr"), logs.clone());
        let (authz_addr, admin_addr) = wait_for_listening(&mut child, &logs);
        note_started();
        Gatekeeper {
            child,
            dir,
            config,
            logs,
            authz_addr,
            admin_addr,
        }
    }

    /// Sends one request to `/authz`: GET, or POST with `body`.
    pub fn authz<N: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        headers: &[(N, V)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_authz(headers, body)
            .unwrap_or_else(|e| panic!("/authz failed: {e}\nlogs:\n{}", self.logs().join("\n")))
    }

    pub fn try_authz<N: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        headers: &[(N, V)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        authz_at(self.authz_addr, headers, body)
    }

    /// Sends a request built with [`Req`].
    pub fn send(&self, req: &Req) -> Response {
        self.authz(&req.headers, req.body.as_deref())
    }

    pub fn admin_get(&self, path: &str) -> Response {
        http(self.admin_addr, "GET", path, &[], None).expect("admin request")
    }

    pub fn metrics(&self) -> String {
        self.admin_get("/metrics").text()
    }

    pub fn readyz(&self) -> serde_json::Value {
        let r = self.admin_get("/readyz");
        assert_eq!(r.status, 200, "/readyz: {}", r.text());
        serde_json::from_slice(&r.body).expect("/readyz is JSON")
    }

    /// Every line the process printed so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the declarative file atomically (write, then rename), so the
    /// file watcher never reads half a file.
    pub fn rewrite_config(&self, toml: &str) {
        let tmp = self.dir.path().join("gatekeeper.toml.new");
        std::fs::write(&tmp, toml).expect("write new config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
    }

    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }
}

impl Drop for Gatekeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `gatekeeper` command with no `GATEKEEPER_*` setting inherited from the
/// caller's environment, the base settings, then `env`.
pub fn gatekeeper_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEKEEPER_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(BASE_ENV.iter().copied()).envs(env.iter().copied());
    cmd
}

/// Runs a one-shot subcommand (`check`, `key generate`, ...).
pub fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut child = gatekeeper_command(env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatekeeper");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for gatekeeper")
}

fn drain(pipe: impl Read + Send + 'static, logs: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            logs.lock().unwrap_or_else(|e| e.into_inner()).push(text);
            line.clear();
        }
    });
}

fn wait_for_listening(child: &mut Child, logs: &Mutex<Vec<String>>) -> (SocketAddr, SocketAddr) {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let found = logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find_map(|l| listening_addrs(l));
        if let Some(addrs) = found {
            return addrs;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let logs = logs.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
            panic!("gatekeeper did not start (exit: {exited:?}); output:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "listening" {
        return None;
    }
    Some((
        v["authz"].as_str()?.parse().ok()?,
        v["admin"].as_str()?.parse().ok()?,
    ))
}

/// One request to `/authz` at `addr`: GET, or POST with `body`.
pub fn authz_at<N: AsRef<str>, V: AsRef<[u8]>>(
    addr: SocketAddr,
    headers: &[(N, V)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let method = if body.is_some() { "POST" } else { "GET" };
    let headers: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_ref(), v.as_ref()))
        .collect();
    http(addr, method, "/authz", &headers, body)
}

/// Calls `f` until it returns true or `deadline` passes; true when it did.
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ── HTTP ────────────────────────────────────────────────────────────────────

/// An HTTP response; header names lower-cased.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// `X-Auth-Reason`, or "" when absent.
    pub fn reason(&self) -> &str {
        self.header("x-auth-reason").unwrap_or("")
    }

    /// `X-Auth-Status` as a number (0 when absent).
    pub fn auth_status(&self) -> u16 {
        self.header("x-auth-status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn route(&self) -> &str {
        self.header("x-auth-route-id").unwrap_or("")
    }

    pub fn num(&self, name: &str) -> u64 {
        self.header(name)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing or not a number in {self:?}"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&req)?;
    read_response(&mut stream)
}

/// Reads one response: the head, then the body by `Content-Length` or
/// chunks, or to the end of the stream. Not waiting for the close matters:
/// actix may hold a connection whose request body it did not read.
fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(r) = complete_response(&raw)? {
            return Ok(r);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return parse_response(&raw, true);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// The response, when `raw` holds all of it.
fn complete_response(raw: &[u8]) -> std::io::Result<Option<Response>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let r = parse_response(raw, false)?;
    let body_len = raw.len() - end - 4;
    let complete = match r
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(len) => body_len >= len,
        None if r.header("transfer-encoding").is_some() => raw.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    Ok(complete.then_some(r))
}

fn parse_response(raw: &[u8], at_eof: bool) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers (connection closed without a response?)"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
    let body = match (chunked, length) {
        (true, _) => dechunk(rest),
        (false, Some(len)) => rest[..len.min(rest.len())].to_vec(),
        (false, None) if at_eof => rest.to_vec(),
        (false, None) => Vec::new(),
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || rest.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + size]);
        rest = rest.get(i + 4 + size..).unwrap_or_default();
    }
    out
}

// ── Requests ────────────────────────────────────────────────────────────────

/// An `/authz` request as nginx would send it.
#[derive(Clone, Debug)]
pub struct Req {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl Req {
    /// `X-Original-Method` and `X-Original-URI`.
    pub fn new(method: &str, uri: &str) -> Req {
        Req {
            headers: Vec::new(),
            body: None,
        }
        .header("X-Original-Method", method)
        .header("X-Original-URI", uri)
    }

    pub fn get(uri: &str) -> Req {
        Req::new("GET", uri)
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    pub fn without(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn host(self, host: &str) -> Req {
        self.header("X-Original-Host", host)
    }

    pub fn bearer(self, key: &str) -> Req {
        self.header("Authorization", format!("Bearer {key}"))
    }

    pub fn basic(self, client_id: &str, secret: &str) -> Req {
        self.header("Authorization", basic_value(client_id, secret))
    }

    /// The body as the njs bridge forwards it: POST with `X-Original-Body`.
    pub fn body(mut self, body: &[u8]) -> Req {
        self.body = Some(body.to_vec());
        self.header("X-Original-Body", "present")
    }
}

pub fn basic_value(client_id: &str, secret: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    format!("Basic {token}")
}

// ── Key material and metrics ────────────────────────────────────────────────

/// A key from `gatekeeper key generate --json`.
#[derive(Clone, Debug)]
pub struct Key {
    pub key: String,
    pub id: String,
    pub digest: String,
}

impl Key {
    /// The `[[client.key]]` table for this key.
    pub fn toml(&self, status: &str, expires_at: Option<&str>) -> String {
        let expires = expires_at
            .map(|e| format!("expires_at = \"{e}\"\n"))
            .unwrap_or_default();
        format!(
            "[[client.key]]\nid = \"{}\"\ndigest = \"{}\"\nstatus = \"{status}\"\n{expires}\n",
            self.id, self.digest
        )
    }
}

pub fn generate_key() -> Key {
    let out = run(&["key", "generate", "--json"], &[], None);
    assert!(out.status.success(), "key generate: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("key JSON");
    let field = |name: &str| v[name].as_str().expect(name).to_owned();
    Key {
        key: field("key"),
        id: field("id"),
        digest: field("digest"),
    }
}

/// `gatekeeper secret hash --cost 4` (cheap, for tests).
pub fn bcrypt_hash(secret: &str) -> String {
    let out = run(
        &["secret", "hash", "--cost", "4"],
        &[],
        Some(secret.as_bytes()),
    );
    assert!(out.status.success(), "secret hash: {out:?}");
    String::from_utf8(out.stdout)
        .expect("hash")
        .trim()
        .to_owned()
}

/// The value of one Prometheus sample whose labels include `labels` (in any
/// order); 0 when there is none yet (counters appear on first use).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
            metric_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// A deterministic xorshift64* generator (no extra crates).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
