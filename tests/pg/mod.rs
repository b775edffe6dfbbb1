//! Test databases on the real PostgreSQL: every test gets its own database,
//! cloned from a template that `migrate` built once per set of migrations,
//! and dropped when the test ends. Tests never share state and never wait on
//! each other except while the template is first built.
//!
//! The server is `GATEKEEPER_TEST_PG` (a URL to a database on it the tests
//! may connect to, as a user allowed to create databases), by default
//! `postgres://postgres@127.0.0.1:5432/postgres`.
#![allow(dead_code)] // each test binary uses a different part of this

use std::sync::atomic::{AtomicBool, Ordering};

use gatekeeper::db::migrate;
use tokio_postgres::{Client, NoTls};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Serialises template building across test binaries running in parallel
/// (an advisory lock on the admin database; "gk_tmpl\0").
const TEMPLATE_LOCK: i64 = 0x676b_5f74_6d70_6c00;

/// Set once this process has seen the template complete.
static TEMPLATE_READY: AtomicBool = AtomicBool::new(false);

/// A fresh, migrated database of this test's own; dropped with it.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

/// The server's admin URL: where databases are created and dropped.
pub fn admin_url() -> String {
    std::env::var("GATEKEEPER_TEST_PG").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

impl TestDb {
    /// A database with every migration applied.
    pub async fn new() -> TestDb {
        let template = ensure_template().await;
        TestDb::create_from(&template).await
    }

    /// A database with nothing in it, not even the migrations table: what
    /// `gatekeeper migrate` meets on a new installation.
    pub async fn empty() -> TestDb {
        TestDb::create_from("template0").await
    }

    async fn create_from(template: &str) -> TestDb {
        let name = format!("gk_test_{}", random_hex(8));
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!(
                r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#
            ))
            .await
            .unwrap_or_else(|e| panic!("creating {name} from {template}: {e:?}"));
        TestDb {
            url: url_with_dbname(&admin_url(), &name),
            name,
        }
    }

    /// A connection to this database, its connection task spawned on the
    /// current runtime.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Prepares every statement, failing with all the ones the database
    /// refuses (a typo in a column name shows here, not in production).
    pub async fn assert_statements_prepare(&self, statements: &[&str]) {
        let client = self.client().await;
        let mut refused = Vec::new();
        for sql in statements {
            if let Err(e) = client.prepare(sql).await {
                let why = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.to_string());
                refused.push(format!("{sql}\n  -> {why}"));
            }
        }
        assert!(
            refused.is_empty(),
            "statements refused:\n{}",
            refused.join("\n")
        );
    }
}

impl Drop for TestDb {
    /// Best effort: a database left behind by a killed run is named
    /// `gk_test_*` and harmless. Runs on a thread of its own because the
    /// test's runtime may be gone or busy dropping us.
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let Ok((admin, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
                else {
                    return;
                };
                let connection = tokio::spawn(connection);
                let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                if let Err(e) = admin.batch_execute(&sql).await {
                    eprintln!("warning: could not drop test database {name}: {e}");
                }
                drop(admin);
                let _ = connection.await;
            });
        });
        let _ = dropper.join();
    }
}

/// `gk_tmpl_<fingerprint>`, built and migrated if this server lacks it.
/// Under the lock, a template is complete once it is marked IS_TEMPLATE:
/// one that exists unmarked was left by a run that died while building it.
async fn ensure_template() -> String {
    let name = format!("gk_tmpl_{}", &hex::encode(migrate::fingerprint())[..12]);
    if TEMPLATE_READY.load(Ordering::Acquire) {
        return name;
    }
    let admin = connect(&admin_url()).await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("the template lock");
    let complete: Option<bool> = admin
        .query_opt(
            "SELECT datistemplate FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("looking for the template")
        .map(|row| row.get(0));
    if complete != Some(true) {
        build_template(&admin, &name, complete.is_some()).await;
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("releasing the template lock");
    TEMPLATE_READY.store(true, Ordering::Release);
    name
}

async fn build_template(admin: &Client, name: &str, leftover: bool) {
    if leftover {
        admin
            .batch_execute(&format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#))
            .await
            .expect("dropping a half-built template");
    }
    admin
        .batch_execute(&format!(r#"CREATE DATABASE "{name}" TEMPLATE template0"#))
        .await
        .expect("creating the template");
    // `run` closes its session before returning: a template with a session
    // open cannot be cloned.
    migrate::run(&url_with_dbname(&admin_url(), name))
        .await
        .unwrap_or_else(|e| panic!("migrating the template {name}: {e:?}"));
    // No connections from now on, so cloning never finds one open.
    admin
        .batch_execute(&format!(
            r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"#
        ))
        .await
        .expect("marking the template complete");
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL (GATEKEEPER_TEST_PG): {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The admin URL pointing at another database on the same server. Only the
/// URL form (`postgres://…/dbname?…`) is supported.
fn url_with_dbname(url: &str, dbname: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .unwrap_or_else(|| panic!("GATEKEEPER_TEST_PG must be a postgres:// URL"));
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{dbname}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("random bytes");
    hex::encode(buf)
}

/// `key` as a `bytea` literal of its SHA-256 digest, for seed SQL.
pub fn digest_literal(key: &str) -> String {
    let digest = gatekeeper::core::model::Digest::of(key.as_bytes());
    format!("'\\x{}'::bytea", hex::encode(digest.0))
}

/// A fresh database with one policy: route `chat` (`*`, `/v1/*`, POST with an
/// API key), client `c1` holding key `k1` = `key`, and its grant on `chat`.
pub async fn seeded_chat(key: &str) -> TestDb {
    let db = TestDb::new().await;
    let sql = format!(
        "INSERT INTO gk_routes (id, domain, path, service) VALUES ('chat', '*', '/v1/*', 'openai');
         INSERT INTO gk_route_methods (route_id, method, credentials) VALUES ('chat', 'POST', ARRAY['api_key']);
         INSERT INTO gk_clients (id, name) VALUES ('c1', 'Client one');
         INSERT INTO gk_api_keys (id, client_id, digest) VALUES ('k1', 'c1', {});
         INSERT INTO gk_grants (client_id, route_id, methods) VALUES ('c1', 'chat', ARRAY['POST']);",
        digest_literal(key)
    );
    db.client().await.batch_execute(&sql).await.expect("seed");
    db
}

impl TestDb {
    /// A connection listening on the `gatekeeper` channel; notifications
    /// arrive on the receiver until the client is dropped.
    pub async fn listen(
        &self,
    ) -> (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    ) {
        let (client, mut connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Polling for messages is also what drives the connection.
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
            }
        });
        client.batch_execute("LISTEN gatekeeper").await.unwrap();
        (client, rx)
    }
}
