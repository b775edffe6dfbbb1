//! Limits through Redis trouble (issue 19, item 5), with in-process Apps
//! reaching the shared Redis through a proxy the test breaks:
//!
//! - a slow answer is not an outage: one call that misses the timeout
//!   leaves Redis up (readiness never says otherwise); failures that go on
//!   mark it down, and its answer brings it back;
//! - in `local` mode each replica enforces its share of the limit (the
//!   limit divided by the replicas that announced themselves before the
//!   outage), so the fleet admits about the limit, not N times it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::app::{spawn_app_with_env, TestApp};
use common::proxy::Proxy;
use common::redis::{server_addr, TestRedis};
use common::{poll_until, Key, Req, Response};
use deadpool_redis::redis;

const RECOVERY: Duration = Duration::from_secs(5);

/// Route `limited` with the grant limit `limit`, one client and its key.
fn policy(key: &Key, limit: &str) -> String {
    format!(
        "[[route]]\nid = \"limited\"\ndomain = \"*\"\npath = \"/limited/*\"\nservice = \"test\"\n\
         [route.methods]\nGET = [\"api_key\"]\n\n\
         [[client]]\nid = \"team\"\nname = \"Team\"\n\n{}\n\
         [[grant]]\nclient = \"team\"\nroute = \"limited\"\nmethods = [\"GET\"]\nlimit = \"{limit}\"\n",
        key.toml("active", None)
    )
}

/// `replicas` Apps sharing one Redis prefix through one proxy, in `local`
/// mode with a 100 ms timeout.
struct Fleet {
    redis: TestRedis,
    proxy: Proxy,
    apps: Vec<TestApp>,
    key: Key,
}

impl Fleet {
    fn start(replicas: usize, limit: &str) -> Fleet {
        let redis = TestRedis::new();
        let proxy = Proxy::start(server_addr());
        let key = common::generate_key();
        let url = redis.url_via(proxy.addr);
        let env = [
            ("GATEKEEPER_REDIS_URL", url.as_str()),
            ("GATEKEEPER_REDIS_PREFIX", redis.prefix.as_str()),
            ("GATEKEEPER_REDIS_TIMEOUT", "100ms"),
            ("GATEKEEPER_REDIS_FAILURE", "local"),
        ];
        let apps = (0..replicas)
            .map(|_| spawn_app_with_env(&policy(&key, limit), &env))
            .collect();
        let fleet = Fleet {
            redis,
            proxy,
            apps,
            key,
        };
        for app in &fleet.apps {
            assert!(poll_until(RECOVERY, || redis_status(app) == "ok"));
        }
        fleet
    }

    fn get(&self, replica: usize) -> Response {
        self.apps[replica].send(&Req::get("/limited/x").bearer(&self.key.key))
    }

    /// Waits until every replica has announced itself and learnt the count.
    fn wait_for_announcements(&self) {
        let key = format!("{}replicas", self.redis.prefix);
        let mut conn = self.redis.connect();
        let all = poll_until(RECOVERY, || {
            let n: usize = redis::cmd("ZCARD").arg(&key).query(&mut conn).unwrap_or(0);
            n == self.apps.len()
        });
        assert!(all, "every replica announces itself");
        // Each learns the count at its next announcement (every second).
        std::thread::sleep(Duration::from_millis(1_300));
    }
}

fn redis_status(app: &TestApp) -> String {
    app.readyz()["redis"].as_str().unwrap_or("").to_owned()
}

/// Samples one App's readiness until stopped; `true` if it ever said Redis
/// was not `ok`.
fn watch_readiness(app: &TestApp) -> (Arc<AtomicBool>, impl FnOnce() -> bool) {
    let admin = app.admin_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let sampler = std::thread::spawn(move || {
        let mut degraded = false;
        while !stopped.load(Ordering::Relaxed) {
            let r = common::http(admin, "GET", "/readyz", &[], None).expect("readyz");
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            degraded |= v["redis"] != "ok";
            std::thread::sleep(Duration::from_millis(5));
        }
        degraded
    });
    (stop, move || sampler.join().expect("sampler"))
}

#[test]
fn one_slow_answer_does_not_mark_redis_down() {
    let f = Fleet::start(1, "1000/1h");
    assert_eq!(f.get(0).status, 200);
    let (stop, degraded) = watch_readiness(&f.apps[0]);
    f.proxy.black_hole();
    let started = Instant::now();
    let r = f.get(0);
    let took = started.elapsed();
    f.proxy.restore();
    assert_eq!(r.status, 200, "answered by the local share: {r:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    assert!(!degraded(), "one missed answer marked Redis down");
    assert_eq!(f.get(0).status, 200);
}

#[test]
fn a_run_of_failures_marks_redis_down_and_its_answer_brings_it_back() {
    let f = Fleet::start(1, "1000/1h");
    f.proxy.black_hole();
    let started = Instant::now();
    let down = poll_until(RECOVERY, || {
        assert_eq!(f.get(0).status, 200);
        redis_status(&f.apps[0]) == "degraded"
    });
    assert!(down, "failures that go on mark Redis down");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the pattern is confirmed: {:?}",
        started.elapsed()
    );
    f.proxy.restore();
    assert!(poll_until(RECOVERY, || redis_status(&f.apps[0]) == "ok"));
}

#[test]
fn two_replicas_in_a_redis_outage_admit_about_the_limit_together() {
    // 20/4s: a burst of 20, then 5 a second for the fleet; each replica's
    // share is 10/4s.
    let f = Fleet::start(2, "20/4s");
    f.wait_for_announcements();
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..30 {
        admitted += usize::from(f.get(i % 2).status == 200);
    }
    assert!((20..=21).contains(&admitted), "shared: {admitted}");

    f.proxy.cut();
    // Requests made while the outage is being confirmed count too.
    for (n, app) in f.apps.iter().enumerate() {
        assert!(poll_until(RECOVERY, || {
            admitted += usize::from(f.get(n).status == 200);
            redis_status(app) == "degraded"
        }));
    }
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        admitted += usize::from(f.get(i % 2).status == 200);
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // What the limit allows the fleet over the run: the burst and the rate.
    let allowed = 20.0 + 5.0 * elapsed;
    eprintln!("two replicas, Redis cut: admitted {admitted}, allowed {allowed:.1}");
    assert!(
        (admitted as f64) <= allowed * 1.1 + 2.0,
        "admitted {admitted} against {allowed:.1} allowed over {elapsed:.1} s"
    );
    f.proxy.restore();
}
