//! PostgreSQL mode, end to end: replicas serve the policy in the database
//! and see every change within a second, through LISTEN/NOTIFY, also after
//! their listener connection was killed.

mod common;
mod pg;

use std::time::{Duration, Instant};

use common::{poll_until, Gatekeeper, Req};
use pg::{digest_literal, seeded_chat, TestDb};

const KEY: &str = "replica-test-key-0001";
const NEW_KEY: &str = "replica-test-key-0002";

fn replica(db: &TestDb) -> Gatekeeper {
    Gatekeeper::start_postgres(&[("GATEKEEPER_DATABASE_URL", db.url.as_str())])
}

fn chat(gk: &Gatekeeper, key: &str) -> common::Response {
    gk.send(&Req::new("POST", "/v1/chat/completions").bearer(key))
}

fn refused_by_both_within(
    a: &Gatekeeper,
    b: &Gatekeeper,
    key: &str,
    reason: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let both = poll_until(limit, || {
        chat(a, key).reason() == reason && chat(b, key).reason() == reason
    });
    assert!(
        both,
        "not refused with {reason} by both replicas within {limit:?}"
    );
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_by_every_replica_within_a_second() {
    let db = seeded_chat(KEY).await;
    let (a, b) = (replica(&db), replica(&db));
    assert_eq!(chat(&a, KEY).status, 200);
    assert_eq!(chat(&b, KEY).status, 200);
    let c = db.client().await;
    c.batch_execute("UPDATE gk_api_keys SET status = 'revoked' WHERE id = 'k1'")
        .await
        .unwrap();
    refused_by_both_within(&a, &b, KEY, "key_revoked", Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_grant_and_route_deletion_reach_every_replica_within_a_second() {
    let db = seeded_chat(KEY).await;
    let (a, b) = (replica(&db), replica(&db));
    let c = db.client().await;
    let steps = [
        (
            "UPDATE gk_clients SET status = 'suspended' WHERE id = 'c1'",
            "client_suspended",
        ),
        (
            "UPDATE gk_clients SET status = 'active' WHERE id = 'c1'; DELETE FROM gk_grants",
            "no_permission",
        ),
        ("DELETE FROM gk_routes WHERE id = 'chat'", "no_route_match"),
    ];
    for (sql, reason) in steps {
        c.batch_execute(sql).await.unwrap();
        refused_by_both_within(&a, &b, KEY, reason, Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_still_propagates_after_the_listener_connection_is_killed() {
    let db = seeded_chat(KEY).await;
    let (a, b) = (replica(&db), replica(&db));
    assert_eq!(chat(&a, KEY).status, 200);
    let c = db.client().await;
    let listeners = "FROM pg_stat_activity WHERE datname = current_database()
                       AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()";
    let count_sql = format!("SELECT count(*) {listeners}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.query_one(&count_sql, &[]).await.unwrap().get::<_, i64>(0) < 2 {
        assert!(Instant::now() < deadline, "both replicas listen within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = c
        .query(
            &format!("SELECT pg_terminate_backend(pid) {listeners}"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "one listener per replica");
    c.batch_execute("UPDATE gk_api_keys SET status = 'revoked' WHERE id = 'k1'")
        .await
        .unwrap();
    // Reconnection backs off from 100 ms; the reload after reconnecting
    // catches the change made while nobody listened.
    refused_by_both_within(&a, &b, KEY, "key_revoked", Duration::from_secs(5));
    let ok = poll_until(Duration::from_secs(5), || a.readyz()["postgres"] == "ok");
    assert!(ok, "readyz reports the listener back: {}", a.readyz());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_after_start_is_accepted_at_once() {
    let db = seeded_chat(KEY).await;
    let a = replica(&db);
    assert_eq!(chat(&a, NEW_KEY).reason(), "invalid_credentials");
    let c = db.client().await;
    let sql = format!(
        "INSERT INTO gk_api_keys (id, client_id, digest) VALUES ('k2', 'c1', {})",
        digest_literal(NEW_KEY)
    );
    c.batch_execute(&sql).await.unwrap();
    let r = chat(&a, NEW_KEY);
    assert_eq!(r.status, 200, "{:?}", r.reason());
    assert_eq!(r.header("x-auth-key-id"), Some("k2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_database_whose_schema_is_behind_and_names_the_fix() {
    let db = TestDb::empty().await;
    let out = common::run(
        &["serve"],
        &[("GATEKEEPER_DATABASE_URL", db.url.as_str())],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gatekeeper migrate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_use_is_written_to_last_used_at_in_batches() {
    let db = seeded_chat(KEY).await;
    let a = Gatekeeper::start_postgres(&[
        ("GATEKEEPER_DATABASE_URL", db.url.as_str()),
        ("GATEKEEPER_LAST_USED_INTERVAL", "200ms"),
    ]);
    let c = db.client().await;
    let sql = "SELECT last_used_at IS NOT NULL FROM gk_api_keys WHERE id = 'k1'";
    assert!(!c.query_one(sql, &[]).await.unwrap().get::<_, bool>(0));
    for _ in 0..3 {
        assert_eq!(chat(&a, KEY).status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
        assert!(Instant::now() < deadline, "last_used_at written within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `systemctl reload` sends SIGHUP: in PostgreSQL mode it reloads the
/// policy from the database (the signal's default action would end the
/// process, and a unit with `Restart=on-failure` would not bring it back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_in_postgres_mode_reloads_instead_of_stopping() {
    let db = seeded_chat(KEY).await;
    let mut gk = replica(&db);
    assert_eq!(chat(&gk, KEY).status, 200);
    let logged = |gk: &Gatekeeper, text: &str| gk.logs().iter().any(|l| l.contains(text));
    // The listener's first reload comes asynchronously after start: wait
    // for it, so that the reload counted below can only be SIGHUP's.
    assert!(
        poll_until(Duration::from_secs(5), || logged(
            &gk,
            "\"trigger\":\"listener_connected\""
        )),
        "{:#?}",
        gk.logs()
    );
    let reloads = |gk: &Gatekeeper| gk.readyz()["reload"]["reloads"].as_u64().unwrap();
    let before = reloads(&gk);
    gk.sighup();
    assert!(
        poll_until(Duration::from_secs(5), || logged(
            &gk,
            "\"trigger\":\"sighup\""
        )),
        "{:#?}",
        gk.logs()
    );
    assert!(reloads(&gk) > before);
    assert!(gk.is_alive(), "SIGHUP stopped the process");
    assert_eq!(chat(&gk, KEY).status, 200);
}
