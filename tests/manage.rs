//! The management commands (DESIGN §7) against a real, freshly migrated
//! PostgreSQL: what they print (`--json` with the store's stable field
//! names), what they store (digests, bcrypt hashes, sealed secrets — never
//! the key or secret itself), and the errors that name the problem.

mod common;
mod pg;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{poll_until, Gatekeeper, Req};
use gatekeeper::core::model::Digest;
use gatekeeper::core::seal::{self, MasterKey};
use pg::TestDb;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const MASTER_KEY_HEX: &str = "4242424242424242424242424242424242424242424242424242424242424242";

/// What a failed command left behind: its exit code and its message.
#[derive(Debug)]
struct Failure {
    code: Option<i32>,
    stderr: String,
}

impl Failure {
    fn exit_code(&self) -> i32 {
        self.code.unwrap_or(-1)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.stderr)
    }
}

/// Runs `gatekeeper ARGS…` against `db` and returns what it printed.
async fn gk(db: &TestDb, args: &[&str]) -> Result<String, Failure> {
    gk_with(db, args, Some(MASTER_KEY_HEX), b"").await
}

/// The real binary, with `db` as GATEKEEPER_DATABASE_URL and `stdin`.
async fn gk_with(
    db: &TestDb,
    args: &[&str],
    master_key: Option<&str>,
    stdin: &[u8],
) -> Result<String, Failure> {
    let mut env = vec![("GATEKEEPER_DATABASE_URL", db.url.as_str())];
    if let Some(key) = master_key {
        env.push(("GATEKEEPER_MASTER_KEY", key));
    }
    let out = common::run(args, &env, Some(stdin));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    match out.status.success() {
        true => Ok(stdout),
        false => Err(Failure {
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
    }
}

async fn gk_json(db: &TestDb, args: &[&str]) -> Value {
    let text = gk(db, args)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
}

async fn gk_ok(db: &TestDb, args: &[&str]) -> String {
    gk(db, args)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

async fn gk_err(db: &TestDb, args: &[&str]) -> Failure {
    match gk(db, args).await {
        Ok(out) => panic!("{args:?} succeeded: {out}"),
        Err(e) => e,
    }
}

fn fields(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

async fn chat_route(db: &TestDb) {
    gk_ok(
        db,
        &[
            "route",
            "create",
            "--id",
            "chat",
            "--domain",
            "api.example.com",
            "--path",
            "/v1/chat/*",
            "--service",
            "openai",
            "--priority",
            "5",
            "--method",
            "GET=public",
            "--method",
            "POST=api_key,basic",
        ],
    )
    .await;
}

async fn team_a(db: &TestDb) {
    gk_ok(
        db,
        &["client", "create", "--id", "team-a", "--name", "Team A"],
    )
    .await;
}

#[tokio::test]
async fn a_route_reads_back_from_list_and_show_with_its_stable_fields() {
    let db = TestDb::new().await;
    chat_route(&db).await;
    let expected = json!({
        "id": "chat", "domain": "api.example.com", "path": "/v1/chat/*", "service": "openai",
        "priority": 5, "methods": {"GET": ["public"], "POST": ["api_key", "basic"]},
    });
    assert_eq!(
        gk_json(&db, &["route", "show", "chat", "--json"]).await,
        expected
    );
    assert_eq!(
        gk_json(&db, &["route", "list", "--json"]).await,
        json!([expected])
    );
    let table = gk_ok(&db, &["route", "list"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID    DOMAIN"), "{table}");
    assert!(
        lines[1].contains("GET=public POST=api_key,basic"),
        "{table}"
    );
}

#[tokio::test]
async fn route_update_changes_the_flags_given_and_replaces_methods_only_with_method() {
    let db = TestDb::new().await;
    chat_route(&db).await;
    gk_ok(&db, &["route", "update", "chat", "--service", "vllm"]).await;
    let row = gk_json(&db, &["route", "show", "chat", "--json"]).await;
    assert_eq!(row["service"], "vllm");
    assert_eq!(row["path"], "/v1/chat/*");
    assert_eq!(row["methods"].as_object().unwrap().len(), 2);
    gk_ok(&db, &["route", "update", "chat", "--method", "*=hmac"]).await;
    let row = gk_json(&db, &["route", "show", "chat", "--json"]).await;
    assert_eq!(row["methods"], json!({"*": ["hmac"]}));
    gk_ok(&db, &["route", "delete", "chat"]).await;
    let e = gk_err(&db, &["route", "show", "chat"]).await;
    assert!(e.to_string().contains("route `chat` does not exist"), "{e}");
}

#[tokio::test]
async fn a_second_route_on_the_same_domain_and_path_is_refused_naming_the_place() {
    let db = TestDb::new().await;
    chat_route(&db).await;
    let e = gk_err(
        &db,
        &[
            "route",
            "create",
            "--id",
            "chat2",
            "--domain",
            "api.example.com",
            "--path",
            "/v1/chat/*",
            "--service",
            "other",
        ],
    )
    .await;
    let text = e.to_string();
    assert!(text.contains("api.example.com/v1/chat/*"), "{text}");
    assert!(text.contains("already exists"), "{text}");
    assert_eq!(e.exit_code(), 1);
}

#[tokio::test]
async fn invalid_route_flags_are_usage_errors_that_name_the_flag() {
    let db = TestDb::new().await;
    let args = [
        "route",
        "create",
        "--id",
        "r",
        "--domain",
        "api.example.com",
        "--path",
        "/x",
        "--service",
        "s",
        "--method",
        "GET=jwt",
    ];
    let e = gk_err(&db, &args).await;
    assert_eq!(e.exit_code(), 64);
    assert!(e.to_string().contains("GET=jwt"), "{e}");
    let e = gk_err(
        &db,
        &[
            "route",
            "create",
            "--id",
            "r",
            "--path",
            "/x",
            "--service",
            "s",
        ],
    )
    .await;
    assert!(e.to_string().contains("--domain"), "{e}");
}

#[tokio::test]
async fn a_client_reads_back_from_list_and_show_with_its_stable_fields() {
    let db = TestDb::new().await;
    let created = gk_json(
        &db,
        &[
            "client", "create", "--id", "team-a", "--name", "Team A", "--json",
        ],
    )
    .await;
    let expected = json!({
        "id": "team-a", "name": "Team A", "status": "active", "limit": null, "burst": null,
        "has_basic_secret": false, "has_hmac_secret": false, "key_count": 0, "metadata": {},
    });
    assert_eq!(created, expected);
    assert_eq!(
        gk_json(&db, &["client", "show", "team-a", "--json"]).await,
        expected
    );
    assert_eq!(
        gk_json(&db, &["client", "list", "--json"]).await,
        json!([expected])
    );
}

#[tokio::test]
async fn a_client_created_without_an_id_gets_a_uuid() {
    let db = TestDb::new().await;
    let row = gk_json(&db, &["client", "create", "--name", "Anon", "--json"]).await;
    assert_eq!(row["id"].as_str().unwrap().len(), 36, "{row}");
}

#[tokio::test]
async fn suspend_revoke_and_activate_change_the_client_status() {
    let db = TestDb::new().await;
    team_a(&db).await;
    for (command, status) in [
        ("suspend", "suspended"),
        ("revoke", "revoked"),
        ("activate", "active"),
    ] {
        let out = gk_ok(&db, &["client", command, "team-a"]).await;
        assert!(out.contains(status), "{out}");
        let row = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
        assert_eq!(row["status"], status);
    }
    gk_ok(&db, &["client", "update", "team-a", "--name", "Team Alpha"]).await;
    let row = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
    assert_eq!(row["name"], "Team Alpha");
    let e = gk_err(&db, &["client", "suspend", "nobody"]).await;
    assert!(
        e.to_string().contains("client `nobody` does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn key_create_for_an_unknown_client_names_the_client() {
    let db = TestDb::new().await;
    let e = gk_err(&db, &["key", "create", "--client", "nobody"]).await;
    let text = e.to_string();
    assert!(text.contains("nobody"), "{text}");
    assert!(text.contains("client"), "{text}");
    assert_eq!(e.exit_code(), 1);
}

#[tokio::test]
async fn a_created_key_is_printed_once_and_only_its_digest_is_stored() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let created = gk_json(
        &db,
        &[
            "key",
            "create",
            "--client",
            "team-a",
            "--label",
            "ci",
            "--expires-at",
            "2030-01-01T00:00:00Z",
            "--json",
        ],
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("gk_"), "{key}");
    assert_eq!(created["client_id"], "team-a");
    assert_eq!(created["expires_at"], "2030-01-01T00:00:00Z");

    let c = db.client().await;
    let row = c
        .query_one("SELECT digest FROM gk_api_keys WHERE id = $1", &[&id])
        .await
        .unwrap();
    let stored: Vec<u8> = row.get(0);
    assert_eq!(stored, Digest::of(key.as_bytes()).0);

    let shown = gk_ok(&db, &["key", "show", &id, "--json"]).await;
    assert!(
        !shown.contains(&key) && !shown.contains(&key[3..]),
        "{shown}"
    );
    assert!(!shown.contains(&hex::encode(&stored)), "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let names = [
        "id",
        "client_id",
        "label",
        "status",
        "expires_at",
        "last_used_at",
        "created_at",
    ];
    assert_eq!(fields(&shown), set(&names));
    assert_eq!(shown["label"], "ci");
    let listed = gk_json(&db, &["key", "list", "--client", "team-a", "--json"]).await;
    assert_eq!(listed, json!([shown]));
    let table = gk_ok(&db, &["key", "list"]).await;
    assert!(table.contains(&id) && !table.contains(&key), "{table}");
}

#[tokio::test]
async fn key_revoke_and_delete_change_the_stored_key() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let created = gk_json(&db, &["key", "create", "--client", "team-a", "--json"]).await;
    let id = created["id"].as_str().unwrap();
    gk_ok(&db, &["key", "revoke", id]).await;
    let row = gk_json(&db, &["key", "show", id, "--json"]).await;
    assert_eq!(row["status"], "revoked");
    gk_ok(&db, &["key", "delete", id]).await;
    let e = gk_err(&db, &["key", "show", id]).await;
    assert!(
        e.to_string()
            .contains(&format!("key `{id}` does not exist")),
        "{e}"
    );
}

#[tokio::test]
async fn key_rotate_gives_the_old_key_an_expiry_after_the_grace_and_prints_a_new_active_key() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let old = gk_json(
        &db,
        &[
            "key", "create", "--client", "team-a", "--label", "prod", "--json",
        ],
    )
    .await;
    let old_id = old["id"].as_str().unwrap();
    let rotated = gk_json(&db, &["key", "rotate", old_id, "--grace", "2h", "--json"]).await;
    let new_key = rotated["key"].as_str().unwrap();
    assert!(new_key.starts_with("gk_") && new_key != old["key"].as_str().unwrap());
    assert_ne!(rotated["id"], old["id"]);
    assert_eq!(rotated["client_id"], "team-a");
    assert_eq!(rotated["label"], "prod");
    assert_eq!(rotated["status"], "active");
    assert_eq!(rotated["expires_at"], Value::Null);

    let old_now = gk_json(&db, &["key", "show", old_id, "--json"]).await;
    assert_eq!(old_now["status"], "active");
    let expires = OffsetDateTime::parse(old_now["expires_at"].as_str().unwrap(), &Rfc3339)
        .unwrap()
        .unix_timestamp();
    let want = OffsetDateTime::now_utc().unix_timestamp() + 2 * 3600;
    assert!(
        (expires - want).abs() <= 60,
        "expires {expires}, want ≈ {want}"
    );
    assert_eq!(rotated["replaces"], old_now);

    let keys = gk_json(&db, &["key", "list", "--client", "team-a", "--json"]).await;
    assert_eq!(keys.as_array().unwrap().len(), 2);

    gk_ok(&db, &["key", "revoke", old_id]).await;
    let e = gk_err(&db, &["key", "rotate", old_id]).await;
    assert!(e.to_string().contains("is revoked"), "{e}");
}

#[tokio::test]
async fn key_rotate_defaults_to_a_day_of_grace() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let old = gk_json(&db, &["key", "create", "--client", "team-a", "--json"]).await;
    let old_id = old["id"].as_str().unwrap();
    gk_ok(&db, &["key", "rotate", old_id]).await;
    let row = gk_json(&db, &["key", "show", old_id, "--json"]).await;
    let expires = OffsetDateTime::parse(row["expires_at"].as_str().unwrap(), &Rfc3339)
        .unwrap()
        .unix_timestamp();
    let want = OffsetDateTime::now_utc().unix_timestamp() + 24 * 3600;
    assert!(
        (expires - want).abs() <= 60,
        "expires {expires}, want ≈ {want}"
    );
}

#[tokio::test]
async fn an_hmac_secret_is_printed_once_and_stored_only_sealed() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let out = gk(&db, &["client", "secret", "set", "team-a", "--hmac"])
        .await
        .unwrap();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("hmac secret: "))
        .unwrap_or_else(|| panic!("no secret printed: {out}"))
        .trim()
        .to_owned();
    assert!(secret.len() >= 43, "{secret}");

    let c = db.client().await;
    let row = c
        .query_one(
            "SELECT hmac_secret_sealed FROM gk_client_secrets WHERE client_id = 'team-a'",
            &[],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(0);
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&sealed, secret.as_bytes()));
    let key = MasterKey::parse(MASTER_KEY_HEX).unwrap();
    let opened = seal::open(&key, "team-a", &sealed).unwrap();
    assert_eq!(opened.expose(), secret.as_bytes());
    let row = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
    assert_eq!(row["has_hmac_secret"], true);
    assert!(!row.to_string().contains(&secret));
}

#[tokio::test]
async fn an_hmac_secret_without_a_master_key_is_a_usage_error_naming_it() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let args = ["client", "secret", "set", "team-a", "--hmac"];
    for master_key in [None, Some("not-a-key")] {
        let e = gk_with(&db, &args, master_key, b"").await.unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("GATEKEEPER_MASTER_KEY"), "{e}");
        assert!(!e.to_string().contains("not-a-key"), "{e}");
    }
    let row = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
    assert_eq!(row["has_hmac_secret"], false);
}

#[tokio::test]
async fn a_basic_secret_is_read_from_stdin_and_stored_as_a_bcrypt_hash() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let args = [
        "client", "secret", "set", "team-a", "--basic", "--cost", "4",
    ];
    let out = gk_with(&db, &args, None, b"correct horse\n").await.unwrap();
    assert!(!out.contains("correct horse"), "{out}");
    let c = db.client().await;
    let hash: String = c
        .query_one(
            "SELECT bcrypt_hash FROM gk_client_secrets WHERE client_id = 'team-a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(bcrypt::verify("correct horse", &hash).unwrap());
    let row = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
    assert_eq!(row["has_basic_secret"], true);

    let out = gk_ok(&db, &["client", "secret", "clear", "team-a"]).await;
    assert!(out.contains("cleared"), "{out}");
    let row = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
    assert_eq!(row["has_basic_secret"], false);
    let e = gk_with(&db, &args, None, b"\n").await.unwrap_err();
    assert_eq!(e.exit_code(), 64);
}

#[tokio::test]
async fn a_grant_reads_back_with_its_stable_fields_and_updates_in_place() {
    let db = TestDb::new().await;
    chat_route(&db).await;
    team_a(&db).await;
    let created = gk_json(
        &db,
        &[
            "grant", "create", "--client", "team-a", "--route", "chat", "--method", "POST",
            "--method", "GET", "--model", "llama3*", "--limit", "60/1m", "--burst", "10", "--json",
        ],
    )
    .await;
    let expected = json!([{
        "client_id": "team-a", "route_id": "chat", "methods": ["POST", "GET"],
        "models": ["llama3*"], "limit": "60/60s", "burst": 10,
    }]);
    assert_eq!(created, expected);
    assert_eq!(gk_json(&db, &["grant", "list", "--json"]).await, expected);
    assert_eq!(
        gk_json(&db, &["grant", "list", "--client", "team-a", "--json"]).await,
        expected
    );

    let args = [
        "grant",
        "update",
        "--client",
        "team-a",
        "--route",
        "chat",
        "--method",
        "*",
        "--any-model",
        "--json",
    ];
    let updated = gk_json(&db, &args).await;
    assert_eq!(updated[0]["methods"], json!(["*"]));
    assert_eq!(updated[0]["models"], Value::Null);
    assert_eq!(
        updated[0]["limit"], "60/60s",
        "the limit is kept when not given"
    );

    let e = gk_err(
        &db,
        &[
            "grant", "create", "--client", "team-a", "--route", "nowhere", "--method", "GET",
        ],
    )
    .await;
    assert!(e.to_string().contains("nowhere"), "{e}");
    gk_ok(
        &db,
        &["grant", "delete", "--client", "team-a", "--route", "chat"],
    )
    .await;
    assert_eq!(gk_json(&db, &["grant", "list", "--json"]).await, json!([]));
}

#[tokio::test]
async fn limit_set_replaces_the_limit_it_set_before() {
    let db = TestDb::new().await;
    chat_route(&db).await;
    team_a(&db).await;
    gk_ok(&db, &["limit", "set", "--client", "team-a", "600/1m"]).await;
    gk_ok(
        &db,
        &[
            "limit", "set", "--client", "team-a", "100/1s", "--burst", "5",
        ],
    )
    .await;
    let expected =
        json!([{"client_id": "team-a", "route_id": null, "limit": "100/1s", "burst": 5}]);
    assert_eq!(gk_json(&db, &["limit", "list", "--json"]).await, expected);
    let client = gk_json(&db, &["client", "show", "team-a", "--json"]).await;
    assert_eq!(
        (&client["limit"], &client["burst"]),
        (&json!("100/1s"), &json!(5))
    );

    gk_ok(
        &db,
        &[
            "grant", "create", "--client", "team-a", "--route", "chat", "--method", "POST",
        ],
    )
    .await;
    gk_ok(
        &db,
        &[
            "limit", "set", "--client", "team-a", "--route", "chat", "10/1m",
        ],
    )
    .await;
    let limits = gk_json(&db, &["limit", "list", "--json"]).await;
    assert_eq!(limits.as_array().unwrap().len(), 2, "{limits}");
    assert_eq!(limits[1]["route_id"], "chat");

    gk_ok(&db, &["limit", "delete", "--client", "team-a"]).await;
    let limits = gk_json(&db, &["limit", "list", "--json"]).await;
    assert_eq!(limits.as_array().unwrap().len(), 1, "{limits}");
    let e = gk_err(&db, &["limit", "delete", "--client", "team-a"]).await;
    assert!(e.to_string().contains("team-a"), "{e}");
    let e = gk_err(&db, &["limit", "set", "--client", "team-a", "lots"]).await;
    assert_eq!(e.exit_code(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_with_key_create_is_allowed_and_refused_within_a_second_of_key_revoke() {
    let db = TestDb::new().await;
    gk_ok(
        &db,
        &[
            "route",
            "create",
            "--id",
            "chat",
            "--domain",
            "*",
            "--path",
            "/v1/*",
            "--service",
            "openai",
            "--method",
            "POST=api_key",
        ],
    )
    .await;
    team_a(&db).await;
    gk_ok(
        &db,
        &[
            "grant", "create", "--client", "team-a", "--route", "chat", "--method", "POST",
        ],
    )
    .await;
    let created = gk_json(&db, &["key", "create", "--client", "team-a", "--json"]).await;
    let (key, id) = (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let gk_serve = Gatekeeper::start_postgres(&[("GATEKEEPER_DATABASE_URL", db.url.as_str())]);
    let chat = || gk_serve.send(&Req::new("POST", "/v1/chat/completions").bearer(&key));
    assert_eq!(chat().status, 200, "{:?}", chat());

    gk_ok(&db, &["key", "revoke", &id]).await;
    let refused = poll_until(Duration::from_secs(1), || chat().status != 200);
    assert!(refused, "still allowed a second after `key revoke`");
}

#[tokio::test]
async fn an_existing_hmac_secret_is_accepted_from_stdin_sealed_and_never_printed() {
    let db = TestDb::new().await;
    team_a(&db).await;
    let args = ["client", "secret", "set", "team-a", "--hmac", "--stdin"];
    let given = "legacy-shared-secret-from-api-gatekeeper";
    let key = MASTER_KEY_HEX;
    let out = gk_with(&db, &args, Some(key), format!("{given}\n").as_bytes())
        .await
        .unwrap();
    assert!(!out.contains(given), "{out}");
    let sealed: Vec<u8> = db
        .client()
        .await
        .query_one(
            "SELECT hmac_secret_sealed FROM gk_client_secrets WHERE client_id = 'team-a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let opened = seal::open(&MasterKey::parse(key).unwrap(), "team-a", &sealed).unwrap();
    assert_eq!(
        opened.expose(),
        given.as_bytes(),
        "the newline is not part of it"
    );

    let e = gk_with(&db, &args, Some(key), b"too-short\n")
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 64);
    assert!(e.to_string().contains("16 characters"), "{e}");
    assert!(!e.to_string().contains("too-short"), "{e}");
    let e = gk_with(&db, &args, Some(key), b"").await.unwrap_err();
    assert_eq!(e.exit_code(), 64);
}

#[tokio::test]
async fn a_bring_your_own_token_rule_is_stored_and_served_and_never_alone() {
    let db = TestDb::new().await;
    chat_route(&db).await;
    let byo = [
        "route",
        "update",
        "chat",
        "--method",
        "POST=api_key,provider_token",
    ];
    gk_ok(&db, &byo).await;
    let row = gk_json(&db, &["route", "show", "chat", "--json"]).await;
    assert_eq!(
        row["methods"],
        json!({"POST": ["api_key", "provider_token"]})
    );
    let doc = gatekeeper::db::store::load_document(&db.client().await, None)
        .await
        .unwrap();
    let rule = doc.routes[0].methods.values().next().copied().unwrap();
    assert_eq!(rule.names(), ["api_key", "provider_token"]);

    let alone = ["route", "update", "chat", "--method", "POST=provider_token"];
    let e = gk_err(&db, &alone).await;
    assert!(e.to_string().contains("identifies the client"), "{e}");
    // The database refuses it too, whoever writes.
    let sql =
        "UPDATE gk_route_methods SET credentials = '{provider_token}' WHERE route_id = 'chat'";
    assert!(db.client().await.execute(sql, &[]).await.is_err());
}
