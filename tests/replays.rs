//! No signed request is accepted twice across a loss of the nonces'
//! memory: a restart of a gatekeeper without Redis, Redis restarting
//! without its data or flushed (issue 19, item 4). A store whose memory
//! began at second B refuses timestamps up to B + GATEKEEPER_HMAC_MAX_AHEAD
//! (`stale_signature`); a restart with Redis configured keeps the nonces.
//!
//! Apps run in process with a clock the test moves; Redis is a private
//! `redis-server` on port 19968 or 19969 (started and stopped here), so
//! restarting it touches no other test.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hmac::{OPS_POLICY, OPS_SECRET};
use common::{poll_until, spawn_app_with, Req, TestApp};
use deadpool_redis::redis;
use gatekeeper::clock::Clock;
use gatekeeper::core::signature;

/// Far from the real time, so nothing here depends on it.
const T0: i64 = 1_900_000_000;

/// Wall-clock seconds the test sets; monotonic time is real.
struct ManualClock {
    secs: AtomicI64,
    start: Instant,
}

impl ManualClock {
    fn at(secs: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            secs: AtomicI64::new(secs),
            start: Instant::now(),
        })
    }

    fn set(&self, secs: i64) {
        self.secs.store(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_secs(&self) -> i64 {
        self.secs.load(Ordering::SeqCst)
    }
    fn mono_nanos(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The `Authorization` value of `ops` signing `GET /api/tags`.
fn signed(timestamp: i64, nonce: &str) -> Req {
    let sig = signature::sign(
        OPS_SECRET.as_bytes(),
        "GET",
        "/api/tags",
        timestamp,
        nonce,
        b"",
    );
    let auth = format!(
        r#"HMAC client_id="ops",timestamp="{timestamp}",nonce="{nonce}",signature="{sig}""#
    );
    Req::new("GET", "/api/tags").header("authorization", &auth)
}

fn start(clock: &Arc<ManualClock>, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("OPS_SECRET", OPS_SECRET),
        ("GATEKEEPER_HMAC_MAX_AHEAD", "5s"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(OPS_POLICY, &env, clock.clone())
}

/// (status, reason) of each request.
fn outcomes(gk: &TestApp, reqs: &[Req]) -> Vec<(u16, String)> {
    reqs.iter()
        .map(|r| {
            let got = gk.send(r);
            (got.status, got.reason().to_owned())
        })
        .collect()
}

/// Requests signed at `now`, at the oldest and the newest timestamp the
/// window admits then.
fn across_the_window(now: i64, tag: &str) -> Vec<Req> {
    [now, now - 300, now - 1, now + 5]
        .iter()
        .enumerate()
        .map(|(i, t)| signed(*t, &format!("{tag}-{i}")))
        .collect()
}

fn all_allowed(got: &[(u16, String)]) -> bool {
    got.iter().all(|(status, _)| *status == 200)
}

fn all_refused_as(got: &[(u16, String)], reason: &str) -> bool {
    got.iter().all(|(status, r)| *status == 401 && r == reason)
}

/// Refused as a replay, or as stale (what a refused stale signature sent
/// again is: its nonce was remembered when it was refused).
fn all_refused(got: &[(u16, String)]) -> bool {
    got.iter()
        .all(|(status, r)| *status == 401 && (r == "stale_signature" || r == "replayed_request"))
}

#[test]
fn requests_accepted_before_a_restart_without_redis_are_refused_after_it() {
    let clock = ManualClock::at(T0 - 1_000);
    let first = start(&clock, &[]);
    clock.set(T0 + 10);
    let sent = across_the_window(T0 + 10, "before");
    let got = outcomes(&first, &sent);
    assert!(all_allowed(&got), "{got:?}");
    first.stop().unwrap();

    // The same second: everything the first process could have accepted
    // is refused, replays and fresh signatures alike.
    let second = start(&clock, &[]);
    let got = outcomes(&second, &sent);
    assert!(all_refused_as(&got, "stale_signature"), "{got:?}");
    let fresh = outcomes(&second, &across_the_window(T0 + 10, "during"));
    assert!(all_refused_as(&fresh, "stale_signature"), "{fresh:?}");

    // A second later a client at most 5 s ahead gets through; six seconds
    // later every client does, and the replays are still refused.
    clock.set(T0 + 11);
    let ahead = outcomes(&second, &[signed(T0 + 16, "ahead")]);
    assert!(all_allowed(&ahead), "{ahead:?}");
    clock.set(T0 + 16);
    let got = outcomes(&second, &sent);
    assert!(all_refused(&got), "{got:?}");
    let fresh = outcomes(&second, &[signed(T0 + 16, "after")]);
    assert!(all_allowed(&fresh), "{fresh:?}");
    let again = outcomes(&second, &[signed(T0 + 16, "after")]);
    assert!(all_refused_as(&again, "replayed_request"), "{again:?}");
}

#[test]
fn a_timestamp_further_ahead_than_allowed_is_stale() {
    let clock = ManualClock::at(T0 - 100);
    let gk = start(&clock, &[]);
    clock.set(T0);
    let got = outcomes(&gk, &[signed(T0 + 5, "ok"), signed(T0 + 6, "too-far")]);
    assert_eq!(got[0].0, 200, "{got:?}");
    assert_eq!(got[1], (401, "stale_signature".to_owned()));
}

// ── Redis ───────────────────────────────────────────────────────────────────

/// A private `redis-server` without persistence, stopped on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let up = poll_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "redis-server on {port} did not start");
        PrivateRedis {
            port,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    /// Stops the server without saving and starts a new one: its data is
    /// gone.
    fn restart(mut self) -> PrivateRedis {
        self.stop();
        PrivateRedis::start(self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.cmd(&["SHUTDOWN", "NOSAVE"]);
            let exited = poll_until(Duration::from_secs(5), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_shared(clock: &Arc<ManualClock>, server: &PrivateRedis, failure: &str) -> TestApp {
    let url = server.url();
    start(
        clock,
        &[
            ("GATEKEEPER_REDIS_URL", &url),
            ("GATEKEEPER_REDIS_PREFIX", "gkreplay:"),
            ("GATEKEEPER_REDIS_TIMEOUT", "1s"),
            ("GATEKEEPER_REDIS_FAILURE", failure),
        ],
    )
}

/// Waits until the app answers from Redis again: its first call after a
/// Redis restart fails on the old connection (`store_unavailable`, in
/// `deny` mode) until the probe sees Redis back. Each try is a fresh
/// signature, so whatever it answers, it replays nothing.
fn redis_answers(gk: &TestApp, clock: &ManualClock) -> bool {
    let mut n = 0;
    poll_until(Duration::from_secs(10), || {
        n += 1;
        let now = clock.unix_secs();
        let probe = signed(now, &format!("settle-{n}-{}", rand_tag()));
        gk.readyz()["redis"] == "ok" && gk.send(&probe).reason() != "store_unavailable"
    })
}

fn rand_tag() -> String {
    let mut bytes = [0u8; 6];
    getrandom::getrandom(&mut bytes).expect("random bytes");
    hex::encode(bytes)
}

/// One test, for one private server: a gatekeeper restart with Redis keeps
/// the nonces (replays refused, fresh requests allowed at once); Redis
/// forgetting its scripts (a restart), restarting without its data, and
/// FLUSHALL begin a new memory (replays refused as stale until the window
/// moves past it).
#[test]
fn requests_accepted_before_redis_lost_its_data_are_refused_after_it() {
    let server = PrivateRedis::start(19969);
    let clock = ManualClock::at(T0 - 1_000);
    // An answer from Redis or none: no in-process stand-in here.
    let first = start_shared(&clock, &server, "deny");
    assert!(redis_answers(&first, &clock));
    clock.set(T0 + 10);
    let sent = across_the_window(T0 + 10, "shared");
    let got = outcomes(&first, &sent);
    assert!(all_allowed(&got), "{got:?}");
    first.stop().unwrap();

    // gatekeeper restarts; Redis remembers.
    let second = start_shared(&clock, &server, "deny");
    assert!(redis_answers(&second, &clock));
    let got = outcomes(&second, &sent);
    assert!(all_refused_as(&got, "replayed_request"), "{got:?}");
    let fresh = outcomes(&second, &[signed(T0 + 10, "after-gk-restart")]);
    assert!(all_allowed(&fresh), "{fresh:?}");

    // As after a restart that reloaded a snapshot older than the last
    // nonces (RDB), or a failover to a replica that lagged: the nonces are
    // gone, the epoch marker is not, the scripts are.
    let nonces = server.cmd(&["KEYS", "gkreplay:nonce:*"]).expect("KEYS");
    let redis::Value::Array(nonces) = nonces else {
        panic!("KEYS: {nonces:?}")
    };
    for key in nonces {
        let redis::Value::BulkString(key) = key else {
            panic!("a key: {key:?}")
        };
        server
            .cmd(&["DEL", &String::from_utf8(key).unwrap()])
            .expect("DEL");
    }
    server.cmd(&["SCRIPT", "FLUSH"]).expect("SCRIPT FLUSH");
    let got = outcomes(&second, &sent);
    assert!(all_refused_as(&got, "stale_signature"), "{got:?}");

    // Redis restarts without its data.
    let server = server.restart();
    assert!(redis_answers(&second, &clock));
    let mut sent = sent;
    sent.push(signed(T0 + 10, "after-gk-restart"));
    let got = outcomes(&second, &sent);
    assert!(all_refused_as(&got, "stale_signature"), "{got:?}");
    // The memory began at T0 + 11 (a second for replicas' clocks): a
    // client 5 s ahead gets through from T0 + 12, every client from T0 + 17.
    clock.set(T0 + 12);
    let ahead = outcomes(&second, &[signed(T0 + 17, "ahead")]);
    assert!(all_allowed(&ahead), "{ahead:?}");
    clock.set(T0 + 17);
    let got = outcomes(&second, &sent);
    assert!(all_refused(&got), "{got:?}");
    let now_signed = signed(T0 + 17, "after-redis-restart");
    assert_eq!(second.send(&now_signed).status, 200);

    // FLUSHALL, a minute later.
    clock.set(T0 + 70);
    let before_flush = signed(T0 + 70, "before-flush");
    assert_eq!(second.send(&before_flush).status, 200);
    server.cmd(&["FLUSHALL"]).expect("FLUSHALL");
    let got = outcomes(&second, &[now_signed, before_flush]);
    assert!(all_refused_as(&got, "stale_signature"), "{got:?}");
    clock.set(T0 + 77);
    assert!(all_allowed(&outcomes(
        &second,
        &[signed(T0 + 77, "after-flush")]
    )));
    second.stop().unwrap();
    drop(server);
}

/// `local` mode: while Redis is down the in-process stand-in refuses what
/// Redis accepted (its memory begins at Redis's last answer), and when
/// Redis is back without its data it refuses what the stand-in accepted.
#[test]
fn the_local_stand_in_and_a_returning_redis_refuse_each_others_requests() {
    let mut server = PrivateRedis::start(19968);
    let clock = ManualClock::at(T0 - 1_000);
    let gk = start_shared(&clock, &server, "local");
    assert!(redis_answers(&gk, &clock));
    clock.set(T0 + 10);
    let via_redis = across_the_window(T0 + 10, "via-redis");
    assert!(all_allowed(&outcomes(&gk, &via_redis)));

    server.stop();
    let got = outcomes(&gk, &via_redis);
    assert!(all_refused_as(&got, "stale_signature"), "{got:?}");
    // Marked down once failures have gone on for 250 ms, not at the first.
    let down = poll_until(Duration::from_secs(5), || {
        gk.readyz()["redis"] == "degraded"
    });
    assert!(down, "readyz: {}", gk.readyz());
    clock.set(T0 + 16);
    let via_local = signed(T0 + 16, "via-local");
    assert_eq!(gk.send(&via_local).status, 200);

    let server = PrivateRedis::start(19968);
    assert!(redis_answers(&gk, &clock));
    let mut sent = via_redis;
    sent.push(via_local);
    let got = outcomes(&gk, &sent);
    assert!(all_refused(&got), "{got:?}");
    assert_eq!(got[4].1, "stale_signature", "what the stand-in accepted");
    clock.set(T0 + 23);
    assert_eq!(gk.send(&signed(T0 + 23, "back")).status, 200);
    gk.stop().unwrap();
    drop(server);
}
