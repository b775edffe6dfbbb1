//! The policy store on the real PostgreSQL (DESIGN §2, §3, §6, §7): what
//! the CLI writes loads back as the same `Document`, constraint violations
//! come back as typed errors naming the row, HMAC secrets are sealed at
//! rest, and only changes that matter are announced to replicas.

mod pg;

use std::collections::BTreeMap;
use std::time::Duration;

use gatekeeper::core::glob::Glob;
use gatekeeper::core::model::{
    ClientStatus, CredentialSet, CredentialType, Digest, Document, DomainPattern, Grant,
    GrantMethods, KeyRecord, KeyStatus, Limit, Method, MethodRule, PathPattern, Route, Secret,
};
use gatekeeper::core::policy::Policy;
use gatekeeper::core::seal::{self, MasterKey};
use gatekeeper::db::store::{self, NewClient, StoreError};
use pg::TestDb;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Notification};

const NOTIFY_DEADLINE: Duration = Duration::from_secs(5);
/// How long "no notification" is watched for after the marker arrives.
const QUIET_WINDOW: Duration = Duration::from_millis(300);
const HMAC_SECRET: &[u8] = b"team-a-hmac-plaintext-s3cret";

fn master_key() -> MasterKey {
    MasterKey::from_bytes([0x42; 32])
}

fn bcrypt_hash() -> String {
    format!(
        "$2b$04${}",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
    )
}

fn rule(credentials: &[&str]) -> MethodRule {
    match credentials {
        ["public"] => MethodRule::Public,
        _ => MethodRule::Credentials(
            credentials
                .iter()
                .map(|c| CredentialType::parse(c).unwrap())
                .collect::<CredentialSet>(),
        ),
    }
}

fn route(id: &str, domain: &str, path: &str, methods: &[(&str, &[&str])]) -> Route {
    let mut route = Route {
        id: id.parse().unwrap(),
        domain: DomainPattern::parse(domain).unwrap(),
        path: PathPattern::parse(path).unwrap(),
        service: "ollama".into(),
        priority: 0,
        methods: BTreeMap::new(),
        any_method: None,
    };
    for (method, credentials) in methods {
        match *method {
            "*" => route.any_method = Some(rule(credentials)),
            m => drop(
                route
                    .methods
                    .insert(Method::parse(m).unwrap(), rule(credentials)),
            ),
        }
    }
    route
}

fn new_client(id: &str, status: ClientStatus) -> NewClient {
    NewClient {
        id: id.into(),
        name: format!("Team {id}"),
        status,
        metadata: serde_json::json!({ "owner": "ops" }),
    }
}

fn policy_client(id: &str, status: ClientStatus) -> gatekeeper::core::model::Client {
    gatekeeper::core::model::Client {
        id: id.parse().unwrap(),
        name: format!("Team {id}").into(),
        status,
        limit: None,
        secret_hash: None,
        hmac_secret: None,
    }
}

fn key(id: &str, client: &str, expires_at: Option<i64>) -> KeyRecord {
    KeyRecord {
        id: id.parse().unwrap(),
        client_id: client.parse().unwrap(),
        digest: Digest::of(format!("key material of {id}").as_bytes()),
        status: KeyStatus::Active,
        expires_at,
    }
}

fn grant(client: &str, route: &str, methods: GrantMethods) -> Grant {
    Grant {
        client_id: client.parse().unwrap(),
        route_id: route.parse().unwrap(),
        methods,
        models: None,
        limit: None,
    }
}

fn limit(text: &str, burst: u32) -> Limit {
    Limit::parse(text).unwrap().with_burst(burst).unwrap()
}

fn methods(names: &[&str]) -> GrantMethods {
    GrantMethods::Only(names.iter().map(|m| Method::parse(m).unwrap()).collect())
}

/// The policy every round-trip test starts from, as the model holds it and
/// in the order `load_document` returns it (each kind by id).
fn sample() -> Document {
    let chat = route(
        "chat",
        "llm.example.com",
        "/v1/chat/completions",
        &[("GET", &["public"]), ("POST", &["api_key", "hmac"])],
    );
    let ollama = Route {
        priority: 5,
        ..route(
            "ollama",
            "*.example.com",
            "/api/*",
            &[("GET", &["public"]), ("*", &["api_key", "basic"])],
        )
    };
    let team_a = gatekeeper::core::model::Client {
        limit: Some(limit("600/1m", 50)),
        secret_hash: Some(bcrypt_hash().into()),
        hmac_secret: Some(Secret::new(HMAC_SECRET.to_vec())),
        ..policy_client("team-a", ClientStatus::Active)
    };
    let models = ["llama3*", "qwen2.5:7b"].map(|m| Glob::parse(m).unwrap());
    Document {
        routes: vec![chat, ollama],
        clients: vec![team_a, policy_client("team-b", ClientStatus::Active)],
        keys: vec![
            key("ka1", "team-a", None),
            key("ka2", "team-a", Some(1_900_000_000)),
            key("kb1", "team-b", None),
        ],
        grants: vec![
            Grant {
                models: Some(models.to_vec()),
                limit: Some(limit("60/1m", 10)),
                ..grant("team-a", "chat", methods(&["POST"]))
            },
            grant("team-a", "ollama", GrantMethods::Any),
            Grant {
                limit: Some(limit("10/1s", 10)),
                ..grant("team-b", "chat", methods(&["GET", "POST"]))
            },
        ],
    }
}

/// Writes `doc` through the store, as the CLI would.
async fn write(client: &mut Client, doc: &Document) {
    for r in &doc.routes {
        store::create_route(client, r).await.unwrap();
    }
    for c in &doc.clients {
        let new = NewClient {
            name: c.name.to_string(),
            ..new_client(&c.id, c.status)
        };
        store::create_client(client, &new).await.unwrap();
        if let Some(l) = c.limit {
            store::set_limit(client, &c.id, None, l).await.unwrap();
        }
        if let Some(hash) = &c.secret_hash {
            store::set_basic_secret(client, &c.id, hash).await.unwrap();
        }
        if let Some(secret) = &c.hmac_secret {
            let sealed = seal::seal(&master_key(), &c.id, secret.expose()).unwrap();
            store::set_hmac_secret(client, &c.id, &sealed)
                .await
                .unwrap();
        }
    }
    for k in &doc.keys {
        store::create_key(client, k, Some("laptop")).await.unwrap();
    }
    for g in &doc.grants {
        store::create_grant(client, g).await.unwrap();
    }
}

async fn seeded() -> (TestDb, Client) {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    write(&mut client, &sample()).await;
    (db, client)
}

async fn load(client: &Client) -> Document {
    store::load_document(client, Some(&master_key()))
        .await
        .unwrap()
}

async fn next_payload(rx: &mut mpsc::UnboundedReceiver<Notification>) -> String {
    tokio::time::timeout(NOTIFY_DEADLINE, rx.recv())
        .await
        .expect("no notification within the deadline")
        .expect("the listening connection ended")
        .payload()
        .to_owned()
}

fn assert_matches(err: StoreError, expected: &str) {
    let text = err.to_string();
    assert_eq!(text, expected, "{err:?}");
}

#[tokio::test]
async fn every_store_statement_prepares_on_a_fresh_database() {
    let db = TestDb::new().await;
    db.assert_statements_prepare(store::STATEMENTS).await;
}

#[tokio::test]
async fn a_policy_written_through_the_store_loads_back_as_the_same_document() {
    let (_db, client) = seeded().await;

    let loaded = load(&client).await;

    assert_eq!(loaded, sample());
    let policy = Policy::build(loaded).expect("the loaded policy builds");
    assert_eq!(policy.counts().keys, 3);
}

#[tokio::test]
async fn a_snapshot_load_reads_the_same_document() {
    let (_db, mut client) = seeded().await;
    let doc = store::load_snapshot(&mut client, Some(&master_key()))
        .await
        .unwrap();
    assert_eq!(doc, sample());
}

#[tokio::test]
async fn find_key_finds_a_key_by_digest_and_nothing_for_an_unknown_one() {
    let (_db, client) = seeded().await;
    let wanted = key("ka2", "team-a", Some(1_900_000_000));

    let found = store::find_key(&client, &wanted.digest).await.unwrap();
    let unknown = store::find_key(&client, &Digest::of(b"nobody's key"))
        .await
        .unwrap();

    assert_eq!(found, Some(wanted));
    assert_eq!(unknown, None);
}

#[tokio::test]
async fn client_secrets_returns_the_bcrypt_hash_and_the_opened_hmac_secret() {
    let (_db, client) = seeded().await;
    let key = master_key();

    let (hash, secret) = store::client_secrets(&client, "team-a", Some(&key))
        .await
        .unwrap();
    let none = store::client_secrets(&client, "team-b", Some(&key))
        .await
        .unwrap();

    assert_eq!(hash.as_deref(), Some(bcrypt_hash().as_str()));
    assert_eq!(secret.unwrap().expose(), HMAC_SECRET);
    assert_eq!(none, (None, None));
}

#[tokio::test]
async fn duplicates_come_back_as_typed_errors_naming_the_row() {
    let (_db, mut client) = seeded().await;
    let doc = sample();
    let c = &mut client;

    let same_id = store::create_route(c, &doc.routes[0]).await.unwrap_err();
    let same_place = route("chat2", "llm.example.com", "/v1/chat/completions", &[]);
    let same_place = store::create_route(c, &same_place).await.unwrap_err();
    let team_a = new_client("team-a", ClientStatus::Active);
    let same_client = store::create_client(&*c, &team_a).await.unwrap_err();
    let same_key = store::create_key(c, &doc.keys[0], None).await.unwrap_err();
    let same_digest = KeyRecord {
        id: "ka9".parse().unwrap(),
        ..doc.keys[0].clone()
    };
    let same_digest = store::create_key(c, &same_digest, None).await.unwrap_err();
    let same_grant = store::create_grant(c, &doc.grants[1]).await.unwrap_err();

    assert_matches(same_id, "route `chat` already exists");
    assert_matches(
        same_place,
        "a route on `llm.example.com/v1/chat/completions` already exists",
    );
    assert_matches(same_client, "client `team-a` already exists");
    assert_matches(same_key, "key `ka1` already exists");
    let digest_text = format!("{same_digest} {same_digest:?}");
    assert!(matches!(same_digest, StoreError::Duplicate { .. }));
    assert!(
        !digest_text.contains(&hex::encode(doc.keys[0].digest.0)),
        "{digest_text}"
    );
    assert!(!digest_text.contains("\\x"), "{digest_text}");
    assert_matches(same_grant, "grant `team-a/ollama` already exists");
}

#[tokio::test]
async fn unknown_references_come_back_as_typed_errors() {
    let (_db, mut client) = seeded().await;
    let c = &mut client;

    let key = store::create_key(c, &key("kx", "ghost", None), None).await;
    let (to_nowhere, from_ghost) = (
        grant("team-b", "nowhere", GrantMethods::Any),
        grant("ghost", "chat", GrantMethods::Any),
    );
    let grant_route = store::create_grant(c, &to_nowhere).await.unwrap_err();
    let grant_client = store::create_grant(c, &from_ghost).await.unwrap_err();
    let route_limit = store::set_limit(c, "team-b", Some("ollama"), limit("1/1s", 1)).await;
    let secret = store::set_basic_secret(c, "ghost", &bcrypt_hash()).await;

    assert_matches(key.unwrap_err(), "no client has the id `ghost`");
    assert_matches(grant_route, "no route has the id `nowhere`");
    assert_matches(grant_client, "no client has the id `ghost`");
    assert_matches(
        route_limit.unwrap_err(),
        "no grant has the id `team-b/ollama`",
    );
    assert_matches(secret.unwrap_err(), "no client has the id `ghost`");
}

#[tokio::test]
async fn invalid_values_come_back_naming_the_constraint_and_never_the_secret() {
    let db = TestDb::new().await;
    let c = db.client().await;
    store::create_client(&c, &new_client("team-a", ClientStatus::Active))
        .await
        .unwrap();

    let bad_id = store::create_client(&c, &new_client("team a", ClientStatus::Active)).await;
    let blank = NewClient {
        name: "  ".into(),
        ..new_client("team-b", ClientStatus::Active)
    };
    let blank = store::create_client(&c, &blank).await.unwrap_err();
    let not_a_hash = "$2b$04$tooShortToBeAHash-hunter2";
    let hash = store::set_basic_secret(&c, "team-a", not_a_hash).await;
    let list = NewClient {
        metadata: serde_json::json!(["not", "an", "object"]),
        ..new_client("team-c", ClientStatus::Active)
    };
    let list = store::create_client(&c, &list).await.unwrap_err();

    let StoreError::Invalid { problem, .. } = bad_id.unwrap_err() else {
        panic!("not Invalid")
    };
    assert!(problem.contains("gk_id_check"), "{problem}");
    let blank = blank.to_string();
    assert!(
        blank.contains("gk_clients_name_check") && blank.contains("team-b"),
        "{blank}"
    );
    let hash = hash.unwrap_err();
    let hash_text = format!("{hash} {hash:?}");
    assert!(matches!(
        hash,
        StoreError::Invalid {
            table: "gk_client_secrets",
            ..
        }
    ));
    assert!(
        hash_text.contains("gk_client_secrets_bcrypt_hash_check"),
        "{hash_text}"
    );
    assert!(!hash_text.contains("hunter2"), "{hash_text}");
    assert!(list.to_string().contains("JSON object"), "{list}");
}

#[tokio::test]
async fn changing_or_deleting_what_does_not_exist_is_not_found() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let gone = route("gone", "a.example.com", "/x", &[("GET", &["public"])]);

    let errors = [
        store::update_route(&mut c, &gone).await.unwrap_err(),
        store::delete_route(&c, "gone").await.unwrap_err(),
        store::set_client_status(&c, "ghost", ClientStatus::Suspended)
            .await
            .unwrap_err(),
        store::rename_client(&c, "ghost", "Ghost")
            .await
            .unwrap_err(),
        store::delete_client(&c, "ghost").await.unwrap_err(),
        store::clear_secrets(&c, "ghost").await.unwrap_err(),
        store::set_key_status(&c, "k0", KeyStatus::Revoked)
            .await
            .unwrap_err(),
        store::set_key_expiry(&c, "k0", None).await.unwrap_err(),
        store::delete_key(&c, "k0").await.unwrap_err(),
        store::get_key(&c, "k0").await.unwrap_err(),
        store::update_grant(&mut c, &grant("ghost", "gone", GrantMethods::Any))
            .await
            .unwrap_err(),
        store::delete_grant(&c, "ghost", "gone").await.unwrap_err(),
        store::delete_limit(&c, "ghost", None).await.unwrap_err(),
    ];

    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, StoreError::NotFound { .. })),
        "{texts:#?}"
    );
    assert_eq!(texts[0], "route `gone` does not exist");
    assert_eq!(texts[10], "grant `ghost/gone` does not exist");
}

#[tokio::test]
async fn deleting_a_client_takes_its_keys_secrets_grants_and_limits_with_it() {
    let (_db, client) = seeded().await;

    store::delete_client(&client, "team-a").await.unwrap();

    let doc = load(&client).await;
    let mut expected = sample();
    expected.clients.retain(|c| &*c.id != "team-a");
    expected.keys.retain(|k| &*k.client_id != "team-a");
    expected.grants.retain(|g| &*g.client_id != "team-a");
    assert_eq!(doc, expected);
    assert!(store::list_limits(&client)
        .await
        .unwrap()
        .iter()
        .all(|l| l.client_id != "team-a"));
    assert_eq!(
        store::client_secrets(&client, "team-a", None)
            .await
            .unwrap(),
        (None, None)
    );
}

#[tokio::test]
async fn suspending_a_client_and_revoking_a_key_show_in_the_loaded_document() {
    let (_db, client) = seeded().await;

    store::set_client_status(&client, "team-b", ClientStatus::Suspended)
        .await
        .unwrap();
    store::set_key_status(&client, "ka1", KeyStatus::Revoked)
        .await
        .unwrap();
    store::set_key_expiry(&client, "ka2", None).await.unwrap();

    let doc = load(&client).await;
    assert_eq!(doc.clients[1].status, ClientStatus::Suspended);
    assert_eq!(doc.keys[0].status, KeyStatus::Revoked);
    assert_eq!(doc.keys[1].expires_at, None);
}

#[tokio::test]
async fn routes_grants_and_limits_are_replaced_by_their_updates() {
    let (_db, mut client) = seeded().await;
    let c = &mut client;
    let moved = Route {
        service: "openai".into(),
        priority: -1,
        ..route("chat", "api.example.com", "/v1/*", &[("*", &["hmac"])])
    };
    let narrower = Grant {
        models: None,
        limit: None,
        ..grant("team-a", "chat", methods(&["GET"]))
    };

    store::update_route(c, &moved).await.unwrap();
    store::update_grant(c, &narrower).await.unwrap();
    store::set_limit(c, "team-b", None, limit("5/1h", 2))
        .await
        .unwrap();
    store::set_limit(c, "team-b", None, limit("7/1h", 3))
        .await
        .unwrap();
    store::rename_client(c, "team-b", "Team B, renamed")
        .await
        .unwrap();
    store::delete_limit(c, "team-a", None).await.unwrap();

    let doc = load(c).await;
    assert_eq!(doc.routes[0], moved);
    assert_eq!(doc.grants[0], narrower);
    assert_eq!(doc.clients[0].limit, None);
    assert_eq!(doc.clients[1].limit, Some(limit("7/1h", 3)));
    assert_eq!(&*doc.clients[1].name, "Team B, renamed");
    let limits = store::list_limits(c).await.unwrap();
    assert_eq!(limits.len(), 2, "{limits:?}"); // team-b's own and its grant's
}

#[tokio::test]
async fn touching_last_used_updates_a_batch_without_announcing_it() {
    let (db, client) = seeded().await;
    let (_listener, mut changes) = db.listen().await;

    let touched = store::touch_keys_last_used(
        &client,
        &[
            ("ka1".parse().unwrap(), 1_700_000_000),
            ("kb1".parse().unwrap(), 1_700_000_100),
            ("ka1".parse().unwrap(), 1_700_000_050),
            ("unknown".parse().unwrap(), 1_700_000_000),
        ],
    )
    .await
    .unwrap();
    // Anything the touch announced would arrive before this marker.
    client
        .execute("SELECT pg_notify('gatekeeper', 'marker')", &[])
        .await
        .unwrap();

    assert_eq!(touched, 2);
    assert_eq!(next_payload(&mut changes).await, "marker");
    let quiet = tokio::time::timeout(QUIET_WINDOW, changes.recv()).await;
    assert!(quiet.is_err(), "unexpected notification: {quiet:?}");
    let ka1 = store::get_key(&client, "ka1").await.unwrap();
    assert_eq!(ka1.last_used_at.as_deref(), Some("2023-11-14T22:14:10Z"));
    let kb1 = store::get_key(&client, "kb1").await.unwrap();
    assert_eq!(kb1.last_used_at.as_deref(), Some("2023-11-14T22:15:00Z"));
}

#[tokio::test]
async fn revoking_a_key_is_announced_to_replicas() {
    let (db, client) = seeded().await;
    let (_listener, mut changes) = db.listen().await;

    store::set_key_status(&client, "ka1", KeyStatus::Revoked)
        .await
        .unwrap();

    let change: serde_json::Value =
        serde_json::from_str(&next_payload(&mut changes).await).unwrap();
    let hex: String = client
        .query_one(
            "SELECT encode(digest, 'hex') FROM gk_api_keys WHERE id = 'ka1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        change,
        serde_json::json!({
            "table": "gk_api_keys", "op": "UPDATE", "client": "team-a", "digest": hex
        })
    );
}

#[tokio::test]
async fn hmac_secrets_are_sealed_at_rest_and_need_the_master_key_to_load() {
    let (_db, client) = seeded().await;

    let row = client
        .query_one(
            "SELECT hmac_secret_sealed FROM gk_client_secrets WHERE client_id = 'team-a'",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    let without_key = store::load_document(&client, None).await.unwrap_err();
    let wrong_key = MasterKey::from_bytes([0x24; 32]);
    let wrong_key = store::load_document(&client, Some(&wrong_key))
        .await
        .unwrap_err();

    assert!(!stored.is_empty());
    assert!(!stored.windows(HMAC_SECRET.len()).any(|w| w == HMAC_SECRET));
    assert!(matches!(
        &without_key,
        StoreError::MasterKeyMissing { client } if client == "team-a"
    ));
    assert!(without_key.to_string().contains("team-a"), "{without_key}");
    assert!(matches!(&wrong_key, StoreError::Unseal { client, .. } if client == "team-a"));
}

#[tokio::test]
async fn a_row_the_model_refuses_fails_the_load_naming_it() {
    let (_db, client) = seeded().await;
    // The schema allows any non-empty model text; the glob parser does not.
    client
        .execute(
            "UPDATE gk_grants SET models = ARRAY['bad model'] WHERE client_id = 'team-b'",
            &[],
        )
        .await
        .unwrap();

    let err = store::load_document(&client, Some(&master_key()))
        .await
        .unwrap_err();

    let StoreError::Invalid { table, id, problem } = &err else {
        panic!("not Invalid: {err:?}")
    };
    assert_eq!((*table, id.as_str()), ("gk_grants", "team-b/chat"));
    assert!(problem.contains("bad model"), "{problem}");
}

#[tokio::test]
async fn list_rows_carry_stable_field_names_and_no_digest_or_secret() {
    let (_db, client) = seeded().await;

    let routes = store::list_routes(&client).await.unwrap();
    let team_a = store::get_client(&client, "team-a").await.unwrap();
    let keys = store::list_keys(&client, Some("team-a")).await.unwrap();
    let all_keys = store::list_keys(&client, None).await.unwrap();
    let grants = store::list_grants(&client, Some("team-a")).await.unwrap();
    let limits = store::list_limits(&client).await.unwrap();
    let route = store::get_route(&client, "ollama").await.unwrap();

    assert_eq!(routes.len(), 2);
    assert_eq!(route.methods["*"], ["api_key", "basic"]);
    assert_eq!(route.methods["GET"], ["public"]);
    assert_eq!(team_a.limit.as_deref(), Some("600/60s"));
    assert_eq!((team_a.burst, team_a.key_count), (Some(50), 2));
    assert!(team_a.has_basic_secret && team_a.has_hmac_secret);
    assert_eq!(team_a.metadata, serde_json::json!({ "owner": "ops" }));
    assert_eq!(keys.len(), 2);
    assert_eq!(all_keys.len(), 3);
    assert_eq!(keys[1].expires_at.as_deref(), Some("2030-03-17T17:46:40Z"));
    assert_eq!(keys[0].label.as_deref(), Some("laptop"));
    assert_eq!(
        grants[0].models.as_deref(),
        Some(&["llama3*".to_owned(), "qwen2.5:7b".to_owned()][..])
    );
    assert_eq!(grants[0].limit.as_deref(), Some("60/60s"));
    assert_eq!(limits.len(), 3);
    assert_eq!(limits[0].route_id, None);

    let json =
        serde_json::to_value((&routes[0], &team_a, &keys[0], &grants[0], &limits[0])).unwrap();
    let fields = |i: usize| -> Vec<String> {
        let mut names: Vec<String> = json[i].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(
        fields(0),
        ["domain", "id", "methods", "path", "priority", "service"]
    );
    assert_eq!(
        fields(1),
        [
            "burst",
            "has_basic_secret",
            "has_hmac_secret",
            "id",
            "key_count",
            "limit",
            "metadata",
            "name",
            "status"
        ]
    );
    assert_eq!(
        fields(2),
        [
            "client_id",
            "created_at",
            "expires_at",
            "id",
            "label",
            "last_used_at",
            "status"
        ]
    );
    assert_eq!(
        fields(3),
        [
            "burst",
            "client_id",
            "limit",
            "methods",
            "models",
            "route_id"
        ]
    );
    assert_eq!(fields(4), ["burst", "client_id", "limit", "route_id"]);
    let text = json.to_string();
    assert!(!text.contains(&hex::encode(sample().keys[0].digest.0)));
    assert!(!text.contains(&bcrypt_hash()));
}

#[tokio::test]
async fn clearing_secrets_removes_both_and_says_whether_there_were_any() {
    let (_db, client) = seeded().await;

    assert!(store::clear_secrets(&client, "team-a").await.unwrap());
    assert!(!store::clear_secrets(&client, "team-a").await.unwrap());

    let doc = load(&client).await;
    assert_eq!(doc.clients[0].secret_hash, None);
    assert_eq!(doc.clients[0].hmac_secret, None);
}
