//! `gatekeeper apply` on the real PostgreSQL (DESIGN §2, §9, §11): the
//! database ends up holding the file's policy, a second apply of the same
//! file changes nothing and leaves every table byte-identical, changes are
//! exactly what differs, rows the file leaves out go only with `--prune`,
//! and `--dry-run` and invalid files write nothing.

mod pg;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gatekeeper::apply::{plan_and_apply, render, ApplyError, Change, Plan, KEPT};
use gatekeeper::core::model::{Digest, Document, Grant, GrantMethods, Method};
use gatekeeper::core::seal::MasterKey;
use gatekeeper::db::store;
use gatekeeper::sources::file_format::parse_document;
use pg::TestDb;

const HMAC_VALUE: &str = "team-a-hmac-plaintext-s3cret";

fn bcrypt_hash(tail: char) -> String {
    format!(
        "$2b$04${}{tail}",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    )
}

fn digest(key: &str) -> String {
    Digest::of(key.as_bytes()).to_string()
}

fn master_key() -> MasterKey {
    MasterKey::from_bytes([0x42; 32])
}

fn base_toml() -> String {
    format!(
        r#"
[[route]]
id = "ollama-api"
domain = "llm.example.com"
path = "/api/*"
service = "ollama"
[route.methods]
GET = ["public"]
POST = ["api_key", "basic", "hmac"]

[[route]]
id = "chat"
domain = "*.example.com"
path = "/v1/chat/completions"
service = "openai"
priority = 5
[route.methods]
"*" = ["api_key"]

[[client]]
id = "team-a"
name = "Team A"
status = "active"
limit = "600/1m"
burst = 50
secret_hash = "{hash}"
hmac_secret = {{ env = "TEAM_A_HMAC" }}

[[client.key]]
id = "k1"
digest = "{k1}"
status = "active"
expires_at = "2027-01-01T00:00:00Z"

[[client]]
id = "team-b"
name = "Team B"
status = "active"

[[client.key]]
id = "k2"
digest = "{k2}"
status = "revoked"

[[grant]]
client = "team-a"
route = "ollama-api"
methods = ["GET", "POST"]
models = ["llama3*", "qwen2.5:7b"]
limit = "60/1m"

[[grant]]
client = "team-a"
route = "chat"
methods = ["POST"]

[[grant]]
client = "team-b"
route = "chat"
methods = ["POST"]
"#,
        hash = bcrypt_hash('0'),
        k1 = digest("key-one"),
        k2 = digest("key-two"),
    )
}

fn parse(text: &str) -> Document {
    let env = |name: &str| (name == "TEAM_A_HMAC").then(|| HMAC_VALUE.to_owned());
    parse_document(text, &env, Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

/// The document in the order `load_document` reads it.
fn sorted(mut doc: Document) -> Document {
    doc.routes.sort_by(|a, b| a.id.cmp(&b.id));
    doc.clients.sort_by(|a, b| a.id.cmp(&b.id));
    doc.keys.sort_by(|a, b| a.id.cmp(&b.id));
    doc.grants
        .sort_by(|a, b| (&a.client_id, &a.route_id).cmp(&(&b.client_id, &b.route_id)));
    doc
}

async fn apply(db: &TestDb, doc: &Document, dry_run: bool, prune: bool) -> Plan {
    plan_and_apply(&db.url, doc, Some(&master_key()), dry_run, prune)
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e:?}"))
}

async fn stored(db: &TestDb) -> Document {
    let client = db.client().await;
    store::load_document(&client, Some(&master_key()))
        .await
        .expect("loading the document")
}

/// Every table of the schema: the md5 of its rows as text (timestamps
/// included) and, separately, of their `xmin`, which moves on any UPDATE
/// even one that rewrites the same values.
async fn table_hashes(db: &TestDb) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let client = db.client().await;
    let tables = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("listing tables");
    let mut out = BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        let sql = format!(
            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)), \
                    md5(string_agg(t.xmin::text, '|' ORDER BY t::text)) FROM {table} t"
        );
        let hashes = client.query_one(&sql, &[]).await.expect("hashing a table");
        out.insert(table, (hashes.get(0), hashes.get(1)));
    }
    assert!(out.contains_key("gk_routes") && out.contains_key("gk_limits"));
    out
}

fn ids(changes: &[Change]) -> Vec<(&str, &str)> {
    changes.iter().map(|c| (c.kind, c.id.as_str())).collect()
}

#[tokio::test]
async fn applying_to_an_empty_database_creates_everything_and_loads_back_as_the_file() {
    let db = TestDb::new().await;
    let doc = parse(&base_toml());
    let plan = apply(&db, &doc, false, false).await;
    assert_eq!(
        ids(&plan.create),
        vec![
            ("route", "ollama-api"),
            ("route", "chat"),
            ("client", "team-a"),
            ("secret", "team-a"),
            ("secret", "team-a"),
            ("client", "team-b"),
            ("key", "k1"),
            ("key", "k2"),
            ("grant", "team-a → ollama-api"),
            ("grant", "team-a → chat"),
            ("grant", "team-b → chat"),
        ]
    );
    let text = render(&plan);
    assert!(
        text.contains("+ route ollama-api (llm.example.com /api/*)\n"),
        "{text}"
    );
    assert!(plan.update.is_empty() && plan.delete.is_empty() && plan.kept.is_empty());
    assert_eq!(stored(&db).await, sorted(doc));
}

#[tokio::test]
async fn the_plan_never_shows_a_secret_or_a_digest() {
    let db = TestDb::new().await;
    let doc = parse(&base_toml());
    let plan = apply(&db, &doc, false, false).await;
    let json = serde_json::to_string(&plan).unwrap();
    let text = render(&plan);
    for shown in [json, text] {
        assert!(!shown.contains(HMAC_VALUE), "{shown}");
        assert!(!shown.contains(&bcrypt_hash('0')), "{shown}");
        assert!(!shown.contains(&digest("key-one")[7..]), "{shown}");
    }
}

#[tokio::test]
async fn applying_the_same_file_twice_changes_nothing_and_leaves_every_table_byte_identical() {
    let db = TestDb::new().await;
    let doc = parse(&base_toml());
    apply(&db, &doc, false, false).await;
    let before = table_hashes(&db).await;
    let plan = apply(&db, &doc, false, false).await;
    assert!(plan.is_empty(), "{plan:?}");
    assert!(plan.kept.is_empty(), "{plan:?}");
    assert_eq!(table_hashes(&db).await, before);
    // With --prune too: nothing is missing from the file.
    let plan = apply(&db, &doc, false, true).await;
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(table_hashes(&db).await, before);
}

#[tokio::test]
async fn a_changed_file_produces_exactly_the_expected_updates() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let changed = base_toml()
        .replacen(
            "name = \"Team A\"\nstatus = \"active\"",
            "name = \"Team A\"\nstatus = \"suspended\"",
            1,
        )
        .replace(
            "expires_at = \"2027-01-01T00:00:00Z\"",
            "expires_at = \"2028-01-01T00:00:00Z\"",
        )
        .replace("limit = \"60/1m\"", "limit = \"120/1m\"")
        .replace("service = \"openai\"", "service = \"openai-v2\"");
    let doc = parse(&changed);
    let plan = apply(&db, &doc, false, false).await;
    let expected = vec![
        Change {
            kind: "route",
            id: "chat".into(),
            detail: "service openai → openai-v2".into(),
        },
        Change {
            kind: "client",
            id: "team-a".into(),
            detail: "status active → suspended".into(),
        },
        Change {
            kind: "key",
            id: "k1".into(),
            detail: "expires 2027-01-01T00:00:00Z → 2028-01-01T00:00:00Z".into(),
        },
        Change {
            kind: "limit",
            id: "team-a → ollama-api".into(),
            detail: "limit 60/1m burst 60 → 120/1m burst 120".into(),
        },
    ];
    assert_eq!(plan.update, expected);
    assert!(plan.create.is_empty() && plan.delete.is_empty() && plan.kept.is_empty());
    assert!(render(&plan).contains("~ client team-a: status active → suspended\n"));
    assert_eq!(stored(&db).await, sorted(doc.clone()));
    // And once there, the changed file is a no-op too.
    let before = table_hashes(&db).await;
    assert!(apply(&db, &doc, false, false).await.is_empty());
    assert_eq!(table_hashes(&db).await, before);
}

#[tokio::test]
async fn a_changed_hmac_secret_is_resealed_and_an_unchanged_one_is_left_alone() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let mut doc = parse(&base_toml());
    doc.clients[0].hmac_secret = Some(gatekeeper::core::model::Secret::new(
        b"another-secret".to_vec(),
    ));
    let plan = apply(&db, &doc, false, false).await;
    assert_eq!(ids(&plan.update), vec![("secret", "team-a")]);
    assert_eq!(plan.update[0].detail, "hmac secret changed");
    assert_eq!(stored(&db).await, sorted(doc));
}

#[tokio::test]
async fn a_route_left_out_of_the_file_is_kept_without_prune_and_deleted_with_it() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let mut doc = parse(&base_toml());
    doc.routes.retain(|r| &*r.id != "chat");
    doc.grants.retain(|g| &*g.route_id != "chat");

    let before = table_hashes(&db).await;
    let plan = apply(&db, &doc, false, false).await;
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(
        ids(&plan.kept),
        vec![
            ("grant", "team-a → chat"),
            ("grant", "team-b → chat"),
            ("route", "chat")
        ]
    );
    assert!(plan.kept.iter().all(|c| c.detail == KEPT));
    assert!(render(&plan).contains("  route chat: not in the file (kept; --prune deletes)\n"));
    assert_eq!(table_hashes(&db).await, before);
    assert_eq!(stored(&db).await.routes.len(), 2);

    let plan = apply(&db, &doc, false, true).await;
    assert_eq!(
        ids(&plan.delete),
        vec![
            ("grant", "team-a → chat"),
            ("grant", "team-b → chat"),
            ("route", "chat")
        ]
    );
    assert!(render(&plan).contains("- grant team-a → chat\n"));
    assert!(plan.create.is_empty() && plan.update.is_empty() && plan.kept.is_empty());
    assert_eq!(stored(&db).await, sorted(doc));
}

#[tokio::test]
async fn pruning_a_route_cascades_to_its_grants_and_their_limits() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let mut doc = parse(&base_toml());
    doc.routes.retain(|r| &*r.id != "ollama-api");
    doc.grants.retain(|g| &*g.route_id != "ollama-api");
    apply(&db, &doc, false, true).await;
    let client = db.client().await;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM gk_limits WHERE route_id = 'ollama-api'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(stored(&db).await, sorted(doc));
}

#[tokio::test]
async fn a_client_left_out_is_pruned_with_its_keys() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let mut doc = parse(&base_toml());
    doc.clients.retain(|c| &*c.id != "team-b");
    doc.keys.retain(|k| &*k.client_id != "team-b");
    doc.grants.retain(|g| &*g.client_id != "team-b");
    let plan = apply(&db, &doc, false, true).await;
    assert_eq!(
        ids(&plan.delete),
        vec![
            ("grant", "team-b → chat"),
            ("key", "k2"),
            ("client", "team-b")
        ]
    );
    assert_eq!(stored(&db).await, sorted(doc));
}

#[tokio::test]
async fn a_secret_left_out_is_kept_without_prune_and_removed_with_it() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let mut doc = parse(&base_toml());
    doc.clients[0].hmac_secret = None;
    let before = table_hashes(&db).await;
    let plan = apply(&db, &doc, false, false).await;
    assert!(plan.is_empty());
    assert_eq!(ids(&plan.kept), vec![("secret", "team-a")]);
    assert_eq!(table_hashes(&db).await, before);

    let plan = apply(&db, &doc, false, true).await;
    assert_eq!(ids(&plan.delete), vec![("secret", "team-a")]);
    assert_eq!(plan.delete[0].detail, "hmac");
    assert_eq!(stored(&db).await, sorted(doc.clone()));

    doc.clients[0].secret_hash = None;
    apply(&db, &doc, false, true).await;
    let client = db.client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM gk_client_secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    assert_eq!(stored(&db).await, sorted(doc));
}

#[tokio::test]
async fn a_dry_run_writes_nothing_but_returns_the_plan() {
    let db = TestDb::new().await;
    let doc = parse(&base_toml());
    let empty = table_hashes(&db).await;
    let plan = apply(&db, &doc, true, false).await;
    assert_eq!(plan.create.len(), 11, "{plan:?}");
    assert_eq!(table_hashes(&db).await, empty);
    assert_eq!(stored(&db).await, Document::default());

    apply(&db, &doc, false, false).await;
    let before = table_hashes(&db).await;
    let mut changed = doc.clone();
    changed.routes.retain(|r| &*r.id != "chat");
    changed.grants.retain(|g| &*g.route_id != "chat");
    changed.grants[0].methods = GrantMethods::Only(vec![Method::parse("GET").unwrap()]);
    let plan = apply(&db, &changed, true, true).await;
    assert_eq!(ids(&plan.update), vec![("grant", "team-a → ollama-api")]);
    assert_eq!(plan.delete.len(), 3);
    assert_eq!(table_hashes(&db).await, before);
}

#[tokio::test]
async fn an_invalid_file_is_refused_before_touching_the_database() {
    let mut doc = parse(&base_toml());
    doc.grants.push(Grant {
        client_id: "nobody".parse().unwrap(),
        route_id: "chat".parse().unwrap(),
        methods: GrantMethods::Any,
        models: None,
        limit: None,
    });
    // No database at all: refused before connecting.
    let unreachable = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1";
    let err = plan_and_apply(unreachable, &doc, Some(&master_key()), false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("nobody"), "{err}");

    let db = TestDb::new().await;
    let before = table_hashes(&db).await;
    let err = plan_and_apply(&db.url, &doc, Some(&master_key()), false, true)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)), "{err:?}");
    assert_eq!(table_hashes(&db).await, before);
}

#[tokio::test]
async fn an_hmac_secret_without_a_master_key_is_refused_before_touching_the_database() {
    let db = TestDb::new().await;
    let before = table_hashes(&db).await;
    let err = plan_and_apply(&db.url, &parse(&base_toml()), None, false, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApplyError::MasterKeyMissing { client } if client == "team-a"),
        "{err:?}"
    );
    assert_eq!(table_hashes(&db).await, before);
}

#[tokio::test]
async fn a_write_the_database_refuses_rolls_the_whole_apply_back() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let before = table_hashes(&db).await;
    // The file drops k2 (kept: no --prune) and gives a new key k3 k2's
    // digest: valid as a file, refused by the unique digest after the
    // route and client updates were written.
    let mut doc = parse(&base_toml());
    doc.routes[0].priority = 7;
    doc.clients[1].status = gatekeeper::core::model::ClientStatus::Suspended;
    let mut k3 = doc.keys.iter().find(|k| &*k.id == "k2").unwrap().clone();
    k3.id = "k3".parse().unwrap();
    doc.keys.retain(|k| &*k.id != "k2");
    doc.keys.push(k3);
    let err = plan_and_apply(&db.url, &doc, Some(&master_key()), false, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("k3"), "{err}");
    assert!(
        !matches!(
            err,
            ApplyError::Invalid(_) | ApplyError::MasterKeyMissing { .. }
        ),
        "a failed write is neither bad input nor a missing setting: {err:?}"
    );
    assert_eq!(table_hashes(&db).await, before);
}

#[tokio::test]
async fn keys_clients_and_grants_are_changed_in_place() {
    let db = TestDb::new().await;
    apply(&db, &parse(&base_toml()), false, false).await;
    let mut doc = parse(&base_toml());
    let k1 = doc.keys.iter_mut().find(|k| &*k.id == "k1").unwrap();
    k1.client_id = "team-b".parse().unwrap();
    k1.digest = Digest::of(b"key-one-rotated");
    doc.clients[0].limit = None;
    doc.clients[1].name = Arc::from("Team B2");
    doc.grants[0].methods = GrantMethods::Any;
    doc.grants[0].limit = None;
    let plan = apply(&db, &doc, false, false).await;
    assert_eq!(
        plan.update,
        vec![
            Change {
                kind: "limit",
                id: "team-a".into(),
                detail: "limit 600/1m burst 50 → none".into(),
            },
            Change {
                kind: "client",
                id: "team-b".into(),
                detail: "name \"Team B\" → \"Team B2\"".into(),
            },
            Change {
                kind: "key",
                id: "k1".into(),
                detail: "client team-a → team-b, digest changed".into(),
            },
            Change {
                kind: "grant",
                id: "team-a → ollama-api".into(),
                detail: "methods GET,POST → *, limit 60/1m burst 60 → none".into(),
            },
        ]
    );
    assert_eq!(stored(&db).await, sorted(doc.clone()));
    let before = table_hashes(&db).await;
    assert!(apply(&db, &doc, false, true).await.is_empty());
    assert_eq!(table_hashes(&db).await, before);
}
