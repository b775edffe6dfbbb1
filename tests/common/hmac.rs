//! One HMAC client for the suites that sign: the `ops` client, its secret,
//! a policy with an hmac-only route, and `gatekeeper sign` as a client runs it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The shared secret of `ops`, given to gatekeeper as `OPS_SECRET`.
pub const OPS_SECRET: &str = "ops-shared-secret";

/// `/api/*` accepts only HMAC, for GET and POST, granted to `ops`.
pub const OPS_POLICY: &str = r#"
[[route]]
id = "admin"
domain = "*"
path = "/api/*"
service = "ollama"
[route.methods]
GET = ["hmac"]
POST = ["hmac"]

[[client]]
id = "ops"
name = "Operations"
hmac_secret = { env = "OPS_SECRET" }

[[grant]]
client = "ops"
route = "admin"
methods = ["GET", "POST"]
"#;

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The `Authorization` value `gatekeeper sign` prints for `ops`; its
/// secret and body files are written into `dir`.
pub fn sign(
    dir: &Path,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> String {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{OPS_SECRET}\n")).unwrap();
    let body_file = dir.join("body");
    std::fs::write(&body_file, body).unwrap();
    let ts = timestamp.to_string();
    let args = [
        "sign",
        "--client",
        "ops",
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--method",
        method,
        "--path",
        path,
        "--body-file",
        body_file.to_str().unwrap(),
        "--timestamp",
        &ts,
        "--nonce",
        nonce,
    ];
    let out = super::run(&args, &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim()
        .strip_prefix("Authorization: ")
        .expect("an Authorization line")
        .to_owned()
}
