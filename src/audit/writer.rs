//! The audit log's background work: the writer, which drains the queue into
//! `gk_audit` one INSERT per batch, and retention, which deletes rows past
//! their age in bounded batches. Neither ever logs a record's values, nor a
//! database message that could quote them (only the SQLSTATE).
//!
//! The writer polls the queue on a timer and never waits on it: a task
//! waiting in `recv` is woken by every send, and a wake from an HTTP worker
//! thread schedules the task onto the main runtime (a lock) and unparks a
//! thread (a syscall). Measured here (`cargo bench --bench audit`, 2-core
//! VM): a send spaced like real traffic cost ~17 µs with the receiver
//! waiting, ~60 ns with it polled — a decision is ~1.4 µs. Polling costs
//! a record up to `DRAIN_INTERVAL` of latency and the queue must hold that
//! long's traffic (65,536 records: 650,000 decisions/s).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Pool, PoolError};
use metrics::{Counter, Gauge};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{AuditQueue, AuditRecord};
use crate::metrics::{AUDIT_DELETED, AUDIT_DROPPED, AUDIT_QUEUE_DEPTH, AUDIT_WRITE_ERRORS};

/// Most records one INSERT carries.
pub const BATCH: usize = 1000;
/// Longest a record waits for its batch to fill before it is written.
pub const LINGER: Duration = Duration::from_secs(1);
/// How often the writer takes what is queued.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often retention runs (and once at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Most rows one retention DELETE removes: short transactions, short locks.
pub const DELETE_BATCH: i64 = 5000;
/// Retention's lock, so replicas sharing a database do not delete the same
/// rows at once: the others skip the round ("gk_audit" in ASCII).
const RETENTION_LOCK: i64 = 0x676b_5f61_7564_6974;

// One statement per batch, whatever its size: each column is an array.
const INSERT: &str = "
INSERT INTO gk_audit (at, request_id, client_id, key_id, route_id, method, host, path,
                      decision, reason, source, duration_us)
SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::inet[], $12::integer[])";

const TRY_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";

// Oldest first through the (at) index, at most $2 rows.
const DELETE_OLD: &str = "
DELETE FROM gk_audit WHERE id IN (
    SELECT id FROM gk_audit WHERE at < $1 ORDER BY at LIMIT $2)";

/// Every statement of the audit log, for the test that prepares them all.
pub const STATEMENTS: &[&str] = &[
    INSERT,
    TRY_LOCK,
    DELETE_OLD,
    super::rows::SELECT_LATEST,
    super::rows::SELECT_AFTER,
    super::rows::SELECT_MATCHING,
];

/// A failure to reach or write the database, described without values.
#[derive(Debug)]
enum WriteError {
    Pool(PoolError),
    Postgres(tokio_postgres::Error),
}

impl From<PoolError> for WriteError {
    fn from(e: PoolError) -> WriteError {
        WriteError::Pool(e)
    }
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> WriteError {
        WriteError::Postgres(e)
    }
}

impl std::fmt::Display for WriteError {
    /// A database error's message and detail may quote a row ("Failing row
    /// contains …"): only its SQLSTATE is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = match self {
            WriteError::Pool(PoolError::Backend(e)) | WriteError::Postgres(e) => e,
            WriteError::Pool(other) => return write!(f, "connection pool: {other}"),
        };
        match e.as_db_error() {
            Some(db) => write!(f, "PostgreSQL refused it (SQLSTATE {})", db.code().code()),
            None => write!(f, "{e}"),
        }
    }
}

pub(super) struct Writer {
    queue: AuditQueue,
    pool: Pool,
    written: Counter,
    failed: Counter,
    errors: Counter,
    depth: Gauge,
}

impl Writer {
    pub(super) fn new(queue: AuditQueue, pool: Pool) -> Writer {
        let writer = Writer {
            queue,
            pool,
            written: metrics::counter!(crate::metrics::AUDIT_WRITTEN),
            failed: metrics::counter!(AUDIT_DROPPED, "cause" => "write_failed"),
            errors: metrics::counter!(AUDIT_WRITE_ERRORS),
            depth: metrics::gauge!(AUDIT_QUEUE_DEPTH),
        };
        // Present from the start: the first failure is an increase.
        for counter in [&writer.written, &writer.failed, &writer.errors] {
            counter.increment(0);
        }
        writer
    }

    /// Every `DRAIN_INTERVAL`, takes what is queued and writes each full
    /// batch, and a partial one once its first record has waited `LINGER`.
    /// When `stop` flips, closes the queue and writes what it holds (the
    /// caller bounds how long that may take).
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        let mut since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            while self.take(&mut batch) {
                self.write(&mut batch).await;
            }
            since = match since {
                _ if batch.is_empty() => None,
                Some(first) if first.elapsed() >= LINGER => {
                    self.write(&mut batch).await;
                    None
                }
                Some(first) => Some(first),
                None => Some(Instant::now()),
            };
            self.depth.set(self.queue.len() as f64);
        }
        // From here a record offered is dropped and counted at once.
        self.queue.0.close();
        while self.take(&mut batch) {
            self.write(&mut batch).await;
        }
        self.write(&mut batch).await;
        self.depth.set(0.0);
    }

    /// Moves queued records into `batch` without waiting (and so without
    /// asking to be woken); true when the batch is full.
    fn take(&mut self, batch: &mut Vec<AuditRecord>) -> bool {
        while batch.len() < BATCH {
            match self.queue.0.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => return false,
            }
        }
        true
    }

    /// One INSERT for the batch; a failed batch is dropped and counted (not
    /// retried: an outage must not grow memory or hold the queue).
    async fn write(&self, batch: &mut Vec<AuditRecord>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let result = self.insert(batch).await;
        batch.clear();
        match result {
            Ok(()) => self.written.increment(n),
            Err(error) => {
                self.errors.increment(1);
                self.failed.increment(n);
                tracing::warn!(%error, records = n, "cannot write audit records; dropped");
            }
        }
    }

    async fn insert(&self, batch: &[AuditRecord]) -> Result<(), WriteError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(INSERT).await?;
        let c = Columns::of(batch);
        client
            .execute(
                &statement,
                &[
                    &c.at,
                    &c.request_id,
                    &c.client_id,
                    &c.key_id,
                    &c.route_id,
                    &c.method,
                    &c.host,
                    &c.path,
                    &c.decision,
                    &c.reason,
                    &c.source,
                    &c.duration_us,
                ],
            )
            .await?;
        Ok(())
    }
}

/// A batch turned into one array per column, borrowing its strings.
struct Columns<'a> {
    at: Vec<SystemTime>,
    request_id: Vec<Option<&'a str>>,
    client_id: Vec<Option<&'a str>>,
    key_id: Vec<Option<&'a str>>,
    route_id: Vec<Option<&'a str>>,
    method: Vec<Option<&'a str>>,
    host: Vec<Option<&'a str>>,
    path: Vec<Option<&'a str>>,
    decision: Vec<&'static str>,
    reason: Vec<&'static str>,
    source: Vec<Option<IpAddr>>,
    duration_us: Vec<i32>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [AuditRecord]) -> Columns<'a> {
        Columns {
            at: batch.iter().map(|r| r.at).collect(),
            request_id: batch.iter().map(|r| r.request_id.as_deref()).collect(),
            client_id: batch.iter().map(|r| r.client_id.as_deref()).collect(),
            key_id: batch.iter().map(|r| r.key_id.as_deref()).collect(),
            route_id: batch.iter().map(|r| r.route_id.as_deref()).collect(),
            method: batch
                .iter()
                .map(|r| r.request.method.as_ref().map(|m| m.as_str()))
                .collect(),
            host: batch.iter().map(|r| r.request.host.as_deref()).collect(),
            path: batch.iter().map(|r| r.request.path.as_deref()).collect(),
            decision: batch.iter().map(AuditRecord::decision).collect(),
            reason: batch.iter().map(|r| r.reason.as_str()).collect(),
            source: batch.iter().map(|r| r.request.source).collect(),
            duration_us: batch.iter().map(|r| r.duration_us).collect(),
        }
    }
}

pub(super) struct Retention {
    pool: Pool,
    days: u32,
    deleted: Counter,
}

impl Retention {
    pub(super) fn new(pool: Pool, days: u32) -> Retention {
        let deleted = metrics::counter!(AUDIT_DELETED);
        deleted.increment(0);
        Retention {
            pool,
            days,
            deleted,
        }
    }

    /// A pass at once, then every `RETENTION_INTERVAL`, until `stop` flips.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.pass(SystemTime::now()) => {}
            }
        }
    }

    /// Deletes every row older than the retention period, a batch at a
    /// time; an error ends the pass (the next one retries).
    async fn pass(&self, now: SystemTime) {
        let Some(cutoff) = cutoff(now, self.days) else {
            return;
        };
        let mut total = 0;
        loop {
            match self.delete_batch(cutoff).await {
                Ok(n) => {
                    total += n;
                    self.deleted.increment(n);
                    if n < DELETE_BATCH as u64 {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot delete old audit rows; retrying in an hour");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(
                deleted = total,
                retention_days = self.days,
                "deleted old audit rows"
            );
        }
    }

    /// One batch in its own transaction; 0 when another replica holds the
    /// lock (it is doing the same work).
    async fn delete_batch(&self, cutoff: SystemTime) -> Result<u64, WriteError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let locked: bool = tx.query_one(TRY_LOCK, &[&RETENTION_LOCK]).await?.get(0);
        if !locked {
            return Ok(0);
        }
        let n = tx.execute(DELETE_OLD, &[&cutoff, &DELETE_BATCH]).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Rows made before this are past `days`; none when that is before 1970.
fn cutoff(now: SystemTime, days: u32) -> Option<SystemTime> {
    now.checked_sub(Duration::from_secs(u64::from(days) * 86_400))
        .filter(|t| *t > SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_whole_days_back_and_never_before_1970() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        assert_eq!(
            cutoff(now, 30),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(70 * 86_400))
        );
        assert_eq!(cutoff(now, 100), None);
        assert_eq!(cutoff(now, 36_525), None);
    }

    #[test]
    fn a_database_error_shows_its_sqlstate_only() {
        // No server needed: a pool error of another kind shows as itself.
        let e = WriteError::Pool(PoolError::Closed);
        assert!(e.to_string().starts_with("connection pool:"), "{e}");
    }
}
