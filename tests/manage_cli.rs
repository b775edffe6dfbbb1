//! The management commands through the real binary, end to end: what the
//! CLI writes is what every replica decides on.

mod common;
mod pg;

use std::time::Duration;

use common::{poll_until, Gatekeeper, Req};
use pg::TestDb;

fn gk(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let out = common::run(args, &[("GATEKEEPER_DATABASE_URL", db.url.as_str())], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_with_the_cli_are_honoured_by_a_running_replica() {
    let db = TestDb::new().await;
    gk(
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
    );
    gk(
        &db,
        &["client", "create", "--id", "team-a", "--name", "Team A"],
    );
    gk(
        &db,
        &[
            "grant", "create", "--client", "team-a", "--route", "chat", "--method", "POST",
        ],
    );
    let replica = Gatekeeper::start_postgres(&[("GATEKEEPER_DATABASE_URL", db.url.as_str())]);

    let created = gk(&db, &["key", "create", "--client", "team-a", "--json"]);
    let key = created["key"]
        .as_str()
        .expect("the key is printed once")
        .to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let chat = || replica.send(&Req::new("POST", "/v1/chat/completions").bearer(&key));
    let r = chat();
    assert_eq!(
        (r.status, r.header("x-auth-key-id")),
        (200, Some(id.as_str()))
    );

    let shown = gk(&db, &["key", "show", &id, "--json"]).to_string();
    assert!(!shown.contains(&key), "show never reveals the key");

    gk(&db, &["key", "revoke", &id]);
    assert!(poll_until(Duration::from_secs(1), || chat().reason() == "key_revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_route_is_refused_naming_the_problem() {
    let db = TestDb::new().await;
    let route = [
        "route",
        "create",
        "--id",
        "a",
        "--domain",
        "api.example.com",
        "--path",
        "/x/*",
        "--service",
        "s",
        "--method",
        "GET=public",
    ];
    gk(&db, &route);
    let mut again = route;
    again[3] = "b";
    let out = common::run(
        &again,
        &[("GATEKEEPER_DATABASE_URL", db.url.as_str())],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
}
