//! The audit log (DESIGN §7; `GATEKEEPER_AUDIT=postgres`): one row per
//! decision in `gk_audit`, and `gatekeeper audit tail|query` to read it.
//!
//! The request path only builds an [`AuditRecord`] and offers it to a
//! bounded queue ([`AuditSink::try_record`]): it never waits, takes no lock
//! and does no I/O; a full queue drops the record and counts it. A
//! background writer drains the queue in batches — one INSERT per batch —
//! and another task deletes rows past the retention period. On shutdown the
//! writer takes no more records and writes what is queued, bounded in time.
//!
//! A record holds ids, the method, host and normalised path of a request
//! that parsed, the decision, its reason, the source address and the
//! duration: never a credential, a body, a query string or any other header
//! value. Nothing here logs a record's values.

mod retention;
pub mod rows;
mod writer;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use metrics::Counter;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::AuditSettings;
use crate::core::decision::{Decision, Reason};
use crate::core::model::{ClientId, KeyId, Method, RouteId};
use crate::db::DbError;
use crate::metrics::{AUDIT_DROPPED, AUDIT_QUEUE_DEPTH};

pub use rows::AuditRow;

/// Every statement of the audit log, for the test that prepares them all.
pub const STATEMENTS: &[&str] = &[
    writer::INSERT,
    retention::TRY_LOCK,
    retention::DELETE_OLD,
    retention::DELETE_OLD_BATCHES,
    rows::SELECT_LATEST,
    rows::SELECT_AFTER,
    rows::SELECT_MATCHING,
];

/// Connections the audit log uses: the writer's and retention's.
const POOL_SIZE: usize = 2;

/// What the request told us that is safe to keep: nothing when it did not
/// parse (the raw headers are not trusted, nor copied), except the source.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts {
    pub method: Option<Method>,
    /// Lower case, without the port.
    pub host: Option<String>,
    /// Normalised, without the query.
    pub path: Option<String>,
    pub source: Option<IpAddr>,
}

/// One decision, as a row of `gk_audit` will hold it. The ids are the
/// decision's own (shared) ids: queueing a record copies no id.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    pub at: SystemTime,
    /// `X-Request-ID` as the decision log has it: printable, bounded.
    pub request_id: Option<Box<str>>,
    pub client_id: Option<ClientId>,
    pub key_id: Option<KeyId>,
    pub route_id: Option<RouteId>,
    pub request: RequestFacts,
    pub allow: bool,
    pub reason: Reason,
    pub duration_us: i32,
}

impl AuditRecord {
    /// The record of `decision`, made now; an empty `request_id` is none.
    pub fn of(
        decision: &Decision,
        request: RequestFacts,
        request_id: &str,
        elapsed: Duration,
    ) -> AuditRecord {
        let (client_id, key_id) = match decision {
            Decision::Allow(allow) => match &allow.identity {
                Some(who) => (Some(who.client_id.clone()), who.key_id.clone()),
                None => (None, None),
            },
            Decision::Deny(deny) => (deny.client_id.clone(), deny.key_id.clone()),
        };
        AuditRecord {
            at: SystemTime::now(),
            request_id: (!request_id.is_empty()).then(|| Box::from(request_id)),
            client_id,
            key_id,
            route_id: decision.route_id().cloned(),
            request,
            allow: decision.is_allow(),
            reason: decision.reason(),
            duration_us: i32::try_from(elapsed.as_micros()).unwrap_or(i32::MAX),
        }
    }

    pub fn decision(&self) -> &'static str {
        if self.allow {
            "allow"
        } else {
            "deny"
        }
    }
}

/// Where `/authz` puts records: cloneable, never blocking.
#[derive(Clone)]
pub struct AuditSink {
    queue: mpsc::Sender<AuditRecord>,
    /// `gatekeeper_audit_dropped_total{cause="queue_full"}`, resolved once.
    dropped: Counter,
}

/// The receiving end of the queue, which the writer drains.
pub struct AuditQueue(mpsc::Receiver<AuditRecord>);

impl AuditQueue {
    /// Records waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AuditSink {
    /// A queue of `capacity` records.
    pub fn bounded(capacity: usize) -> (AuditSink, AuditQueue) {
        let (tx, rx) = mpsc::channel(capacity);
        let sink = AuditSink {
            queue: tx,
            dropped: metrics::counter!(AUDIT_DROPPED, "cause" => "queue_full"),
        };
        (sink, AuditQueue(rx))
    }

    /// Queues `record`, or drops and counts it when the queue is full (or
    /// the writer has stopped): never waits. True when it was queued.
    pub fn try_record(&self, record: AuditRecord) -> bool {
        if self.queue.try_send(record).is_ok() {
            return true;
        }
        self.dropped.increment(1);
        false
    }

    /// Records waiting to be written.
    fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// The audit log of a serving process, built but not yet running.
pub struct Audit {
    sink: AuditSink,
    writer: writer::Writer,
    retention: retention::Retention,
}

/// The running tasks, stopped by [`RunningAudit::stop`].
pub struct RunningAudit {
    sink: AuditSink,
    stop: watch::Sender<bool>,
    writer: JoinHandle<()>,
    retention: JoinHandle<()>,
}

/// For `serve`, before anything listens: the audit database must answer
/// and have this binary's schema (`gk_audit` included).
pub async fn check_database(settings: &AuditSettings) -> anyhow::Result<()> {
    use anyhow::Context as _;
    crate::db::migrate::ensure_current(&settings.url.0)
        .await
        .context("the audit database (GATEKEEPER_AUDIT_DATABASE_URL, else GATEKEEPER_DATABASE_URL)")
}

impl Audit {
    /// The queue, the writer and retention; nothing connects yet. Builds
    /// the metric handles, so the recorder must be installed first.
    pub fn new(settings: &AuditSettings) -> Result<Audit, DbError> {
        let pool = crate::db::pool(&settings.url.0, POOL_SIZE)?;
        let (sink, queue) = AuditSink::bounded(settings.queue);
        metrics::gauge!(AUDIT_QUEUE_DEPTH).set(0.0);
        sink.dropped.increment(0);
        Ok(Audit {
            sink,
            writer: writer::Writer::new(queue, pool.clone()),
            retention: retention::Retention::new(pool, settings.retention_days),
        })
    }

    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// Spawns the writer and retention on the current runtime.
    pub fn start(self) -> RunningAudit {
        let (stop, stopped) = watch::channel(false);
        RunningAudit {
            sink: self.sink,
            writer: tokio::spawn(self.writer.run(stopped.clone())),
            retention: tokio::spawn(self.retention.run(stopped)),
            stop,
        }
    }
}

impl RunningAudit {
    /// Stops taking records and writes what is queued, for at most
    /// `within`; what is still queued then is lost, and logged as a count.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let mut writer = self.writer;
        if tokio::time::timeout(within, &mut writer).await.is_err() {
            writer.abort();
            tracing::warn!(
                lost = self.sink.queued(),
                within_ms = within.as_millis() as u64,
                "the audit queue was not written out in time"
            );
        }
        self.retention.abort();
        let _ = self.retention.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::core::decision::{Allow, Deny, Identity};

    fn facts() -> RequestFacts {
        RequestFacts {
            method: Method::parse("POST"),
            host: Some("llm.example.com".into()),
            path: Some("/v1/chat".into()),
            source: "10.0.0.1".parse().ok(),
        }
    }

    #[test]
    fn an_allow_records_who_and_shares_the_decisions_ids() {
        let route = RouteId::parse("chat").unwrap();
        let client = ClientId::parse("team-a").unwrap();
        let decision = Decision::Allow(Allow {
            route_id: route.clone(),
            identity: Some(Identity {
                client_id: client.clone(),
                client_name: Arc::from("Team A"),
                key_id: Some(KeyId::parse("k1").unwrap()),
            }),
            rate: None,
            forward_provider_token: false,
        });
        let r = AuditRecord::of(&decision, facts(), "req-1", Duration::from_micros(42));
        assert!(r.allow && r.reason == Reason::Authenticated);
        assert!(std::ptr::eq(r.route_id.as_deref().unwrap(), &*route));
        assert!(std::ptr::eq(r.client_id.as_deref().unwrap(), &*client));
        assert_eq!(r.key_id.as_deref(), Some("k1"));
        assert_eq!(r.request_id.as_deref(), Some("req-1"));
        assert_eq!((r.duration_us, r.decision()), (42, "allow"));
    }

    #[test]
    fn a_deny_records_its_reason_and_an_absent_request_id_is_none() {
        let mut deny = Deny::new(Reason::KeyRevoked);
        deny.client_id = Some(ClientId::parse("team-a").unwrap());
        let r = AuditRecord::of(
            &Decision::Deny(deny),
            RequestFacts::default(),
            "",
            Duration::from_secs(10_000),
        );
        assert_eq!((r.decision(), r.reason), ("deny", Reason::KeyRevoked));
        assert_eq!(r.client_id.as_deref(), Some("team-a"));
        assert!(r.request_id.is_none() && r.route_id.is_none());
        assert_eq!(r.duration_us, i32::MAX);
    }

    #[test]
    fn a_full_queue_drops_without_waiting() {
        let (sink, queue) = AuditSink::bounded(2);
        let record = AuditRecord::of(
            &Decision::Deny(Deny::new(Reason::NoRouteMatch)),
            facts(),
            "",
            Duration::ZERO,
        );
        assert!(sink.try_record(record.clone()));
        assert!(sink.try_record(record.clone()));
        assert!(!sink.try_record(record));
        assert_eq!((queue.len(), sink.queued()), (2, 2));
    }
}
