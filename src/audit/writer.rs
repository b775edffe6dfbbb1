//! The audit writer: drains the queue into `gk_audit`, one INSERT per
//! batch. It never logs a record's values, nor a database message that
//! could quote them (only the SQLSTATE).
//!
//! The writer polls the queue on a timer and never waits on it: a task
//! waiting in `recv` is woken by every send, and a wake from an HTTP worker
//! thread schedules the task onto the main runtime (a lock) and unparks a
//! thread (a syscall). Measured here (`cargo bench --bench audit`, 2-core
//! VM): a send spaced like real traffic cost ~17 µs with the receiver
//! waiting, ~60 ns with it polled — a decision is ~1.4 µs. Polling costs
//! a record up to `DRAIN_INTERVAL` of latency and the queue must hold that
//! long's traffic (65,536 records: 650,000 decisions/s).
//!
//! A batch has an id, written with it in one statement (`gk_audit_batch`,
//! migration 0005). A failure PostgreSQL answered (or one before anything
//! was sent) means nothing was written: the batch is dropped and counted.
//! A failure after the INSERT was sent without its answer (the connection
//! broke) leaves the batch *in doubt*: it may have been committed. Such a
//! batch is kept (at most `IN_DOUBT_BATCHES`) and sent again, same id, each
//! round until PostgreSQL answers: the same id makes the second INSERT write
//! nothing when the first landed, so either way its records then count as
//! written, once. One still in doubt after `IN_DOUBT_FOR` (or at a stop) is
//! given up and counted as `dropped{cause="unconfirmed"}`: its rows may or
//! may not be in the table, and the counters say so rather than guess.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Pool, PoolError};
use metrics::{Counter, Gauge};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{AuditQueue, AuditRecord};
use crate::metrics::{AUDIT_DROPPED, AUDIT_QUEUE_DEPTH, AUDIT_WRITE_ERRORS};

/// Most records one INSERT carries.
pub const BATCH: usize = 1000;
/// Longest a record waits for its batch to fill before it is written.
pub const LINGER: Duration = Duration::from_secs(1);
/// How often the writer takes what is queued, and samples the queue's
/// depth (also while an INSERT is under way).
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// Most batches kept in doubt; past it the oldest is given up.
pub const IN_DOUBT_BATCHES: usize = 8;
/// How long a batch in doubt is sent again before it is given up.
pub const IN_DOUBT_FOR: Duration = Duration::from_secs(60);

// One statement per batch, whatever its size: each column is an array. The
// batch's marker and its rows are one statement, so one transaction; a
// marker already there (the batch landed before) writes no row.
pub(super) const INSERT: &str = "
WITH batch AS (
    INSERT INTO gk_audit_batch (id, records) VALUES ($13, $14)
    ON CONFLICT (id) DO NOTHING
    RETURNING id)
INSERT INTO gk_audit (at, request_id, client_id, key_id, route_id, method, host, path,
                      decision, reason, source, duration_us)
SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::inet[], $12::integer[])
 WHERE EXISTS (SELECT 1 FROM batch)";

/// A failure to reach or write the database, described without values.
#[derive(Debug)]
pub(super) enum WriteError {
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

/// Why a batch was not confirmed written.
struct Failure {
    error: WriteError,
    /// The INSERT was sent and no answer came: it may have been committed.
    in_doubt: bool,
}

impl Failure {
    /// Nothing was sent, or PostgreSQL answered with an error (a statement
    /// that fails commits nothing).
    fn not_written(error: impl Into<WriteError>) -> Failure {
        Failure {
            error: error.into(),
            in_doubt: false,
        }
    }

    /// An error from the INSERT itself: in doubt unless PostgreSQL said it.
    fn of_insert(error: tokio_postgres::Error) -> Failure {
        Failure {
            in_doubt: error.as_db_error().is_none(),
            error: WriteError::Postgres(error),
        }
    }
}

/// A batch that may have been committed, to be sent again with its id.
struct InDoubt {
    id: i64,
    records: Vec<AuditRecord>,
    since: Instant,
}

pub(super) struct Writer {
    queue: AuditQueue,
    pool: Pool,
    /// The next batch's id: random at start, then counting (so replicas
    /// and restarts sharing a database do not meet).
    next_id: i64,
    in_doubt: VecDeque<InDoubt>,
    written: Counter,
    failed: Counter,
    unconfirmed: Counter,
    errors: Counter,
    depth: Gauge,
}

impl Writer {
    pub(super) fn new(queue: AuditQueue, pool: Pool) -> Writer {
        let writer = Writer {
            queue,
            pool,
            next_id: first_batch_id(),
            in_doubt: VecDeque::new(),
            written: metrics::counter!(crate::metrics::AUDIT_WRITTEN),
            failed: metrics::counter!(AUDIT_DROPPED, "cause" => "write_failed"),
            unconfirmed: metrics::counter!(AUDIT_DROPPED, "cause" => "unconfirmed"),
            errors: metrics::counter!(AUDIT_WRITE_ERRORS),
            depth: metrics::gauge!(AUDIT_QUEUE_DEPTH),
        };
        // Present from the start: the first failure is an increase.
        for counter in [
            &writer.written,
            &writer.failed,
            &writer.unconfirmed,
            &writer.errors,
        ] {
            counter.increment(0);
        }
        writer
    }

    /// Every `DRAIN_INTERVAL`, sends again what is in doubt, takes what is
    /// queued and writes each full batch, and a partial one once its first
    /// record has waited `LINGER`. When `stop` flips, closes the queue and
    /// writes what it holds (the caller bounds how long that may take).
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
            self.settle(false).await;
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
        self.settle(true).await;
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

    /// One INSERT for the batch (which is emptied). A batch not written is
    /// dropped and counted, not retried (an outage must not grow memory or
    /// hold the queue) — unless it is in doubt, see the module doc.
    async fn write(&mut self, batch: &mut Vec<AuditRecord>) {
        if batch.is_empty() {
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let n = batch.len() as u64;
        match self.sampling(self.insert(id, batch)).await {
            Ok(_) => {
                self.written.increment(n);
                batch.clear();
            }
            Err(Failure {
                error,
                in_doubt: true,
            }) => {
                self.errors.increment(1);
                tracing::warn!(
                    %error,
                    records = n,
                    "no answer to an audit batch: it may have been written; sending it again"
                );
                let records = std::mem::replace(batch, Vec::with_capacity(BATCH));
                self.keep_in_doubt(id, records);
            }
            Err(Failure { error, .. }) => {
                self.errors.increment(1);
                self.failed.increment(n);
                tracing::warn!(%error, records = n, "cannot write audit records; dropped");
                batch.clear();
            }
        }
    }

    fn keep_in_doubt(&mut self, id: i64, records: Vec<AuditRecord>) {
        if self.in_doubt.len() >= IN_DOUBT_BATCHES {
            if let Some(oldest) = self.in_doubt.pop_front() {
                self.give_up(oldest, "too many audit batches in doubt");
            }
        }
        self.in_doubt.push_back(InDoubt {
            id,
            records,
            since: Instant::now(),
        });
    }

    /// Sends each batch in doubt again, oldest first, until one gets no
    /// answer either (the database is still out of reach: the rest wait
    /// for the next round). `last`: the writer is stopping, so what is
    /// still in doubt after this is given up.
    async fn settle(&mut self, last: bool) {
        while let Some(doubt) = self.in_doubt.pop_front() {
            let n = doubt.records.len() as u64;
            match self.sampling(self.insert(doubt.id, &doubt.records)).await {
                Ok(inserted) => {
                    self.written.increment(n);
                    tracing::info!(
                        records = n,
                        landed_before = inserted == 0,
                        "an audit batch in doubt is written"
                    );
                }
                Err(Failure { error, .. }) => {
                    self.errors.increment(1);
                    if last || doubt.since.elapsed() >= IN_DOUBT_FOR {
                        self.give_up(doubt, "an audit batch stayed in doubt");
                    } else {
                        tracing::debug!(%error, "an audit batch is still in doubt");
                        self.in_doubt.push_front(doubt);
                    }
                    break;
                }
            }
        }
        if last {
            while let Some(doubt) = self.in_doubt.pop_front() {
                self.give_up(doubt, "an audit batch stayed in doubt");
            }
        }
    }

    fn give_up(&self, doubt: InDoubt, why: &'static str) {
        let n = doubt.records.len() as u64;
        self.unconfirmed.increment(n);
        tracing::warn!(
            records = n,
            "{why}: counted as dropped (unconfirmed); its rows may or may not be in gk_audit"
        );
    }

    /// Runs `work`, setting the depth gauge every `DRAIN_INTERVAL` while it
    /// lasts: a writer stuck on a slow database must not hide a full queue.
    async fn sampling<T>(&self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => self.depth.set(self.queue.len() as f64),
            }
        }
    }

    /// The batch's marker and rows in one statement; the rows inserted (0
    /// when the batch had landed before).
    async fn insert(&self, id: i64, batch: &[AuditRecord]) -> Result<u64, Failure> {
        let client = self.pool.get().await.map_err(Failure::not_written)?;
        let statement = client
            .prepare_cached(INSERT)
            .await
            .map_err(Failure::not_written)?;
        let c = Columns::of(batch);
        let records = i32::try_from(batch.len()).unwrap_or(i32::MAX);
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
                    &id,
                    &records,
                ],
            )
            .await
            .map_err(Failure::of_insert)
    }
}

/// A random start for batch ids; the clock and the process id when the
/// system has no randomness to give (ids then still differ across restarts).
fn first_batch_id() -> i64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return i64::from_le_bytes(bytes);
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    nanos ^ (i64::from(std::process::id()) << 40)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_error_shows_its_sqlstate_only() {
        // No server needed: a pool error of another kind shows as itself.
        let e = WriteError::Pool(PoolError::Closed);
        assert!(e.to_string().starts_with("connection pool:"), "{e}");
    }

    #[test]
    fn only_a_failure_of_the_insert_without_an_answer_is_in_doubt() {
        assert!(!Failure::not_written(PoolError::Closed).in_doubt);
    }

    #[test]
    fn batch_ids_start_at_random() {
        assert_ne!(first_batch_id(), first_batch_id());
    }
}
