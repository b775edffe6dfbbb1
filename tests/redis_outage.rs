//! Redis outage, caused for real: gatekeeper reaches Redis through a TCP
//! proxy the test cuts (connections refused) or black-holes (connections
//! hang). Every request still answers within a bound; `local` keeps
//! limiting in process, `deny` refuses what needs Redis with
//! `store_unavailable` and never allows it; either way readiness says so,
//! and recovery needs nobody.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::redis::{server_addr, TestRedis};
use common::{metric, poll_until, Gatekeeper, Key, Req, Response};

/// Far above `GATEKEEPER_REDIS_TIMEOUT` (100 ms), far below a client's
/// patience.
const ANSWER_BOUND: Duration = Duration::from_secs(1);
const RECOVERY: Duration = Duration::from_secs(5);

/// Route `limited` (grant limit 5/1h) and route `open` (no limit), one
/// client and its key.
fn policy(key: &Key) -> String {
    let route = |id: &str| {
        format!(
            "[[route]]\nid = \"{id}\"\ndomain = \"*\"\npath = \"/{id}/*\"\nservice = \"test\"\n[route.methods]\nGET = [\"api_key\"]\n\n"
        )
    };
    let grant = |route: &str, extra: &str| {
        format!(
            "[[grant]]\nclient = \"team\"\nroute = \"{route}\"\nmethods = [\"GET\"]\n{extra}\n\n"
        )
    };
    route("limited")
        + &route("open")
        + "[[client]]\nid = \"team\"\nname = \"Team\"\n\n"
        + &key.toml("active", None)
        + &grant("limited", "limit = \"5/1h\"")
        + &grant("open", "")
}

struct Setup {
    redis: TestRedis,
    proxy: Proxy,
    gk: Gatekeeper,
    key: Key,
}

/// An instance reaching Redis through a proxy, with `failure` mode, once
/// it has used Redis for a limited request.
fn setup(failure: &str) -> Setup {
    let redis = TestRedis::new();
    let proxy = Proxy::start(server_addr());
    let key = common::generate_key();
    let url = redis.url_via(proxy.addr);
    let gk = Gatekeeper::start_with_env(
        &policy(&key),
        &[
            ("GATEKEEPER_REDIS_URL", url.as_str()),
            ("GATEKEEPER_REDIS_PREFIX", redis.prefix.as_str()),
            ("GATEKEEPER_REDIS_TIMEOUT", "100ms"),
            ("GATEKEEPER_REDIS_FAILURE", failure),
        ],
    );
    let s = Setup {
        redis,
        proxy,
        gk,
        key,
    };
    assert!(poll_until(RECOVERY, || redis_status(&s.gk) == "ok"));
    assert_eq!(s.get("limited").status, 200);
    assert_eq!(s.redis.keys("rl:g:*").len(), 1, "the limit lives in Redis");
    s
}

impl Setup {
    /// A GET on route `route`, failing the test when the answer took longer
    /// than the bound.
    #[track_caller]
    fn get(&self, route: &str) -> Response {
        let started = Instant::now();
        let r = self
            .gk
            .send(&Req::get(&format!("/{route}/x")).bearer(&self.key.key));
        let took = started.elapsed();
        assert!(took < ANSWER_BOUND, "/{route} answered in {took:?}");
        r
    }

    #[track_caller]
    fn wait_for_redis(&self, status: &str) {
        let reached = poll_until(RECOVERY, || redis_status(&self.gk) == status);
        assert!(reached, "readyz: {}", self.gk.readyz());
    }

    fn fallbacks(&self) -> f64 {
        metric(&self.gk.metrics(), "gatekeeper_redis_fallbacks_total", &[])
    }
}

fn redis_status(gk: &Gatekeeper) -> String {
    gk.readyz()["redis"].as_str().unwrap_or("").to_owned()
}

// ── local ───────────────────────────────────────────────────────────────────

/// In `local` mode an outage switches to in-process limits — still
/// admitting, still limiting — and the shared limit returns with Redis.
fn local_mode_rides_out(outage: fn(&Proxy)) {
    let s = setup("local");
    outage(&s.proxy);
    // What is written from now on shows who counts. The in-process limiter
    // was charged too for the request Redis admitted in `setup` (so an
    // outage does not start from a full bucket): 4 admitted, then 429.
    s.redis.clear();
    for remaining in (0..4).rev() {
        let r = s.get("limited");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.num("x-ratelimit-remaining"), remaining);
    }
    let limited = s.get("limited");
    assert_eq!(
        (limited.auth_status(), limited.reason()),
        (429, "rate_limited")
    );
    for _ in 0..5 {
        assert_eq!(s.get("open").status, 200);
    }
    s.wait_for_redis("degraded");
    assert!(s.fallbacks() > 0.0);
    assert_eq!(
        s.redis.keys("*"),
        Vec::<String>::new(),
        "Redis was not reached"
    );

    s.proxy.restore();
    s.wait_for_redis("ok");
    // The in-process state is exhausted; Redis, emptied above, is not.
    let shared = poll_until(RECOVERY, || {
        s.get("limited").status == 200 && !s.redis.keys("rl:g:*").is_empty()
    });
    assert!(
        shared,
        "the shared limit is used again: {:?}",
        s.redis.keys("*")
    );
}

#[test]
fn in_local_mode_a_refused_connection_falls_back_to_in_process_limits_and_recovers() {
    local_mode_rides_out(Proxy::cut);
}

#[test]
fn in_local_mode_a_hanging_redis_falls_back_to_in_process_limits_and_recovers() {
    local_mode_rides_out(Proxy::black_hole);
}

// ── deny ────────────────────────────────────────────────────────────────────

/// In `deny` mode what needs Redis is refused with `store_unavailable`,
/// never allowed; what does not need it goes on; recovery is automatic.
fn deny_mode_refuses_limited_routes(outage: fn(&Proxy)) {
    let s = setup("deny");
    outage(&s.proxy);
    for _ in 0..10 {
        let r = s.get("limited");
        assert_eq!(
            (r.status, r.auth_status(), r.reason()),
            (403, 503, "store_unavailable"),
            "{r:?}"
        );
        assert_eq!(
            s.get("open").status,
            200,
            "an unlimited route needs no Redis"
        );
    }
    s.wait_for_redis("degraded");
    assert!(s.fallbacks() > 0.0);
    // The outage is counted by the dependency that failed, and the decision
    // line names it.
    let metrics = s.gk.metrics();
    let outages = |dependency| {
        metric(
            &metrics,
            "gatekeeper_outages_total",
            &[("dependency", dependency)],
        )
    };
    assert!(outages("redis") >= 10.0, "{metrics}");
    assert_eq!(outages("postgres"), 0.0);
    assert!(
        s.gk.logs()
            .iter()
            .any(|l| l.contains("\"dependency\":\"redis\"") && l.contains("store_unavailable")),
        "no decision line names the dependency"
    );

    s.proxy.restore();
    let back = poll_until(RECOVERY, || s.get("limited").status == 200);
    assert!(back, "limited routes admit again once Redis answers");
    s.wait_for_redis("ok");
}

#[test]
fn in_deny_mode_a_refused_connection_refuses_limited_routes_until_redis_returns() {
    deny_mode_refuses_limited_routes(Proxy::cut);
}

#[test]
fn in_deny_mode_a_hanging_redis_refuses_limited_routes_until_redis_returns() {
    deny_mode_refuses_limited_routes(Proxy::black_hole);
}
