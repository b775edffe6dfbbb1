//! The audit log (`GATEKEEPER_AUDIT=postgres`) on the real binary and the
//! real PostgreSQL, a fresh database per test: every decision makes one row
//! and none is lost at 10,000 decisions; a saturated queue drops and counts
//! while every decision is still answered, and the depth gauge shows it;
//! a batch whose answer was lost is written once and counted as written
//! (or, still in doubt at a stop, reported unconfirmed); queued rows are
//! written on a graceful stop; retention deletes old rows; no column ever holds a
//! credential, a prompt or a query; `audit tail|query` read it back.

mod common;
mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::hmac::{self, OPS_SECRET};
use common::{generate_key, metric, run, Gatekeeper, Key, Req};
use pg::TestDb;

/// How long rows may take to appear (a batch waits up to 1 s to fill).
const ROWS_DEADLINE: Duration = Duration::from_secs(30);

fn policy(key: &Key) -> String {
    format!(
        r#"
[[route]]
id = "chat"
domain = "llm.example.com"
path = "/v1/*"
service = "openai"
[route.methods]
POST = ["api_key"]

[[route]]
id = "health"
domain = "*"
path = "/health"
service = "status"
[route.methods]
GET = ["public"]

[[client]]
id = "team-a"
name = "Team A"
{key}
[[grant]]
client = "team-a"
route = "chat"
methods = ["POST"]
"#,
        key = key.toml("active", None)
    )
}

/// Environment that audits into `db` (file mode), with `extra` on top.
fn audit_env<'a>(db: &'a TestDb, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("GATEKEEPER_AUDIT", "postgres"),
        ("GATEKEEPER_AUDIT_DATABASE_URL", db.url.as_str()),
        // Mixed traffic from one address must not turn into 429s.
        ("GATEKEEPER_FAILED_AUTH_LIMIT", "1000000/1s"),
    ];
    env.extend_from_slice(extra);
    env
}

fn start(key: &Key, db: &TestDb, extra: &[(&str, &str)]) -> Gatekeeper {
    Gatekeeper::start_with_env(&policy(key), &audit_env(db, extra))
}

/// The `i`-th request of a mixed stream, with the answer it must get: four
/// kinds, two allows and two denies.
fn mixed(i: usize, key: &Key) -> (Req, u16, &'static str) {
    let id = format!("req-{i}");
    match i % 4 {
        0 => (
            Req::new("POST", "/v1/chat/completions?stream=true")
                .host("LLM.example.com:443")
                .bearer(&key.key)
                .header("X-Request-ID", &id),
            200,
            "authenticated",
        ),
        1 => (
            Req::new("POST", "/v1/chat/completions")
                .host("llm.example.com")
                .header("X-Request-ID", &id),
            401,
            "missing_credentials",
        ),
        2 => (
            Req::get("/nowhere").host("llm.example.com"),
            403,
            "no_route_match",
        ),
        _ => (
            Req::get("/health").host("status.example.com"),
            200,
            "no_auth_required",
        ),
    }
}

// ── A keep-alive client ─────────────────────────────────────────────────────

/// One HTTP/1.1 connection reused for many `/authz` requests, as nginx's
/// upstream keep-alive does.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `req`; returns the status and `X-Auth-Reason`.
    fn send(&mut self, req: &Req) -> (u16, String) {
        let method = if req.body.is_some() { "POST" } else { "GET" };
        let mut out = format!("{method} /authz HTTP/1.1\r\nHost: gatekeeper\r\n").into_bytes();
        for (name, value) in &req.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(body) = &req.body {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(req.body.as_deref().unwrap_or_default());
        self.stream.write_all(&out).expect("send");
        self.read_head()
    }

    /// Reads one response head: `/authz` answers have an empty body.
    fn read_head(&mut self) -> (u16, String) {
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "the connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        assert_eq!(header("content-length").as_deref(), Some("0"), "{head}");
        (
            status.expect("a status"),
            header("x-auth-reason").unwrap_or_default(),
        )
    }
}

/// Sends requests `0..total` made by `make` over `connections` keep-alive
/// connections at once, asserting every answer.
fn send_all(
    addr: SocketAddr,
    connections: usize,
    total: usize,
    make: impl Fn(usize) -> (Req, u16, &'static str) + Sync,
) {
    std::thread::scope(|s| {
        for c in 0..connections {
            let make = &make;
            s.spawn(move || {
                let mut conn = Conn::open(addr);
                for i in (c..total).step_by(connections) {
                    let (req, status, reason) = make(i);
                    let got = conn.send(&req);
                    assert_eq!(got, (status, reason.to_owned()), "request {i}");
                }
            });
        }
    });
}

// ── Reading the table and the metrics ───────────────────────────────────────

async fn count(db: &TestDb, filter: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM gk_audit WHERE {filter}");
    db.client().await.query_one(&sql, &[]).await.unwrap().get(0)
}

/// Polls `done` until it holds or `ROWS_DEADLINE` passes; true when it held.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + ROWS_DEADLINE;
    loop {
        if done().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn audit_metric(gk: &Gatekeeper, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&gk.metrics(), name, labels)
}

// ── Volume, saturation, shutdown ────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_decisions_make_ten_thousand_rows() {
    const TOTAL: usize = 10_000;
    let key = generate_key();
    let db = TestDb::new().await;
    let gk = start(&key, &db, &[]);

    let sending = std::time::Instant::now();
    send_all(gk.authz_addr, 4, TOTAL, |i| mixed(i, &key));
    let sent = sending.elapsed();

    let written = eventually(async || count(&db, "true").await >= TOTAL as i64).await;
    assert!(written, "rows: {}", count(&db, "true").await);
    assert_eq!(count(&db, "true").await, TOTAL as i64);
    eprintln!(
        "{TOTAL} decisions sent in {sent:?}; all {TOTAL} rows written {:?} after the first",
        sending.elapsed()
    );
    let rows = db
        .client()
        .await
        .query(
            "SELECT decision, reason, count(*) FROM gk_audit GROUP BY 1, 2 ORDER BY 2",
            &[],
        )
        .await
        .unwrap();
    let tally: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let quarter = (TOTAL / 4) as i64;
    let expected = [
        ("allow", "authenticated"),
        ("deny", "missing_credentials"),
        ("allow", "no_auth_required"),
        ("deny", "no_route_match"),
    ]
    .map(|(d, r)| (d.to_owned(), r.to_owned(), quarter));
    assert_eq!(tally, expected);

    // Each kind of request left exactly the row it should.
    let authenticated = format!(
        "decision = 'allow' AND reason = 'authenticated' AND client_id = 'team-a' \
         AND key_id = '{}' AND route_id = 'chat' AND method = 'POST' \
         AND host = 'llm.example.com' AND path = '/v1/chat/completions' \
         AND request_id ~ '^req-[0-9]+$' AND source = '127.0.0.1' AND duration_us >= 0",
        key.id
    );
    assert_eq!(count(&db, &authenticated).await, quarter);
    let denied = "reason = 'missing_credentials' AND route_id = 'chat' AND client_id IS NULL \
                  AND key_id IS NULL AND request_id ~ '^req-[0-9]+$'";
    assert_eq!(count(&db, denied).await, quarter);
    let no_route = "reason = 'no_route_match' AND route_id IS NULL AND path = '/nowhere' \
                    AND method = 'GET' AND request_id IS NULL";
    assert_eq!(count(&db, no_route).await, quarter);
    assert_eq!(count(&db, "path LIKE '%?%'").await, 0, "a query was kept");
    let distinct: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT request_id) FROM gk_audit WHERE request_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 2 * quarter, "one row per decision, none twice");

    let text = gk.metrics();
    assert_eq!(
        metric(&text, "gatekeeper_audit_written_total", &[]),
        TOTAL as f64
    );
    assert_eq!(metric(&text, "gatekeeper_audit_dropped_total", &[]), 0.0);
    assert_eq!(
        metric(&text, "gatekeeper_audit_write_errors_total", &[]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_queue_drops_and_counts_and_every_decision_is_still_answered() {
    const TOTAL: usize = 3_000;
    const QUEUE: usize = 10;
    let key = generate_key();
    let db = TestDb::new().await;
    let gk = start(&key, &db, &[("GATEKEEPER_AUDIT_QUEUE", "10")]);

    // The writer blocks on its INSERT while this lock is held: the queue
    // fills, whatever the machine's speed, and decisions must not notice.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE gk_audit IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    send_all(gk.authz_addr, 4, TOTAL, |i| mixed(i, &key));

    let full = metric(
        &gk.metrics(),
        "gatekeeper_audit_dropped_total",
        &[("cause", "queue_full")],
    );
    // At most one batch in the writer's hands and a full queue got through.
    let most_kept = 1000 + QUEUE;
    assert!(
        full >= (TOTAL - most_kept) as f64,
        "dropped only {full} of {TOTAL}"
    );
    lock.rollback().await.unwrap();

    // Every decision is a row or a drop: none lost without being counted.
    let settled = eventually(async || {
        let rows = count(&db, "true").await as f64;
        let dropped = audit_metric(&gk, "gatekeeper_audit_dropped_total", &[]);
        rows + dropped == TOTAL as f64
    })
    .await;
    let rows = count(&db, "true").await;
    let text = gk.metrics();
    assert!(settled, "rows {rows}, metrics:\n{text}");
    eprintln!(
        "{TOTAL} decisions, queue {QUEUE}, writer blocked: {rows} rows, {} dropped",
        metric(&text, "gatekeeper_audit_dropped_total", &[])
    );
    assert!(rows > 0 && rows <= most_kept as i64, "rows {rows}");
    assert_eq!(
        metric(&text, "gatekeeper_audit_written_total", &[]),
        rows as f64
    );
    assert_eq!(
        metric(&text, "gatekeeper_audit_write_errors_total", &[]),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            "gatekeeper_audit_dropped_total",
            &[("cause", "write_failed")]
        ),
        0.0
    );
    // Once the writer caught up, nothing waits.
    assert!(
        eventually(async || audit_metric(&gk, "gatekeeper_audit_queue_depth", &[]) == 0.0).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_depth_gauge_shows_a_full_queue_while_the_writer_waits() {
    const QUEUE: usize = 10;
    let key = generate_key();
    let db = TestDb::new().await;
    let gk = start(&key, &db, &[("GATEKEEPER_AUDIT_QUEUE", "10")]);
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE gk_audit IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // A first batch, then the writer waits on the lock (retention's DELETE
    // may wait too: the writer's INSERT is the one to wait for)…
    send_all(gk.authz_addr, 1, 5, |i| mixed(i, &key));
    let waiting = eventually(async || {
        let sql = "SELECT count(*) FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO gk_audit_batch%'";
        let n: i64 = db.client().await.query_one(sql, &[]).await.unwrap().get(0);
        n > 0
    })
    .await;
    assert!(waiting, "the writer never waited on the lock");
    // …while the queue fills and drops.
    send_all(gk.authz_addr, 2, 100, |i| mixed(i, &key));
    assert!(
        audit_metric(
            &gk,
            "gatekeeper_audit_dropped_total",
            &[("cause", "queue_full")]
        ) > 0.0
    );
    let shown =
        eventually(async || audit_metric(&gk, "gatekeeper_audit_queue_depth", &[]) == QUEUE as f64)
            .await;
    assert!(shown, "{}", gk.metrics());
    lock.rollback().await.unwrap();
    assert!(
        eventually(async || audit_metric(&gk, "gatekeeper_audit_queue_depth", &[]) == 0.0).await
    );
}

/// The audit database reached through `proxy`.
fn audit_through(proxy: &common::proxy::Proxy, db: &TestDb) -> String {
    format!(
        "postgres://postgres@{}/{}?connect_timeout=2",
        proxy.addr, db.name
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_was_lost_is_written_once_and_counted_as_written() {
    const FIRST: usize = 20;
    const LOST: usize = 200;
    let key = generate_key();
    let db = TestDb::new().await;
    let proxy = common::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap());
    let url = audit_through(&proxy, &db);
    let gk = Gatekeeper::start_with_env(
        &policy(&key),
        &[
            ("GATEKEEPER_AUDIT", "postgres"),
            ("GATEKEEPER_AUDIT_DATABASE_URL", url.as_str()),
            ("GATEKEEPER_FAILED_AUTH_LIMIT", "1000000/1s"),
        ],
    );
    send_all(gk.authz_addr, 2, FIRST, |i| mixed(i, &key));
    assert!(eventually(async || count(&db, "true").await == FIRST as i64).await);

    // PostgreSQL gets the batch and commits it; its answer never comes back.
    proxy.lose_replies();
    send_all(gk.authz_addr, 2, LOST, |i| mixed(FIRST + i, &key));
    let total = (FIRST + LOST) as i64;
    let committed = eventually(async || count(&db, "true").await == total).await;
    assert!(committed, "rows: {}", count(&db, "true").await);
    assert_eq!(
        audit_metric(&gk, "gatekeeper_audit_written_total", &[]),
        FIRST as f64,
        "no answer yet, nothing confirmed"
    );
    // The connection breaks: the writer cannot know whether it landed.
    proxy.cut();
    proxy.restore();

    let settled = eventually(async || {
        audit_metric(&gk, "gatekeeper_audit_written_total", &[]) == total as f64
    })
    .await;
    let text = gk.metrics();
    assert!(settled, "{text}");
    assert_eq!(count(&db, "true").await, total, "written once, not twice");
    assert_eq!(
        metric(&text, "gatekeeper_audit_dropped_total", &[]),
        0.0,
        "{text}"
    );
    assert!(metric(&text, "gatekeeper_audit_write_errors_total", &[]) >= 1.0);
    let logs = gk.logs().join("\n");
    assert!(
        logs.contains("may have been written; sending it again"),
        "{logs}"
    );
    assert!(
        logs.contains("an audit batch in doubt is written"),
        "{logs}"
    );
    assert!(logs.contains("\"landed_before\":true"), "{logs}");
}

/// Sends SIGTERM without waiting.
fn sigterm(gk: &Gatekeeper) {
    let status = Command::new("kill")
        .args(["-TERM", &gk.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_still_in_doubt_at_a_stop_is_reported_unconfirmed() {
    const LOST: usize = 50;
    let key = generate_key();
    let db = TestDb::new().await;
    let proxy = common::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap());
    let url = audit_through(&proxy, &db);
    let mut gk = Gatekeeper::start_with_env(
        &policy(&key),
        &[
            ("GATEKEEPER_AUDIT", "postgres"),
            ("GATEKEEPER_AUDIT_DATABASE_URL", url.as_str()),
            ("GATEKEEPER_FAILED_AUTH_LIMIT", "1000000/1s"),
        ],
    );
    send_all(gk.authz_addr, 1, 4, |i| mixed(i, &key));
    assert!(eventually(async || count(&db, "true").await == 4).await);
    proxy.lose_replies();
    send_all(gk.authz_addr, 1, LOST, |i| mixed(4 + i, &key));
    assert!(eventually(async || count(&db, "true").await == 4 + LOST as i64).await);
    // The database stays out of reach: the batch cannot be confirmed.
    proxy.cut();
    assert!(common::poll_until(Duration::from_secs(10), || gk
        .logs()
        .iter()
        .any(|l| l.contains("sending it again"))));
    sigterm(&gk);
    assert!(
        common::poll_until(Duration::from_secs(20), || !gk.is_alive()),
        "gatekeeper did not stop"
    );
    let logs = gk.logs().join("\n");
    let line = logs
        .lines()
        .find(|l| l.contains("counted as dropped (unconfirmed)"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains(&format!("\"records\":{LOST}")), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_are_written_on_a_graceful_stop() {
    const TOTAL: usize = 400;
    let key = generate_key();
    let db = TestDb::new().await;
    let mut gk = start(&key, &db, &[]);
    // Held until after SIGTERM: every record is still queued (or in the
    // writer's blocked batch) when the stop begins.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE gk_audit IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    send_all(gk.authz_addr, 2, TOTAL, |i| mixed(i, &key));
    sigterm(&gk);
    let stopping = common::poll_until(Duration::from_secs(5), || {
        gk.logs().iter().any(|l| l.contains("shutting down"))
    });
    assert!(stopping);
    lock.rollback().await.unwrap();
    assert!(
        common::poll_until(Duration::from_secs(20), || !gk.is_alive()),
        "gatekeeper did not stop"
    );
    assert_eq!(count(&db, "true").await, TOTAL as i64);
    let logs = gk.logs().join("\n");
    assert!(!logs.contains("not written out in time"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_is_bounded_when_the_audit_database_hangs() {
    let key = generate_key();
    let db = TestDb::new().await;
    let mut gk = start(&key, &db, &[("GATEKEEPER_SHUTDOWN_GRACE", "1s")]);
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE gk_audit IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    send_all(gk.authz_addr, 1, 50, |i| mixed(i, &key));
    let asked = std::time::Instant::now();
    sigterm(&gk);
    // The grace period (1 s), then at most the minimum flush (1 s): never
    // as long as the lock is held.
    assert!(
        common::poll_until(Duration::from_secs(10), || !gk.is_alive()),
        "gatekeeper did not stop while its audit database hung"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let logs = gk.logs().join("\n");
    assert!(logs.contains("not written out in time"), "{logs}");
    lock.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_counted_as_dropped_and_logged_without_values() {
    let key = generate_key();
    let db = TestDb::new().await;
    let gk = start(&key, &db, &[]);
    // Not an outage the service could tell from a slow database: the table
    // refuses rows, so each batch fails.
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE gk_audit ADD CONSTRAINT refuse_all CHECK (decision = 'never') NOT VALID",
        )
        .await
        .unwrap();
    send_all(gk.authz_addr, 1, 20, |i| mixed(i, &key));
    let counted = eventually(async || {
        audit_metric(
            &gk,
            "gatekeeper_audit_dropped_total",
            &[("cause", "write_failed")],
        ) == 20.0
    })
    .await;
    assert!(counted, "{}", gk.metrics());
    assert!(audit_metric(&gk, "gatekeeper_audit_write_errors_total", &[]) >= 1.0);
    assert_eq!(count(&db, "true").await, 0);
    let logs = gk.logs();
    let warning = logs
        .iter()
        .find(|l| l.contains("cannot write audit records"))
        .unwrap_or_else(|| panic!("no warning:\n{}", logs.join("\n")));
    assert!(warning.contains("SQLSTATE 23514"), "{warning}");
    // PostgreSQL's detail ("Failing row contains (…)") quotes the row: it
    // never reaches the log, nor does any value of the batch.
    for value in [
        "Failing row",
        "req-",
        "/v1/chat",
        "llm.example.com",
        "127.0.0.1",
    ] {
        assert!(!warning.contains(value), "{warning}");
    }
}

// ── Retention ───────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_rows_past_their_age_and_keeps_the_rest() {
    let key = generate_key();
    let db = TestDb::new().await;
    // More old rows than one DELETE takes, so retention works in batches.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO gk_audit (at, decision, reason, duration_us, client_id)
             SELECT now() - interval '40 days' - n * interval '1 second', 'deny',
                    'invalid_credentials', 5, 'old'
               FROM generate_series(1, 12000) n;
             INSERT INTO gk_audit (at, decision, reason, duration_us, client_id)
             SELECT now() - interval '29 days', 'allow', 'authenticated', 5, 'recent'
               FROM generate_series(1, 5);
             INSERT INTO gk_audit (at, decision, reason, duration_us, client_id)
             SELECT now(), 'allow', 'authenticated', 5, 'recent' FROM generate_series(1, 5);
             INSERT INTO gk_audit_batch (id, at, records)
             SELECT n, now() - interval '40 days', 1000 FROM generate_series(1, 7000) n;
             INSERT INTO gk_audit_batch (id, at, records) VALUES (-1, now(), 5);",
        )
        .await
        .unwrap();

    let gk = start(&key, &db, &[("GATEKEEPER_AUDIT_RETENTION_DAYS", "30")]);
    let batches = async || -> Vec<i64> {
        let client = db.client().await;
        let rows = client.query("SELECT id FROM gk_audit_batch", &[]).await;
        rows.unwrap().iter().map(|r| r.get(0)).collect()
    };
    // The batch markers go by the same age.
    assert!(
        eventually(async || batches().await == [-1]).await,
        "{:?}",
        batches().await.len()
    );

    let gone = eventually(async || count(&db, "client_id = 'old'").await == 0).await;
    assert!(
        gone,
        "{} old rows left",
        count(&db, "client_id = 'old'").await
    );
    assert_eq!(count(&db, "client_id = 'recent'").await, 10);
    assert_eq!(
        audit_metric(&gk, "gatekeeper_audit_retention_deleted_total", &[]),
        12000.0
    );
}

// ── Secret hygiene ──────────────────────────────────────────────────────────

/// `chat` and `health` as in `policy`, plus `models` (a model allow-list,
/// Basic and bring-your-own-token) and `ops` (HMAC only).
fn hygiene_policy(key: &Key, basic_hash: &str) -> String {
    format!(
        r#"
[[route]]
id = "models"
domain = "*"
path = "/m/*"
service = "ollama"
[route.methods]
POST = ["api_key", "basic", "provider_token"]
GET = ["api_key"]

[[route]]
id = "ops"
domain = "*"
path = "/api/*"
service = "ollama"
[route.methods]
POST = ["hmac"]

[[client]]
id = "team-a"
name = "Team A"
secret_hash = "{basic_hash}"
{key}
[[client]]
id = "ops"
name = "Operations"
hmac_secret = {{ env = "OPS_SECRET" }}

[[grant]]
client = "team-a"
route = "models"
methods = ["POST", "GET"]
models = ["llama3*"]

[[grant]]
client = "ops"
route = "ops"
methods = ["POST"]
"#,
        key = key.toml("active", None)
    )
}

/// Every way a secret could be written: raw, hex, base64 (padded, not, URL),
/// base64 also as it reads inside a longer text, starting one or two bytes
/// into a 3-byte group (`Basic base64(id:secret)`).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            let rest = &secret[shift..];
            let whole = if shift == 0 {
                rest.len()
            } else {
                rest.len() / 3 * 3
            };
            out.push(engine.encode(&rest[..whole]).into_bytes());
        }
    }
    out
}

/// Where any 12 consecutive bytes of any form of `secret` appear in `text`.
fn leak(text: &[u8], secret: &[u8]) -> Option<String> {
    for form in forms(secret) {
        for window in form.windows(12.min(form.len())) {
            if let Some(at) = text.windows(window.len()).position(|w| w == window) {
                let from = at.saturating_sub(40);
                let to = (at + 52).min(text.len());
                return Some(String::from_utf8_lossy(&text[from..to]).into_owned());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_prompt_or_query_reaches_any_column() {
    let key = generate_key();
    let other = generate_key(); // valid form, unknown to the policy
    let basic_secret = "basic-secret-XYZ-0123456789";
    let prompt = "PROMPT: the quarterly numbers are 7 7 7 and nobody may know";
    let provider = "sk-provider-token-0123456789abcdef";
    let query_key = "query-key-9876543210-abcdef";
    let toml = hygiene_policy(&key, &common::bcrypt_hash(basic_secret));
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = audit_env(
        &db,
        &[
            ("OPS_SECRET", OPS_SECRET),
            ("GATEKEEPER_ALLOW_QUERY_KEY", "true"),
        ],
    );
    let gk = Gatekeeper::start_with_env(&toml, &env);

    let chat = |model: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{prompt}"}}]}}"#)
            .into_bytes()
    };
    let body = chat("llama3:8b");
    let signed = hmac::sign(
        dir.path(),
        "POST",
        "/api/generate",
        &body,
        hmac::now(),
        "nonce-audit-1",
    );
    let cases: Vec<(Req, u16)> = vec![
        (
            Req::new("POST", "/m/chat").bearer(&key.key).body(&body),
            200,
        ),
        (
            Req::new("POST", "/m/chat")
                .bearer(&key.key)
                .body(&chat("gpt-4")),
            403,
        ),
        (
            Req::new("POST", "/m/chat")
                .header("X-API-Key", &key.key)
                .body(&body)
                .header("X-Provider-Token", provider),
            200,
        ),
        (Req::get(&format!("/m/models?api_key={}", key.key)), 200),
        (Req::get(&format!("/m/models?api_key={query_key}")), 401),
        (
            Req::new("POST", "/m/chat")
                .basic("team-a", basic_secret)
                .body(&body),
            200,
        ),
        (
            Req::new("POST", "/m/chat")
                .basic("team-a", "wrong-basic-secret-42")
                .body(&body),
            401,
        ),
        (
            Req::new("POST", "/api/generate")
                .header("Authorization", &signed)
                .body(&body),
            200,
        ),
        (
            Req::new("POST", "/api/generate")
                .header("Authorization", &signed)
                .body(&body),
            401,
        ),
        (
            Req::new("POST", "/m/chat").bearer(&other.key).body(&body),
            401,
        ),
        // Did not parse: nothing of the request is kept but its source.
        (
            Req::get(&format!("/m/%2e%2e/x?api_key={}", key.key)).bearer(&key.key),
            403,
        ),
        (
            Req::get("/m/models")
                .bearer(&key.key)
                .header("X-Original-Host", "bad host"),
            403,
        ),
    ];
    for (i, (req, status)) in cases.iter().enumerate() {
        let r = gk.send(req);
        assert_eq!(r.status, *status, "case {i}: {r:?}");
    }
    let want = cases.len() as i64;
    assert!(eventually(async || count(&db, "true").await == want).await);

    let rows = db
        .client()
        .await
        .query("SELECT t::text FROM gk_audit t ORDER BY id", &[])
        .await
        .unwrap();
    let dump: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let dump = dump.join("\n");
    let signature = signed
        .rsplit("signature=")
        .next()
        .unwrap()
        .trim_matches('"');
    let basic_header = common::basic_value("team-a", basic_secret);
    // A key's public id is its key id, which is recorded: the rest is secret.
    let secret_part = |k: &Key| {
        k.key
            .strip_prefix(&format!("gk_{}_", k.id))
            .unwrap()
            .to_owned()
    };
    let (key_secret, other_secret) = (secret_part(&key), secret_part(&other));
    let secrets: [(&str, &[u8]); 9] = [
        ("api key", key_secret.as_bytes()),
        ("unknown api key", other_secret.as_bytes()),
        ("query key", query_key.as_bytes()),
        ("basic secret", basic_secret.as_bytes()),
        ("basic header", basic_header.as_bytes()),
        ("hmac secret", OPS_SECRET.as_bytes()),
        ("hmac signature", signature.as_bytes()),
        ("prompt", prompt.as_bytes()),
        ("provider token", provider.as_bytes()),
    ];
    // The search finds what it looks for, in any form.
    for (planted, secret) in [
        (format!("x{key_secret}x"), &key_secret),
        (
            format!("({})", hex::encode(&key_secret[3..20])),
            &key_secret,
        ),
        (
            STANDARD.encode(format!("team-a:{basic_secret}")),
            &basic_secret.to_owned(),
        ),
        (
            URL_SAFE_NO_PAD.encode(format!("{prompt}!")),
            &prompt.to_owned(),
        ),
    ] {
        let found = leak(planted.as_bytes(), secret.as_bytes());
        assert!(found.is_some(), "{planted}");
    }
    for (name, secret) in secrets {
        if let Some(around) = leak(dump.as_bytes(), secret) {
            panic!("the {name} is in the audit log: …{around}…\n{dump}");
        }
    }
    assert!(!dump.contains('?'), "a query string was kept:\n{dump}");
    // The rows are there all the same: the test looked at something.
    assert_eq!(count(&db, "reason = 'authenticated'").await, 5);
    assert_eq!(count(&db, "reason = 'ambiguous_path' AND path IS NULL AND method IS NULL AND host IS NULL AND source = '127.0.0.1'").await, 1);
    assert_eq!(
        count(&db, "reason = 'bad_request' AND path IS NULL").await,
        1
    );
}

// ── Start-up and migrate ────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditing_needs_a_database_with_the_audit_table() {
    let key = generate_key();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy(&key)).unwrap();
    let serve = |env: &[(&str, &str)]| {
        let out = common::gatekeeper_command(env)
            .args(["serve", "--config", file.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .expect("run serve");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // No database at all: a configuration error naming the setting.
    let (code, stderr) = serve(&[("GATEKEEPER_AUDIT", "postgres")]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("GATEKEEPER_AUDIT"), "{stderr}");
    let (code, stderr) = serve(&[("GATEKEEPER_AUDIT", "syslog")]);
    assert_eq!(code, Some(64), "{stderr}");

    // A database without the schema: refused, naming the command.
    let db = TestDb::empty().await;
    let env = [
        ("GATEKEEPER_AUDIT", "postgres"),
        ("GATEKEEPER_AUDIT_DATABASE_URL", db.url.as_str()),
    ];
    let (code, stderr) = serve(&env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("audit database"), "{stderr}");
    assert!(stderr.contains("gatekeeper migrate"), "{stderr}");

    // `migrate` in file mode migrates the audit database; then it serves.
    let out = run(
        &["migrate"],
        &[("GATEKEEPER_AUDIT_DATABASE_URL", &db.url)],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("audit database: applied migrations"),
        "{stdout}"
    );
    let gk = Gatekeeper::start_with_env(&policy(&key), &env);
    gk.send(&mixed(0, &key).0);
    assert!(eventually(async || count(&db, "true").await == 1).await);
}

#[tokio::test]
async fn every_audit_statement_prepares_against_the_schema() {
    let db = TestDb::new().await;
    db.assert_statements_prepare(gatekeeper::audit::STATEMENTS)
        .await;
}

// ── The CLI ─────────────────────────────────────────────────────────────────

/// Six rows with known values, two hours apart from the last three.
async fn seed_rows(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "INSERT INTO gk_audit (at, request_id, client_id, key_id, route_id, method, host,
                                   path, decision, reason, source, duration_us) VALUES
             (now() - interval '2 hours', 'r1', 'alpha', 'ka', 'chat', 'POST', 'llm.example.com',
              '/v1/chat', 'allow', 'authenticated', '10.0.0.1', 11),
             (now() - interval '2 hours', 'r2', 'beta', NULL, 'chat', 'POST', 'llm.example.com',
              '/v1/chat', 'deny', 'invalid_credentials', '10.0.0.2', 12),
             (now() - interval '2 hours', 'r3', NULL, NULL, NULL, NULL, NULL,
              NULL, 'deny', 'bad_request', '2001:db8::1', 13),
             (now() - interval '1 minute', 'r4', 'alpha', 'ka', 'chat', 'POST', 'llm.example.com',
              '/v1/chat', 'deny', 'rate_limited', '10.0.0.1', 14),
             (now() - interval '1 minute', 'r5', 'beta', NULL, 'chat', 'POST', 'llm.example.com',
              '/v1/chat', 'deny', 'invalid_credentials', '10.0.0.2', 15),
             (now(), 'r6', 'alpha', 'ka', 'chat', 'POST', 'llm.example.com',
              '/v1/models', 'allow', 'authenticated', '10.0.0.1', 16);",
        )
        .await
        .unwrap();
}

/// Runs `gatekeeper audit …` against `url`; (exit code, stdout, stderr).
fn audit_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let out = run(&all, &[("GATEKEEPER_DATABASE_URL", url)], None);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--json` output's request ids, in order.
fn request_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["request_id"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tail_and_query_print_rows_and_filter_them() {
    let db = TestDb::new().await;
    seed_rows(&db).await;
    let url = db.url.as_str();
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = audit_cli(url, args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        stdout
    };

    // tail: the latest, oldest first.
    assert_eq!(
        request_ids(&ok(&["tail", "-n", "3", "--json"])),
        ["r4", "r5", "r6"]
    );
    assert_eq!(request_ids(&ok(&["tail", "--json"])).len(), 6);
    // query: each filter, and all of them at once.
    assert_eq!(
        request_ids(&ok(&["query", "--client", "alpha", "--json"])),
        ["r1", "r4", "r6"]
    );
    assert_eq!(
        request_ids(&ok(&["query", "--reason", "invalid_credentials", "--json"])),
        ["r2", "r5"]
    );
    assert_eq!(
        request_ids(&ok(&["query", "--since", "1h", "--json"])),
        ["r4", "r5", "r6"]
    );
    assert_eq!(
        request_ids(&ok(&[
            "query",
            "--client",
            "beta",
            "--since",
            "1h",
            "--reason",
            "invalid_credentials",
            "--json"
        ])),
        ["r5"]
    );
    assert_eq!(
        request_ids(&ok(&[
            "query",
            "--since",
            "2000-01-01T00:00:00Z",
            "--limit",
            "2",
            "--json"
        ])),
        ["r5", "r6"]
    );
    assert!(ok(&["query", "--since", "2999-01-01T00:00:00Z", "--json"]).is_empty());

    // --json: every column, stable names, null for nothing.
    let first = ok(&["query", "--reason", "bad_request", "--json"]);
    let v: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(v["source"], "2001:db8::1");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["duration_us"], 13);
    assert!(v["path"].is_null() && v["client_id"].is_null() && v["id"].is_i64());
    assert!(v["at"].as_str().unwrap().ends_with('Z'), "{v}");

    // The plain table: a header, then aligned rows with dashes for nothing.
    let table = ok(&["tail", "-n", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("AT") && lines[0].contains("REASON"),
        "{table}"
    );
    assert!(lines[1].contains("invalid_credentials") && lines[1].contains("beta"));
    assert!(lines[2].contains("/v1/models") && lines[2].contains("10.0.0.1"));
    let column = lines[0].find("REASON").unwrap();
    assert_eq!(&lines[1][column..column + 7], "invalid");

    // Usage errors: 64, naming the flag, before any database is asked.
    for (args, names) in [
        (&["query", "--reason", "nope"][..], "--reason"),
        (&["query", "--since", "yesterday"][..], "--since"),
        (&["tail", "-n", "0"][..], "-n"),
    ] {
        let (code, _, stderr) = audit_cli(url, args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{stderr}");
    }
    let out = run(&["audit", "tail"], &[], None);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEKEEPER_AUDIT_DATABASE_URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tail_follow_prints_rows_as_they_are_written() {
    let key = generate_key();
    let db = TestDb::new().await;
    seed_rows(&db).await;
    let gk = start(&key, &db, &[]);
    let mut child = common::gatekeeper_command(&[("GATEKEEPER_AUDIT_DATABASE_URL", &db.url)])
        .args(["audit", "tail", "-n", "1", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn audit tail");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(ROWS_DEADLINE)
            .expect("a line from tail --follow")
    };
    assert_eq!(request_ids(&next()), ["r6"]);

    let (req, status, _) = mixed(0, &key);
    assert_eq!(gk.send(&req).status, status);
    let row: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(row["request_id"], "req-0");
    assert_eq!(row["client_id"], "team-a");
    assert_eq!(row["path"], "/v1/chat/completions");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mode_audits_into_the_policy_database_by_default() {
    let key = "gk-audit-legacy-key-0123456789";
    let db = pg::seeded_chat(key).await;
    let gk = Gatekeeper::start_postgres(&[
        ("GATEKEEPER_DATABASE_URL", db.url.as_str()),
        ("GATEKEEPER_AUDIT", "postgres"),
    ]);
    let r = gk.send(
        &Req::new("POST", "/v1/chat")
            .bearer(key)
            .header("X-Request-ID", "pg-1"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let filter = "request_id = 'pg-1' AND client_id = 'c1' AND key_id = 'k1' AND route_id = 'chat'";
    assert!(eventually(async || count(&db, filter).await == 1).await);
    // Audit rows are not policy changes: the listener saw nothing to reload.
    let reloads = metric(
        &gk.metrics(),
        "gatekeeper_config_reloads_total",
        &[("result", "ok")],
    );
    let (listener, mut notes) = db.listen().await;
    db.client()
        .await
        .batch_execute("INSERT INTO gk_audit (at, decision, reason, duration_us) VALUES (now(), 'deny', 'bad_request', 1)")
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), notes.recv()).await;
    assert!(heard.is_err(), "an audit row was announced: {heard:?}");
    drop(listener);
    assert_eq!(
        metric(
            &gk.metrics(),
            "gatekeeper_config_reloads_total",
            &[("result", "ok")]
        ),
        reloads
    );
}
