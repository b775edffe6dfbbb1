//! Redis Sentinel (issue 19, item 9), against a real local set-up (a
//! master, a replica, three Sentinels; `scripts/redis_topologies.sh`): two
//! Apps share a limit through the master Sentinel names, and keep sharing
//! it through a `SENTINEL FAILOVER` under load — no more admitted than the
//! limit allows, no request past its bound, and afterwards both Apps on
//! the new master. Skipped, with a message, only without redis-server.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::topology::Topology;
use common::{poll_until, spawn_app_with_env, Key, Req, TestApp};

/// The client's limit: 60 a minute, a token a second back.
const LIMIT: usize = 60;
const TIMEOUT: Duration = Duration::from_millis(300);

fn new_key() -> Key {
    let g = gatekeeper::core::apikey::generate().expect("a key");
    Key {
        key: g.key.expose().to_owned(),
        id: g.public_id,
        digest: format!("sha256:{}", hex::encode(g.digest.0)),
    }
}

fn policy(keys: &[(&str, &Key)]) -> String {
    let mut t = "[[route]]\nid = \"chat\"\ndomain = \"*\"\npath = \"/v1/*\"\nservice = \"t\"\n\
                 [route.methods]\nPOST = [\"api_key\"]\n\n"
        .to_owned();
    for (id, key) in keys {
        t += &format!(
            "[[client]]\nid = \"{id}\"\nname = \"{id}\"\nlimit = \"{LIMIT}/1m\"\n\n{}\
             [[grant]]\nclient = \"{id}\"\nroute = \"chat\"\nmethods = [\"POST\"]\n\n",
            key.toml("active", None)
        );
    }
    t
}

fn chat(app: &TestApp, key: &str) -> common::Response {
    app.send(&Req::new("POST", "/v1/chat/completions").bearer(key))
}

#[test]
fn limits_hold_through_a_sentinel_failover_under_load() {
    let Some(sentinel) = Topology::sentinel(16410) else {
        return;
    };
    let (busy, fresh) = (new_key(), new_key());
    let policy = policy(&[("busy", &busy), ("fresh", &fresh)]);
    let url = sentinel.url();
    let timeout = format!("{}ms", TIMEOUT.as_millis());
    let env = [
        ("GATEKEEPER_REDIS_URL", url.as_str()),
        ("GATEKEEPER_REDIS_PREFIX", "gks:"),
        ("GATEKEEPER_REDIS_TIMEOUT", timeout.as_str()),
        ("GATEKEEPER_REDIS_FAILURE", "deny"),
    ];
    let apps = [
        spawn_app_with_env(&policy, &env),
        spawn_app_with_env(&policy, &env),
    ];
    let before = sentinel.master();

    // Load on `busy` from 4 threads through both Apps while the master
    // changes; every answer is an allow, a rate limit or (during the
    // switch) store_unavailable, and none takes longer than its bound.
    let (admitted, unavailable, slowest) =
        (AtomicUsize::new(0), AtomicUsize::new(0), AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let after = std::thread::scope(|s| {
        for thread in 0..4 {
            let (apps, key) = (&apps, &busy.key);
            let (admitted, unavailable, slowest, stop) = (&admitted, &unavailable, &slowest, &stop);
            s.spawn(move || {
                let mut i = thread;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = chat(&apps[i % 2], key);
                    slowest.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                    match (r.status, r.reason()) {
                        (200, _) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        (_, "rate_limited") => {}
                        (_, "store_unavailable") => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected answer {other:?}"),
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        let after = sentinel.failover();
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
        after
    });
    let elapsed = started.elapsed();
    assert_ne!(before, after, "the master moved");
    let (admitted, unavailable) = (admitted.into_inner(), unavailable.into_inner());
    let slowest = Duration::from_millis(slowest.into_inner());
    // The burst, a token a second since the start, one for a race, and one
    // for a charge written to the old master in the moment before the
    // probe saw the switch (Redis replicates asynchronously).
    let allowed = LIMIT + elapsed.as_secs() as usize + 2;
    eprintln!(
        "admitted {admitted} (at most {allowed}) in {elapsed:?}, {unavailable} \
         store_unavailable, slowest {slowest:?}"
    );
    assert!(admitted >= LIMIT - 1, "the limit was reachable: {admitted}");
    assert!(
        admitted <= allowed,
        "{admitted} admitted, at most {allowed}"
    );
    // Each request makes one bounded Redis call (the limiter), plus HTTP.
    assert!(
        slowest < TIMEOUT + Duration::from_millis(700),
        "{slowest:?}"
    );

    // Afterwards both Apps share the new master: a fresh client's limit
    // is admitted exactly once between them, and its keys are there.
    let recovered = poll_until(Duration::from_secs(10), || {
        apps.iter().all(|app| app.readyz()["redis"] == "ok")
    });
    assert!(recovered, "{:?}", apps[0].readyz());
    let mut fresh_admitted = 0;
    for i in 0..LIMIT + 10 {
        let r = chat(&apps[i % 2], &fresh.key);
        match (r.status, r.reason()) {
            (200, _) => fresh_admitted += 1,
            (_, "rate_limited") => {}
            other => panic!("after the failover: {other:?}"),
        }
    }
    assert!(
        (LIMIT..=LIMIT + 1).contains(&fresh_admitted),
        "{fresh_admitted} admitted after the failover"
    );
    let on_new = sentinel.keys(after, "gks:rl:c:fresh");
    let everywhere: Vec<_> = sentinel
        .nodes()
        .into_iter()
        .map(|n| (n, sentinel.cli(n, &["role"]), sentinel.keys(n, "gks:")))
        .collect();
    assert_eq!(on_new.len(), 1, "{after}: {everywhere:?}");
}
