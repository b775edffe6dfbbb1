//! `/authz` connections past `GATEKEEPER_MAX_CONNECTIONS` are refused at
//! once (a 503 that closes the connection), not left in the accept queue;
//! the admin listener keeps answering while `/authz` is full; places free
//! up as connections close; the bound follows the open-file limit, which
//! `serve` raises to the hard limit first. On the real binary.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric, poll_until, Gatekeeper, Req, BIN};

const POLICY: &str = r#"
[[route]]
id = "health"
domain = "*"
path = "/health"
service = "status"
[route.methods]
GET = ["public"]
"#;

const MAX: usize = 20;
const IDLE: usize = 100;

/// What a connection got within `wait`: the answer's head, or nothing.
fn answer_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// What each connection got within `wait` (all watched at once).
fn answers_within(streams: &mut [TcpStream], wait: Duration) -> Vec<Option<String>> {
    let mut heads = vec![None; streams.len()];
    let end = Instant::now() + wait;
    for stream in streams.iter() {
        stream.set_nonblocking(true).unwrap();
    }
    while Instant::now() < end {
        for (stream, head) in streams.iter_mut().zip(&mut heads) {
            let mut buf = [0u8; 1024];
            if head.is_none() {
                if let Ok(n @ 1..) = stream.read(&mut buf) {
                    *head = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for stream in streams.iter() {
        stream.set_nonblocking(false).unwrap();
    }
    heads
}

fn health() -> Req {
    Req::get("/health").host("status.example.com")
}

#[test]
fn connections_past_the_bound_are_refused_at_once_and_the_admin_listener_answers() {
    let gk = Gatekeeper::start_with_env(
        POLICY,
        &[
            ("GATEKEEPER_MAX_CONNECTIONS", "20"),
            ("GATEKEEPER_WORKERS", "2"),
        ],
    );
    // Idle connections, as a stalled or hostile client holds them.
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(gk.authz_addr).expect("connect"))
        .collect();
    let started = Instant::now();
    let heads = answers_within(&mut idle, Duration::from_secs(1));
    for head in heads.iter().flatten() {
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
    let refused = heads.iter().flatten().count();
    assert_eq!(
        refused,
        IDLE - MAX,
        "the first {MAX} are served, the rest refused"
    );

    // A new request meets a full listener: refused, not kept waiting.
    let asked = Instant::now();
    let mut late = TcpStream::connect(gk.authz_addr).unwrap();
    late.write_all(b"GET /authz HTTP/1.1\r\nHost: gk\r\nX-Original-URI: /health\r\n\r\n")
        .unwrap();
    let head = answer_within(&mut late, Duration::from_secs(2)).expect("an answer");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );

    // The admin listener answers meanwhile.
    let asked = Instant::now();
    assert_eq!(gk.readyz()["status"], "ready");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let text = gk.metrics();
    assert_eq!(
        metric(&text, "gatekeeper_authz_connections", &[]),
        MAX as f64
    );
    assert!(
        metric(&text, "gatekeeper_authz_connections_refused_total", &[]) >= (IDLE - MAX + 1) as f64
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "checked before the idle ones time out"
    );

    // Closing them frees their places.
    drop(idle);
    assert!(poll_until(Duration::from_secs(5), || {
        gk.try_authz(&health().headers, None)
            .is_ok_and(|r| r.status == 200)
    }));
}

#[test]
fn the_connection_limits_are_logged_at_start() {
    let gk = Gatekeeper::start_with_env(POLICY, &[("GATEKEEPER_BACKLOG", "64")]);
    let logs = gk.logs().join("\n");
    let line = logs
        .lines()
        .find(|l| l.contains("connection limits"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("\"backlog\":64"), "{line}");
    assert!(line.contains("\"max_connections\":"), "{line}");
}

/// The start-up log lines of `serve` run by bash after `limits` (`ulimit`
/// commands), up to "listening"; the process is killed then.
fn startup_under(limits: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatekeeper.toml");
    std::fs::write(&config, POLICY).unwrap();
    let script = format!("{limits} && exec \"$0\" serve --config \"$1\"");
    let mut bash = Command::new("bash");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEKEEPER_") {
            bash.env_remove(name);
        }
    }
    let mut child = bash
        .args(["-c", &script, BIN, config.to_str().unwrap()])
        .env("GATEKEEPER_LISTEN", "127.0.0.1:0")
        .env("GATEKEEPER_ADMIN_LISTEN", "127.0.0.1:0")
        .env("GATEKEEPER_LOG_FORMAT", "json")
        .env("GATEKEEPER_WORKERS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bash");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("\"listening\"");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lines
}

fn line_with<'a>(lines: &'a [String], text: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in:\n{}", lines.join("\n")))
}

#[test]
fn the_bound_is_derived_from_a_low_open_file_limit() {
    // Soft and hard 256, one worker: 64 + 8 + 19 (pools) kept back, 165
    // for /authz, three quarters of it served.
    let lines = startup_under("ulimit -n 256");
    let limits = line_with(&lines, "connection limits");
    assert!(limits.contains("\"open_files\":256"), "{limits}");
    assert!(limits.contains("\"max_connections\":123"), "{limits}");
    assert!(!lines
        .iter()
        .any(|l| l.contains("raised the open-file limit")));
}

#[test]
fn serve_raises_the_soft_open_file_limit_to_the_hard_one() {
    let hard = String::from_utf8(
        Command::new("bash")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let hard = hard.trim();
    if hard == "unlimited" || hard.parse::<u64>().is_ok_and(|h| h <= 256) {
        return; // nothing to raise to here
    }
    let lines = startup_under("ulimit -Sn 256");
    let raised = line_with(&lines, "raised the open-file limit");
    assert!(raised.contains("\"before\":256"), "{raised}");
    assert!(raised.contains(&format!("\"after\":{hard}")), "{raised}");
    let limits = line_with(&lines, "connection limits");
    assert!(
        limits.contains(&format!("\"open_files\":{hard}")),
        "{limits}"
    );
}
