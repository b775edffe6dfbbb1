//! The App runs in process (STYLE §1, §12): `App::run(shutdown)` stops when
//! the future it was handed resolves, within the grace period, and leaves
//! no listener behind; the hang-ups and the clock it was handed are the
//! ones it uses. No signal is sent: the process's own handling of SIGTERM
//! and SIGHUP is proven against the binary (tests/reload.rs, tests/audit.rs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{generate_key, poll_until, spawn_app, spawn_app_with, spawn_app_with_env, Req};
use gatekeeper::clock::Clock;

const PUBLIC: &str = r#"
[[route]]
id = "public"
domain = "*"
path = "/public/*"
service = "test"
[route.methods]
GET = ["public"]
"#;

const ELSEWHERE: &str = r#"
[[route]]
id = "elsewhere"
domain = "*"
path = "/elsewhere/*"
service = "test"
[route.methods]
GET = ["public"]
"#;

/// Opens a connection to `addr`, asks `GET /livez` on it and leaves it
/// open and idle, as a Prometheus scraper's keep-alive connection is.
fn idle_keep_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /livez HTTP/1.1\r\nHost: admin\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.ends_with(b"ok\n") {
        let n = conn.read(&mut buf).expect("the /livez answer");
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
    }
    conn
}

/// A connection to `addr` that asks for `/metrics` over and over
/// (pipelined) and never reads an answer: once the socket buffers fill,
/// the admin listener has a response it cannot finish, which a graceful
/// stop waits for (actix: 30 s unless told otherwise).
fn stuck_scraper(addr: std::net::SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let asks = b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n".repeat(5_000);
    // Stops at a timeout once the server no longer reads: that is the point.
    let _ = conn.write_all(&asks);
    conn
}

#[test]
fn an_in_process_app_stops_when_its_shutdown_future_resolves_within_the_grace() {
    let grace = Duration::from_secs(1);
    let app = spawn_app_with_env(PUBLIC, &[("GATEKEEPER_SHUTDOWN_GRACE", "1s")]);
    assert_eq!(app.send(&Req::get("/public/x")).status, 200);
    // Idle connections on both listeners, and an admin response that
    // cannot be finished: none may hold the stop past the grace.
    let _scraper = idle_keep_alive(app.admin_addr);
    let _nginx = idle_keep_alive_authz(app.authz_addr);
    let _stuck = stuck_scraper(app.admin_addr);
    let started = Instant::now();
    app.stop().expect("a clean stop");
    let took = started.elapsed();
    assert!(
        took < grace + Duration::from_millis(500),
        "the stop took {took:?}, the grace is {grace:?}"
    );
}

/// An idle keep-alive connection to `/authz`, as nginx keeps some.
fn idle_keep_alive_authz(addr: std::net::SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(
        b"GET /authz HTTP/1.1\r\nHost: gatekeeper\r\nX-Original-Method: GET\r\n\
          X-Original-URI: /public/x\r\n\r\n",
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).expect("the /authz answer");
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
    conn
}

#[test]
fn after_the_stop_neither_listener_accepts_a_connection() {
    let app = spawn_app(PUBLIC);
    let (authz, admin) = (app.authz_addr, app.admin_addr);
    assert_eq!(app.admin_get("/livez").status, 200);
    assert!(app.is_alive());
    app.stop().expect("a clean stop");
    for (name, addr) in [("admin", admin), ("authz", authz)] {
        let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        assert!(connected.is_err(), "the {name} listener still accepts");
    }
}

#[test]
fn the_injected_hangup_reloads_the_file_and_nothing_else_does() {
    // The file is not watched within the test: only the hang-up reloads.
    let app = spawn_app_with_env(PUBLIC, &[("GATEKEEPER_RELOAD_INTERVAL", "1h")]);
    app.rewrite_config(ELSEWHERE);
    app.hangup();
    let moved = || app.send(&Req::get("/elsewhere/x")).status == 200;
    assert!(poll_until(Duration::from_secs(5), moved), "not reloaded");
    let r = app.send(&Req::get("/public/x"));
    assert_eq!((r.status, r.reason()), (403, "no_route_match"));
    let ready = app.readyz();
    assert_eq!(ready["reload"]["reloads"], 1, "{ready}");
}

#[test]
fn decisions_reach_the_captured_log() {
    let app = spawn_app(PUBLIC);
    let route = "/public/decisions-reach-the-captured-log";
    assert_eq!(app.send(&Req::get(route)).status, 200);
    let allow =
        |l: &String| l.contains(r#""decision":"allow""#) && l.contains(r#""route":"public""#);
    let logged = || app.logs().iter().any(allow);
    assert!(
        poll_until(Duration::from_secs(5), logged),
        "no decision logged"
    );
}

/// A clock the test sets.
struct SetClock {
    unix: AtomicI64,
    mono: AtomicU64,
}

impl Clock for SetClock {
    fn unix_secs(&self) -> i64 {
        self.unix.load(Ordering::SeqCst)
    }

    fn mono_nanos(&self) -> u64 {
        self.mono.load(Ordering::SeqCst)
    }
}

#[test]
fn a_key_expires_when_the_injected_clock_passes_its_expiry() {
    let key = generate_key();
    let policy = format!(
        "{PUBLIC}\n[[route]]\nid = \"data\"\ndomain = \"*\"\npath = \"/data/*\"\nservice = \"test\"\n\
         [route.methods]\nGET = [\"api_key\"]\n\n[[client]]\nid = \"team\"\nname = \"Team\"\n{}\
         [[grant]]\nclient = \"team\"\nroute = \"data\"\nmethods = [\"GET\"]\n",
        key.toml("active", Some("2030-01-01T00:00:00Z"))
    );
    // 2029-12-31T23:59:59Z, one second before the expiry.
    let before_expiry = 1_893_455_999;
    let clock = Arc::new(SetClock {
        unix: AtomicI64::new(before_expiry),
        mono: AtomicU64::new(1),
    });
    let app = spawn_app_with(&policy, &[], clock.clone());
    let req = Req::get("/data/x").bearer(&key.key);
    assert_eq!(app.send(&req).reason(), "authenticated");
    clock.unix.store(before_expiry + 2, Ordering::SeqCst);
    let r = app.send(&req);
    assert_eq!((r.status, r.reason()), (401, "key_expired"));
}
