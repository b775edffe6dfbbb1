//! `/authz` connections past `GATEKEEPER_MAX_CONNECTIONS` are refused at
//! once (a 503 that closes the connection), not left in the accept queue;
//! the admin listener keeps answering while `/authz` is full; places free
//! up as connections close. On the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{metric, poll_until, Gatekeeper, Req};

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
