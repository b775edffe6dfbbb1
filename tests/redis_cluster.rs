//! Redis Cluster (issue 19, item 9), against a real local 3-master cluster
//! (`scripts/redis_topologies.sh`): limits shared by two Apps through the
//! cluster with clients' keys on several masters, and through a `CLUSTER
//! FAILOVER` under load (the client follows `MOVED`), HMAC nonces accepted
//! once across Apps, and the credential cache's scripts on one slot.
//! Skipped, with a message, only when redis-server is not installed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hmac::{OPS_POLICY, OPS_SECRET};
use common::topology::Topology;
use common::{spawn_app_with_env, Key, Req, TestApp};
use gatekeeper::config::Config;
use gatekeeper::core::ids::{ClientId, KeyId};
use gatekeeper::core::model::{Digest, KeyRecord, KeyStatus};
use gatekeeper::state::redis::key_cache::{self, Cached, KeyCache};
use gatekeeper::state::redis::Redis;

const CLIENTS: usize = 8;
const LIMIT: usize = 30;

fn new_key() -> Key {
    let g = gatekeeper::core::apikey::generate().expect("a key");
    Key {
        key: g.key.expose().to_owned(),
        id: g.public_id,
        digest: format!("sha256:{}", hex::encode(g.digest.0)),
    }
}

/// `POST /v1/*` with an API key; clients `team-0`… each with one key, its
/// own limit and a grant limit twice as loose.
fn policy(keys: &[Key]) -> String {
    let mut t = "[[route]]\nid = \"chat\"\ndomain = \"*\"\npath = \"/v1/*\"\nservice = \"t\"\n\
                 [route.methods]\nPOST = [\"api_key\"]\n\n"
        .to_owned();
    for (i, key) in keys.iter().enumerate() {
        t += &format!(
            "[[client]]\nid = \"team-{i}\"\nname = \"Team {i}\"\nlimit = \"{LIMIT}/1m\"\n\n{}\
             [[grant]]\nclient = \"team-{i}\"\nroute = \"chat\"\nmethods = [\"POST\"]\n\
             limit = \"{}/1m\"\n\n",
            key.toml("active", None),
            2 * LIMIT
        );
    }
    t
}

fn env<'a>(url: &'a str, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GATEKEEPER_REDIS_URL", url),
        ("GATEKEEPER_REDIS_PREFIX", prefix),
        ("GATEKEEPER_REDIS_TIMEOUT", "1s"),
        ("GATEKEEPER_REDIS_FAILURE", "deny"),
    ]
}

fn chat(app: &TestApp, key: &str) -> common::Response {
    app.send(&Req::new("POST", "/v1/chat/completions").bearer(key))
}

#[test]
fn two_apps_share_every_clients_limit_through_a_cluster() {
    let Some(cluster) = Topology::cluster(16400) else {
        return;
    };
    let keys: Vec<Key> = (0..CLIENTS).map(|_| new_key()).collect();
    let (url, prefix) = (cluster.url(), "gkc:");
    let policy = policy(&keys);
    let apps = [
        spawn_app_with_env(&policy, &env(&url, prefix)),
        spawn_app_with_env(&policy, &env(&url, prefix)),
    ];
    let admitted: Vec<AtomicUsize> = (0..CLIENTS).map(|_| AtomicUsize::new(0)).collect();
    let refused_otherwise = AtomicUsize::new(0);
    // 4 threads, each sending every client's request in turn, to both Apps:
    // the batches of each App mix clients, so they span slots.
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (apps, keys, admitted, other) = (&apps, &keys, &admitted, &refused_otherwise);
            s.spawn(move || {
                for round in 0..(LIMIT + 10) / 2 {
                    for (c, key) in keys.iter().enumerate() {
                        let r = chat(&apps[(thread + round + c) % 2], &key.key);
                        match (r.status, r.reason()) {
                            (200, _) => {
                                admitted[c].fetch_add(1, Ordering::Relaxed);
                            }
                            (_, "rate_limited") => {}
                            _ => {
                                other.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            });
        }
    });
    let admitted: Vec<usize> = admitted.into_iter().map(AtomicUsize::into_inner).collect();
    assert_eq!(refused_otherwise.into_inner(), 0, "no store_unavailable");
    for (c, n) in admitted.iter().enumerate() {
        // One token comes back every 2 s: a slow run may see one more.
        assert!((LIMIT..=LIMIT + 1).contains(n), "team-{c}: {n} admitted");
    }
    let holding: Vec<usize> = cluster
        .nodes()
        .into_iter()
        .map(|node| cluster.keys(node, &format!("{prefix}rl:")).len())
        .collect();
    assert_eq!(holding.iter().sum::<usize>(), 2 * CLIENTS, "{holding:?}");
    assert!(
        holding.iter().filter(|n| **n > 0).count() >= 2,
        "clients' keys spread over the masters: {holding:?}"
    );
    for node in cluster.nodes() {
        for name in cluster.keys(node, &format!("{prefix}rl:")) {
            assert!(name.starts_with("gkc:rl:{team-"), "{name}");
        }
    }
}

#[test]
fn a_signed_request_is_accepted_once_across_apps_through_a_cluster() {
    let Some(cluster) = Topology::cluster(16404) else {
        return;
    };
    let url = cluster.url();
    let mut env = env(&url, "gkn:");
    env.push(("OPS_SECRET", OPS_SECRET));
    let (a, b) = (
        spawn_app_with_env(OPS_POLICY, &env),
        spawn_app_with_env(OPS_POLICY, &env),
    );
    for n in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let nonce = format!("cluster-nonce-{n}");
        let auth = common::hmac::sign(
            dir.path(),
            "GET",
            "/api/tags",
            b"",
            common::hmac::now_after_redis_epoch(),
            &nonce,
        );
        let signed = Req::get("/api/tags").header("Authorization", &auth);
        let (first, second) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let accepted = first.send(&signed);
        assert_eq!(accepted.status, 200, "{accepted:?}");
        let replay = second.send(&signed);
        assert_eq!((replay.status, replay.reason()), (401, "replayed_request"));
    }
}

fn record(digest: Digest) -> KeyRecord {
    KeyRecord {
        id: KeyId::parse("k1").unwrap(),
        client_id: ClientId::parse("team-a").unwrap(),
        digest,
        status: KeyStatus::Active,
        expires_at: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_credential_cache_fills_hits_and_forgets_through_a_cluster() {
    let Some(cluster) = Topology::cluster(16408) else {
        return;
    };
    let url = cluster.url();
    let vars = env(&url, "gkk:")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let config = Config::from_map(&vars).expect("settings");
    let redis = Redis::new(config.redis.as_ref().expect("redis")).expect("a pool");
    assert!(redis.is_cluster());
    let cache = KeyCache::new(Duration::from_secs(60));
    key_cache::flush(&redis).await.expect("flush");
    // Many digests: their records would land on every master if untagged.
    for n in 0..20u8 {
        let digest = Digest::of(&[n]);
        let Ok(Cached::Miss { generation }) = cache.get(&redis, &digest).await else {
            panic!("a miss first");
        };
        cache
            .fill(&redis, &record(digest), &generation)
            .await
            .expect("fill");
        let hit = cache.get(&redis, &digest).await.expect("get");
        assert!(matches!(hit, Cached::Hit(r) if r.digest == digest));
        key_cache::forget(&redis, &digest).await.expect("forget");
        let gone = cache.get(&redis, &digest).await.expect("get");
        assert!(matches!(gone, Cached::Miss { .. }));
        // A fill racing the revocation is refused by the tombstone.
        cache
            .fill(&redis, &record(digest), &generation)
            .await
            .expect("fill");
        let still = cache.get(&redis, &digest).await.expect("get");
        assert!(matches!(still, Cached::Miss { .. }));
    }
    let holding: Vec<usize> = cluster
        .nodes()
        .into_iter()
        .map(|node| cluster.keys(node, "gkk:").len())
        .collect();
    assert_eq!(
        holding.iter().filter(|n| **n > 0).count(),
        1,
        "the cache lives on one slot: {holding:?}"
    );
}

#[test]
fn limits_stay_exact_through_a_cluster_failover_under_load() {
    let Some(cluster) = Topology::cluster_with_replicas(16423) else {
        return;
    };
    let keys: Vec<Key> = (0..CLIENTS).map(|_| new_key()).collect();
    let (url, prefix) = (cluster.url(), "gkf:");
    let policy = policy(&keys);
    let apps = [
        spawn_app_with_env(&policy, &env(&url, prefix)),
        spawn_app_with_env(&policy, &env(&url, prefix)),
    ];
    let admitted: Vec<AtomicUsize> = (0..CLIENTS).map(|_| AtomicUsize::new(0)).collect();
    let (unavailable, slowest) = (AtomicUsize::new(0), AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // The failover comes once every client is at its limit: a slot whose
    // state was lost, or that a client kept asking the old master for,
    // would admit a burst again.
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (apps, keys, admitted) = (&apps, &keys, &admitted);
            let (unavailable, slowest, stop) = (&unavailable, &slowest, &stop);
            s.spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    for (c, key) in keys.iter().enumerate() {
                        let t = Instant::now();
                        let r = chat(&apps[(thread + round + c) % 2], &key.key);
                        slowest.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                        match (r.status, r.reason()) {
                            (200, _) => {
                                admitted[c].fetch_add(1, Ordering::Relaxed);
                            }
                            (_, "rate_limited") => {}
                            (_, "store_unavailable") => {
                                unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            other => panic!("unexpected answer {other:?}"),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let promoted = cluster.failover();
        eprintln!("CLUSTER FAILOVER: {promoted} is a master");
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    let admitted: Vec<usize> = admitted.into_iter().map(AtomicUsize::into_inner).collect();
    let slowest = Duration::from_millis(slowest.into_inner());
    let unavailable = unavailable.into_inner();
    eprintln!("admitted {admitted:?} in {elapsed:?}, {unavailable} store_unavailable, slowest {slowest:?}");
    // The burst, a token every 2 s since the start, and one for a race.
    let allowed = LIMIT + elapsed.as_secs() as usize / 2 + 1;
    for (c, n) in admitted.iter().enumerate() {
        assert!(*n <= allowed, "team-{c}: {n} admitted, at most {allowed}");
    }
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
}
