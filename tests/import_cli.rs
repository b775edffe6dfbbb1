//! `gatekeeper import api-gatekeeper` through the real binary: a dry run
//! writes nothing; `--apply` imports, and a replica then answers the legacy
//! client's key with the same client and route ids as before.

mod common;
mod pg;

use common::{Gatekeeper, Req};
use pg::TestDb;

const SCHEMA: &str = include_str!("fixtures/api_gatekeeper_schema.sql");
const ROUTE: &str = "3f1c2a7e-8a4b-4c1d-9e2f-0a1b2c3d4e5f";
const CLIENT: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const LEGACY_KEY: &str = "legacy-plaintext-api-key-123";

async fn predecessor() -> TestDb {
    let db = TestDb::empty().await;
    let seed = format!(
        "{SCHEMA}
         INSERT INTO routes (route_id, route_pattern, domain, service_name, methods) VALUES
           ('{ROUTE}', '/api/items/*', 'api.example.com', 'items',
            '{{\"GET\": {{\"auth_required\": true, \"auth_type\": \"api_key\"}}}}');
         INSERT INTO clients (client_id, client_name, api_key) VALUES ('{CLIENT}', 'Legacy app', '{LEGACY_KEY}');
         INSERT INTO client_permissions (client_id, route_id, allowed_methods) VALUES ('{CLIENT}', '{ROUTE}', ARRAY['GET']);"
    );
    db.client()
        .await
        .batch_execute(&seed)
        .await
        .expect("seed the predecessor");
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_apply_keeps_the_ids_the_upstreams_see() {
    let old = predecessor().await;
    let new = TestDb::new().await;
    let env = [("GATEKEEPER_DATABASE_URL", new.url.as_str())];

    let dry = common::run(
        &["import", "api-gatekeeper", "--from", &old.url],
        &env,
        None,
    );
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("1 routes, 1 clients, 1 keys"), "{out}");
    assert!(!out.contains(LEGACY_KEY), "the report never shows a key");
    let count = "SELECT count(*) FROM gk_routes";
    assert_eq!(
        new.client()
            .await
            .query_one(count, &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );

    let applied = common::run(
        &["import", "api-gatekeeper", "--from", &old.url, "--apply"],
        &env,
        None,
    );
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let replica = Gatekeeper::start_postgres(&env);
    let r = replica.send(
        &Req::get("/api/items/42")
            .host("api.example.com")
            .bearer(LEGACY_KEY),
    );
    assert_eq!(r.status, 200, "{}", r.reason());
    assert_eq!(r.header("x-auth-client-id"), Some(CLIENT));
    assert_eq!(r.header("x-auth-route-id"), Some(ROUTE));
    let defect = replica.send(
        &Req::get("/api/itemsXYZ")
            .host("api.example.com")
            .bearer(LEGACY_KEY),
    );
    assert_eq!(
        defect.reason(),
        "no_route_match",
        "the predecessor's prefix defect is not copied"
    );
}
