//! PostgreSQL outage, caused for real: a replica reaches the database
//! through a TCP proxy that the test cuts and restores. Cached credentials
//! keep working, unknown ones are refused with `store_unavailable`, nothing
//! is ever allowed because the store failed, and recovery is automatic.

mod common;
mod pg;

use std::time::Duration;

use common::proxy::Proxy;
use common::{metric, poll_until, Gatekeeper, Req};
use pg::{digest_literal, seeded_chat, TestDb};

const KEY: &str = "outage-test-key-cached";
const NEW_KEY: &str = "outage-test-key-created-during-outage";

const POSTGRES: &str = "127.0.0.1:5432";

/// The test database's URL, pointed through the proxy.
fn through(db: &TestDb, proxy: &Proxy) -> String {
    format!(
        "postgres://postgres@{}/{}?connect_timeout=2",
        proxy.addr, db.name
    )
}

fn chat(gk: &Gatekeeper, key: &str) -> common::Response {
    gk.send(&Req::new("POST", "/v1/chat/completions").bearer(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_cached_keys_refuses_unknown_ones_and_recovers_by_itself() {
    let db = seeded_chat(KEY).await;
    let proxy = Proxy::start(POSTGRES.parse().unwrap());
    let url = through(&db, &proxy);
    let gk = Gatekeeper::start_postgres(&[
        ("GATEKEEPER_DATABASE_URL", url.as_str()),
        ("GATEKEEPER_DB_RELOAD_INTERVAL", "1s"),
    ]);
    assert!(poll_until(Duration::from_secs(5), || gk.readyz()
        ["postgres"]
        == "ok"));
    assert_eq!(chat(&gk, KEY).status, 200);

    proxy.cut();
    let insert = format!(
        "INSERT INTO gk_api_keys (id, client_id, digest) VALUES ('k2', 'c1', {})",
        digest_literal(NEW_KEY)
    );
    db.client().await.batch_execute(&insert).await.unwrap();
    assert!(poll_until(Duration::from_secs(5), || gk.readyz()
        ["postgres"]
        == "degraded"));
    for _ in 0..5 {
        assert_eq!(chat(&gk, KEY).status, 200, "a cached key keeps working");
        let unknown = chat(&gk, NEW_KEY);
        assert_eq!(unknown.status, 403);
        assert_eq!(unknown.reason(), "store_unavailable");
        assert_eq!(unknown.auth_status(), 503);
        assert_eq!(chat(&gk, "never-issued-key").reason(), "store_unavailable");
    }
    let outages = metric(
        &gk.metrics(),
        "gatekeeper_outages_total",
        &[("dependency", "postgres")],
    );
    assert!(
        outages >= 10.0,
        "each refusal counted as a PostgreSQL outage"
    );

    proxy.restore();
    assert!(
        poll_until(Duration::from_secs(10), || chat(&gk, NEW_KEY).status == 200),
        "recovers by itself once the database is back"
    );
    assert!(poll_until(Duration::from_secs(10), || gk.readyz()
        ["postgres"]
        == "ok"));
    assert_eq!(
        chat(&gk, "never-issued-key").reason(),
        "invalid_credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_staleness_bound_even_cached_keys_are_refused_until_the_database_returns() {
    let db = seeded_chat(KEY).await;
    let proxy = Proxy::start(POSTGRES.parse().unwrap());
    let url = through(&db, &proxy);
    let gk = Gatekeeper::start_postgres(&[
        ("GATEKEEPER_DATABASE_URL", url.as_str()),
        ("GATEKEEPER_DB_RELOAD_INTERVAL", "1s"),
        ("GATEKEEPER_MAX_STALENESS", "2s"),
    ]);
    assert_eq!(chat(&gk, KEY).status, 200);
    proxy.cut();
    assert!(poll_until(Duration::from_secs(10), || chat(&gk, KEY)
        .reason()
        == "store_unavailable"));
    let stale = metric(
        &gk.metrics(),
        "gatekeeper_outages_total",
        &[("dependency", "policy_snapshot")],
    );
    assert!(stale >= 1.0, "counted as the snapshot's outage");
    proxy.restore();
    assert!(poll_until(Duration::from_secs(10), || chat(&gk, KEY)
        .status
        == 200));
}
