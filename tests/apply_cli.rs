//! `gatekeeper apply` through the real binary: the GitOps path from the
//! annotated example file to a serving replica.

mod common;
mod pg;

use common::{Gatekeeper, Req};
use pg::TestDb;

const DEMO_KEY: &str = "gk_sh92javii9sd_I8WbNLUqvXdscDvSRQdWtDbJAQmir7Cu1ubU0I";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_applies_once_then_changes_nothing_and_a_replica_serves_it() {
    let db = TestDb::new().await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gatekeeper.toml");
    let master_key = "ab".repeat(32);
    let env = [
        ("GATEKEEPER_DATABASE_URL", db.url.as_str()),
        ("GATEKEEPER_MASTER_KEY", master_key.as_str()),
        ("DEMO_OPS_HMAC_SECRET", "demo-hmac-secret"),
    ];
    let first = common::run(&["apply", example], &env, None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("+ route ollama-chat"));
    let second = common::run(&["apply", example], &env, None);
    assert!(second.status.success());
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "nothing to change"
    );

    let replica = Gatekeeper::start_postgres(&env[..2]);
    let r = replica.send(
        &Req::new("GET", "/v1/models")
            .host("llm.example.com")
            .bearer(DEMO_KEY),
    );
    assert_eq!(
        (r.status, r.header("x-auth-client-id")),
        (200, Some("demo-app"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_with_exit_65_before_touching_the_database() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[grant]]\nclient = \"nobody\"\nroute = \"nowhere\"\nmethods = [\"GET\"]\n",
    )
    .unwrap();
    let out = common::run(
        &["apply", file.to_str().unwrap()],
        &[("GATEKEEPER_DATABASE_URL", db.url.as_str())],
        None,
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}
