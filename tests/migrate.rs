//! `gatekeeper migrate` and the schema it builds, on the real PostgreSQL:
//! applied once and recorded, safe to run twice or twice at once, refusing
//! an edited or unknown migration, and the change notifications replicas
//! rely on.

mod pg;

use std::time::Duration;

use gatekeeper::db::migrate::{self, MigrateError, MIGRATIONS};
use pg::TestDb;
use sha2::Digest as _;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Notification};

const NOTIFY_DEADLINE: Duration = Duration::from_secs(5);

const POLICY_TABLES: &[&str] = &[
    "gk_routes",
    "gk_route_methods",
    "gk_clients",
    "gk_api_keys",
    "gk_client_secrets",
    "gk_grants",
    "gk_limits",
];

fn all_versions() -> Vec<u32> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// Every row of the migrations table, as text, in version order.
async fn recorded(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT format('%s %s %s %s', version, name, encode(checksum, 'hex'), applied_at)
               FROM gk_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn migrating_an_empty_database_applies_every_migration_and_records_it() {
    let db = TestDb::empty().await;
    let mut client = db.client().await;

    assert_eq!(migrate::migrate(&mut client).await.unwrap(), all_versions());

    let rows = client
        .query(
            "SELECT version, name, checksum FROM gk_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), MIGRATIONS.len());
    for (row, m) in rows.iter().zip(MIGRATIONS) {
        assert_eq!(row.get::<_, i32>(0), m.version as i32);
        assert_eq!(row.get::<_, &str>(1), m.name);
        assert_eq!(row.get::<_, Vec<u8>>(2), m.checksum());
    }
}

#[tokio::test]
async fn migrating_again_applies_nothing_and_leaves_the_record_unchanged() {
    let db = TestDb::empty().await;
    assert_eq!(migrate::run(&db.url).await.unwrap(), all_versions());
    let before = recorded(&db.client().await).await;

    assert_eq!(migrate::run(&db.url).await.unwrap(), Vec::<u32>::new());

    assert_eq!(recorded(&db.client().await).await, before);
}

#[tokio::test]
async fn two_concurrent_migrations_both_succeed_and_apply_each_version_once() {
    let db = TestDb::empty().await;

    let (first, second) = tokio::join!(migrate::run(&db.url), migrate::run(&db.url));

    let mut applied = first.unwrap();
    applied.extend(second.unwrap());
    applied.sort_unstable();
    assert_eq!(applied, all_versions());
    assert_eq!(recorded(&db.client().await).await.len(), MIGRATIONS.len());
}

#[tokio::test]
async fn an_edited_migration_is_refused_naming_its_version() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .execute(
            "UPDATE gk_schema_migrations SET checksum = sha256('edited') WHERE version = 1",
            &[],
        )
        .await
        .unwrap();

    let err = migrate::migrate(&mut client).await.unwrap_err();

    assert!(
        matches!(err, MigrateError::Modified { version: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("migration 1 (policy)"), "{err}");
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_gatekeeper_is_refused() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .execute(
            "INSERT INTO gk_schema_migrations (version, name, checksum)
             VALUES (9999, 'from_the_future', sha256('x'))",
            &[],
        )
        .await
        .unwrap();

    let err = migrate::migrate(&mut client).await.unwrap_err();

    assert!(matches!(err, MigrateError::Unknown { .. }), "{err:?}");
    assert!(err.to_string().contains("9999"), "{err}");
    let status = migrate::status(&client).await.unwrap();
    assert_eq!(status.unknown, vec![9999]);
    assert!(!status.is_current());
}

#[tokio::test]
async fn an_empty_database_has_everything_pending_and_serve_is_told_to_migrate() {
    let db = TestDb::empty().await;

    let status = migrate::status(&db.client().await).await.unwrap();
    assert_eq!(status.applied, Vec::<u32>::new());
    assert_eq!(status.pending, all_versions());
    assert!(!status.is_current());

    let err = migrate::ensure_current(&db.url).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the database schema is behind: run `gatekeeper migrate`"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_migrated_database_is_current_and_serve_may_start() {
    let db = TestDb::new().await;

    let status = migrate::status(&db.client().await).await.unwrap();

    assert_eq!(status.applied, all_versions());
    assert!(status.is_current(), "{status:?}");
    migrate::ensure_current(&db.url).await.unwrap();
}

#[tokio::test]
async fn a_fresh_test_database_has_every_table_of_the_policy_schema() {
    let db = TestDb::new().await;
    let client = db.client().await;

    for table in POLICY_TABLES {
        let exists: bool = client
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[table])
            .await
            .unwrap()
            .get(0);
        assert!(exists, "{table} is missing");
    }
}

#[tokio::test]
async fn every_statement_of_migrate_prepares_against_a_migrated_database() {
    let db = TestDb::new().await;
    db.assert_statements_prepare(migrate::STATEMENTS).await;
}

/// The next change announced, as JSON, within the deadline.
async fn next_change(rx: &mut mpsc::UnboundedReceiver<Notification>) -> serde_json::Value {
    let n = tokio::time::timeout(NOTIFY_DEADLINE, rx.recv())
        .await
        .expect("no notification within the deadline")
        .expect("the listening connection ended");
    assert_eq!(n.channel(), "gatekeeper");
    serde_json::from_str(n.payload()).unwrap()
}

#[tokio::test]
async fn adding_a_client_is_announced_on_the_gatekeeper_channel() {
    let db = TestDb::new().await;
    let (_listener, mut changes) = db.listen().await;

    db.client()
        .await
        .execute(
            "INSERT INTO gk_clients (id, name) VALUES ('acme', 'Acme')",
            &[],
        )
        .await
        .unwrap();

    let change = next_change(&mut changes).await;
    assert_eq!(change["table"], "gk_clients");
    assert_eq!(change["op"], "INSERT");
    assert_eq!(change["client"], "acme");
}

#[tokio::test]
async fn a_secret_change_is_announced_without_the_secret() {
    let db = TestDb::new().await;
    let writer = db.client().await;
    writer
        .execute(
            "INSERT INTO gk_clients (id, name) VALUES ('acme', 'Acme')",
            &[],
        )
        .await
        .unwrap();
    let (_listener, mut changes) = db.listen().await;
    let hash = format!("$2b$04${}", "s".repeat(53));

    writer
        .execute(
            "INSERT INTO gk_client_secrets (client_id, bcrypt_hash) VALUES ('acme', $1)",
            &[&hash],
        )
        .await
        .unwrap();

    let change = next_change(&mut changes).await;
    assert_eq!(change["table"], "gk_client_secrets");
    assert_eq!(change["client"], "acme");
    assert!(!change.to_string().contains("$2b$"), "{change}");
}

#[tokio::test]
async fn recording_that_a_key_was_used_is_not_announced() {
    let db = TestDb::new().await;
    let writer = db.client().await;
    writer
        .batch_execute(
            "INSERT INTO gk_clients (id, name) VALUES ('acme', 'Acme');
             INSERT INTO gk_api_keys (id, client_id, digest) VALUES ('k1', 'acme', sha256('k1'))",
        )
        .await
        .unwrap();
    let (_listener, mut changes) = db.listen().await;

    writer
        .batch_execute(
            "UPDATE gk_api_keys SET last_used_at = now() WHERE id = 'k1';
             INSERT INTO gk_clients (id, name) VALUES ('marker', 'Marker')",
        )
        .await
        .unwrap();

    // Notifications arrive in commit order: the marker comes first only if
    // the key's use went unannounced.
    let change = next_change(&mut changes).await;
    assert_eq!(change["table"], "gk_clients", "{change}");
    assert_eq!(change["client"], "marker");
}

#[tokio::test]
async fn a_key_change_names_its_digest_so_replicas_can_drop_its_shared_record() {
    let db = TestDb::new().await;
    let writer = db.client().await;
    writer
        .batch_execute("INSERT INTO gk_clients (id, name) VALUES ('acme', 'Acme')")
        .await
        .unwrap();
    let (_listener, mut changes) = db.listen().await;
    let k1 = hex::encode(sha2::Sha256::digest(b"k1"));
    let k2 = hex::encode(sha2::Sha256::digest(b"k2"));

    // One transaction each: PostgreSQL folds identical notifications
    // within a transaction.
    for statement in [
        "INSERT INTO gk_api_keys (id, client_id, digest) VALUES ('k1', 'acme', sha256('k1'))",
        "UPDATE gk_api_keys SET status = 'revoked' WHERE id = 'k1'",
        "UPDATE gk_api_keys SET digest = sha256('k2') WHERE id = 'k1'",
        "DELETE FROM gk_api_keys WHERE id = 'k1'",
    ] {
        writer.execute(statement, &[]).await.unwrap();
    }

    let mut seen = Vec::new();
    for _ in 0..5 {
        let change = next_change(&mut changes).await;
        assert_eq!(change["table"], "gk_api_keys", "{change}");
        seen.push((change["op"].to_string(), change["digest"].to_string()));
    }
    let q = |s: &str| format!("\"{s}\"");
    assert_eq!(
        seen,
        [
            (q("INSERT"), q(&k1)),
            (q("UPDATE"), q(&k1)),
            // A changed digest names both: the new one, then the old one.
            (q("UPDATE"), q(&k2)),
            (q("UPDATE"), q(&k1)),
            (q("DELETE"), q(&k2)),
        ]
    );
}

#[tokio::test]
async fn other_tables_carry_no_digest() {
    let db = TestDb::new().await;
    let (_listener, mut changes) = db.listen().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO gk_clients (id, name) VALUES ('acme', 'Acme');
             UPDATE gk_clients SET status = 'suspended' WHERE id = 'acme'",
        )
        .await
        .unwrap();
    for op in ["INSERT", "UPDATE"] {
        let change = next_change(&mut changes).await;
        assert_eq!(change["op"], op);
        assert!(change["digest"].is_null(), "{change}");
    }
}
