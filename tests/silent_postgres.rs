//! A silent PostgreSQL — it accepts connections and never answers — caused
//! for real: a replica reaches the database through a TCP proxy that the
//! test black-holes and restores. Nothing waits on it for longer than its
//! bound: an unknown key is refused with `store_unavailable` within
//! `GATEKEEPER_DB_TIMEOUT`, known keys keep working (also once their cache
//! entry is past its TTL), `/readyz` says `degraded`, and SIGTERM ends the
//! process within the grace period.

mod common;
mod pg;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{poll_until, Gatekeeper, Req};
use pg::{seeded_chat, TestDb};

const KEY: &str = "silent-test-key-cached";
const POSTGRES: &str = "127.0.0.1:5432";

/// The look-up bound the tests set, and what a refusal may take on top of
/// it (a loaded CI machine).
const DB_TIMEOUT: Duration = Duration::from_millis(500);
const SLACK: Duration = Duration::from_millis(700);

fn through(db: &TestDb, proxy: &Proxy) -> String {
    format!(
        "postgres://postgres@{}/{}?connect_timeout=2",
        proxy.addr, db.name
    )
}

fn chat(gk: &Gatekeeper, key: &str) -> (common::Response, Duration) {
    let started = Instant::now();
    let response = gk.send(&Req::new("POST", "/v1/chat/completions").bearer(key));
    (response, started.elapsed())
}

fn postgres_state(gk: &Gatekeeper) -> String {
    gk.readyz()["postgres"].as_str().unwrap_or("").to_owned()
}

fn start(db: &TestDb, proxy: &Proxy, extra: &[(&str, &str)]) -> Gatekeeper {
    let url = through(db, proxy);
    let mut env = vec![
        ("GATEKEEPER_DATABASE_URL", url.as_str()),
        ("GATEKEEPER_DB_RELOAD_INTERVAL", "1s"),
        ("GATEKEEPER_DB_TIMEOUT", "500ms"),
        ("GATEKEEPER_CACHE_TTL", "1s"),
    ];
    env.extend_from_slice(extra);
    let gk = Gatekeeper::start_postgres(&env);
    assert!(
        poll_until(Duration::from_secs(5), || postgres_state(&gk) == "ok"),
        "ready before the database goes silent"
    );
    gk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_refuses_unknown_keys_within_the_bound_and_keeps_known_ones() {
    let db = seeded_chat(KEY).await;
    let proxy = Proxy::start(POSTGRES.parse().unwrap());
    let gk = start(&db, &proxy, &[]);
    assert_eq!(chat(&gk, KEY).0.status, 200);

    proxy.black_hole();
    let (unknown, took) = chat(&gk, "never-issued-key");
    assert_eq!(unknown.reason(), "store_unavailable", "{unknown:?}");
    assert_eq!(unknown.auth_status(), 503);
    assert!(took < DB_TIMEOUT + SLACK, "an unknown key waited {took:?}");
    let (known, took) = chat(&gk, KEY);
    assert_eq!(known.status, 200, "a cached key keeps working: {known:?}");
    assert!(took < SLACK, "a cached key waited {took:?}");

    assert!(
        poll_until(Duration::from_secs(5), || postgres_state(&gk) == "degraded"),
        "/readyz notices the silence"
    );
    // The cache entry is past its TTL (1 s) by now: still served, at once,
    // as the database does not answer.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        let (known, took) = chat(&gk, KEY);
        assert_eq!(known.status, 200, "a stale cached key keeps working");
        assert!(
            took < DB_TIMEOUT + SLACK,
            "a stale cached key waited {took:?}"
        );
        let (unknown, took) = chat(&gk, "never-issued-key");
        assert_eq!(unknown.reason(), "store_unavailable");
        assert!(took < DB_TIMEOUT + SLACK, "an unknown key waited {took:?}");
    }
    assert_eq!(postgres_state(&gk), "degraded");

    proxy.restore();
    assert!(
        poll_until(Duration::from_secs(10), || postgres_state(&gk) == "ok"),
        "/readyz recovers once the database answers"
    );
    assert!(poll_until(Duration::from_secs(5), || chat(
        &gk,
        "never-issued-key"
    )
    .0
    .reason()
        == "invalid_credentials"));
    assert_eq!(chat(&gk, KEY).0.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_within_the_grace_while_the_database_is_silent() {
    let db = seeded_chat(KEY).await;
    let proxy = Proxy::start(POSTGRES.parse().unwrap());
    let mut gk = start(
        &db,
        &proxy,
        &[
            ("GATEKEEPER_SHUTDOWN_GRACE", "3s"),
            // A use is recorded and waits to be written when SIGTERM comes.
            ("GATEKEEPER_LAST_USED_INTERVAL", "1h"),
        ],
    );
    assert_eq!(chat(&gk, KEY).0.status, 200);
    proxy.black_hole();
    // A look-up stuck on the database when the stop begins.
    let addr = gk.authz_addr;
    let in_flight = std::thread::spawn(move || {
        let req = Req::new("POST", "/v1/chat/completions").bearer("never-issued-key");
        common::authz_at(addr, &req.headers, req.body.as_deref())
    });
    std::thread::sleep(Duration::from_millis(100));

    let started = Instant::now();
    sigterm(&gk);
    let exited = poll_until(Duration::from_secs(10), || !gk.is_alive());
    let took = started.elapsed();
    assert!(exited, "still running 10 s after SIGTERM");
    // Within the grace (3 s; no audit queue to flush): nothing waits on the
    // database past its bound, so the drain does not take the whole grace.
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM to exit took {took:?}\n{}",
        gk.logs().join("\n")
    );
    let _ = in_flight.join();
}

/// Sends SIGTERM without waiting.
fn sigterm(gk: &Gatekeeper) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gk.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}
