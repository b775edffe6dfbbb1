//! The second-level credential cache of PostgreSQL mode (DESIGN §6), with
//! real replicas, PostgreSQL and Redis: a record's TTL slides on every use,
//! and a revocation removes it from Redis and from every replica at once.

mod common;
mod pg;

use std::time::{Duration, Instant};

use common::redis::TestRedis;
use common::{metric, poll_until, Gatekeeper, Req, Response};
use gatekeeper::core::model::Digest;
use pg::{seeded_chat, TestDb};

/// A PostgreSQL-mode replica of `db` with `redis` as its L2.
fn replica(db: &TestDb, redis: &TestRedis, extra: &[(&str, &str)]) -> Gatekeeper {
    let owned = redis.env();
    let mut env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("GATEKEEPER_DATABASE_URL", db.url.as_str()));
    env.extend_from_slice(extra);
    Gatekeeper::start_postgres(&env)
}

fn chat(gk: &Gatekeeper, key: &str) -> Response {
    gk.send(&Req::new("POST", "/v1/chat/completions").bearer(key))
}

fn counter(gk: &Gatekeeper, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&gk.metrics(), name, labels)
}

const KEY: &str = "redis-l2-test-key-0001";

fn key_hex(key: &str) -> String {
    hex::encode(Digest::of(key.as_bytes()).0)
}

fn generation(redis: &TestRedis) -> u64 {
    redis
        .get("keys:generation")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// Waits until `n` replicas flushed L2 (each does once its PostgreSQL
/// listener is connected, and only then reads L2).
#[track_caller]
fn wait_for_flushes(redis: &TestRedis, n: u64) {
    let flushed = poll_until(Duration::from_secs(10), || generation(redis) >= n);
    assert!(flushed, "generation {} after 10 s", generation(redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_record_slides_its_ttl_on_every_use() {
    let db = seeded_chat(KEY).await;
    let redis = TestRedis::new();
    let gk = replica(
        &db,
        &redis,
        &[
            ("GATEKEEPER_REDIS_CACHE_TTL", "10s"),
            ("GATEKEEPER_CACHE_TTL", "1s"),
        ],
    );
    wait_for_flushes(&redis, 1);
    assert_eq!(chat(&gk, KEY).status, 200);
    let record = format!("key:{}:{}", generation(&redis), key_hex(KEY));
    assert!(
        poll_until(Duration::from_secs(1), || redis.exists(&record)),
        "the first use fills L2: {:?}",
        redis.keys("*")
    );
    let stored = redis.get(&record).unwrap();
    assert!(!stored.contains(KEY), "the record never holds the key");
    assert!((9..=10).contains(&redis.ttl(&record)));

    tokio::time::sleep(Duration::from_secs(3)).await;
    let aged = redis.ttl(&record);
    assert!((1..=8).contains(&aged), "{aged}");
    let hits = || counter(&gk, "gatekeeper_cache_hits_total", &[("layer", "l2")]);
    let before = hits();
    assert_eq!(chat(&gk, KEY).status, 200, "L1 expired: read from L2");
    let slid = redis.ttl(&record);
    assert!(slid >= 9, "a hit resets the TTL: {aged} -> {slid}");
    assert!(hits() > before, "counted as an L2 hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_leaves_redis_within_a_second_and_every_replica_refuses_it() {
    let db = seeded_chat(KEY).await;
    let redis = TestRedis::new();
    let (a, b) = (replica(&db, &redis, &[]), replica(&db, &redis, &[]));
    wait_for_flushes(&redis, 2);
    assert_eq!(chat(&a, KEY).status, 200);
    assert_eq!(chat(&b, KEY).status, 200);
    let records = format!("key:*:{}", key_hex(KEY));
    assert_eq!(redis.keys(&records).len(), 1, "{:?}", redis.keys("*"));

    // The CLI knows nothing of Redis: the replicas hear of it by NOTIFY.
    let db_env = [("GATEKEEPER_DATABASE_URL", db.url.as_str())];
    let out = common::run(&["key", "revoke", "k1"], &db_env, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let tombstone = format!("gone:{}", key_hex(KEY));
    let forgotten = poll_until(Duration::from_secs(1), || {
        redis.keys(&records).is_empty() && redis.exists(&tombstone)
    });
    assert!(forgotten, "L2 after 1 s: {:?}", redis.keys("*"));
    let left = Duration::from_secs(1).saturating_sub(revoked_at.elapsed());
    let refused = poll_until(left, || {
        chat(&a, KEY).reason() == "key_revoked" && chat(&b, KEY).reason() == "key_revoked"
    });
    assert!(refused, "both replicas refuse the key within 1 s");
    assert!(redis.keys(&records).is_empty(), "no fill brings it back");
}
