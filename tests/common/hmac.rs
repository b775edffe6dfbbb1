//! One HMAC client for the suites that sign: the `ops` client, its secret,
//! a policy with an hmac-only route, and `gatekeeper sign` as a client runs it.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The current Unix second, once it is later than the second every
/// gatekeeper this binary started was up by ([`super::LATEST_START`]): an
/// in-process nonce store refuses timestamps up to the second its memory
/// began (with `GATEKEEPER_HMAC_MAX_AHEAD=0s`, as the tests run), so a
/// request signed now is one a freshly started gatekeeper accepts. Waits
/// under a second.
pub fn now() -> i64 {
    loop {
        let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let secs = elapsed.as_secs() as i64;
        if secs > super::LATEST_START.load(Ordering::SeqCst) {
            return secs;
        }
        let to_next = Duration::from_nanos(1_000_000_000 - u64::from(elapsed.subsec_nanos()));
        std::thread::sleep(to_next + Duration::from_millis(5));
    }
}

/// [`now`], once it is also later than the epoch marker a Redis that had
/// none records when a gatekeeper starts on it (its start second + 1):
/// for a Redis the test did not prepare (a cluster's buckets). Waits under
/// two seconds.
#[allow(dead_code)]
pub fn now_after_redis_epoch() -> i64 {
    loop {
        let secs = now();
        if secs > super::LATEST_START.load(Ordering::SeqCst) + 1 {
            return secs;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The current Unix second, without waiting.
pub fn unix_now() -> i64 {
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
    let args = sign_args(
        dir,
        ("ops", OPS_SECRET),
        method,
        path,
        body,
        timestamp,
        nonce,
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = super::run(&args, &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    authorization(&String::from_utf8(out.stdout).unwrap())
}

/// The arguments of `gatekeeper sign` for `client` holding `secret`; the
/// secret and body files are written into `dir`.
pub fn sign_args(
    dir: &Path,
    (client, secret): (&str, &str),
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Vec<String> {
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let body_file = dir.join("body");
    std::fs::write(&body_file, body).unwrap();
    let file = |p: &Path| p.to_str().unwrap().to_owned();
    let args = [
        "sign",
        "--client",
        client,
        "--secret-file",
        &file(&secret_file),
        "--method",
        method,
        "--path",
        path,
        "--body-file",
        &file(&body_file),
        "--timestamp",
        &timestamp.to_string(),
        "--nonce",
        nonce,
    ];
    args.map(str::to_owned).to_vec()
}

/// The header value in `gatekeeper sign`'s output line.
pub fn authorization(output: &str) -> String {
    output
        .trim()
        .strip_prefix("Authorization: ")
        .expect("an Authorization line")
        .to_owned()
}
