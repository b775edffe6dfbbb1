//! Metric names, descriptions and buckets, in one place (DESIGN §7). Labels
//! come from bounded sets only: decision, reason, route id, cache layer,
//! result. Never a path, a key or a client secret.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use metrics::{Counter, Histogram};

use crate::core::decision::{Decision, Reason};

pub const DECISIONS: &str = "gatekeeper_decisions_total";
pub const DECISION_DURATION: &str = "gatekeeper_decision_duration_seconds";
pub const CACHE_HITS: &str = "gatekeeper_cache_hits_total";
pub const CACHE_MISSES: &str = "gatekeeper_cache_misses_total";
pub const BCRYPT_VERIFICATIONS: &str = "gatekeeper_bcrypt_verifications_total";
pub const RATE_LIMITED: &str = "gatekeeper_rate_limit_rejections_total";
pub const RELOADS: &str = "gatekeeper_config_reloads_total";
pub const ROUTES: &str = "gatekeeper_routes";
pub const CLIENTS: &str = "gatekeeper_clients";
pub const BUILD_INFO: &str = "gatekeeper_build_info";
pub const CREDENTIAL_CHECKS: &str = "gatekeeper_credential_checks_total";
pub const FAILED_AUTH_THROTTLED: &str = "gatekeeper_failed_auth_throttled_total";
/// Decisions refused because a dependency failed, by `dependency`
/// (`error::Dependency`).
pub const OUTAGES: &str = "gatekeeper_outages_total";
pub const REDIS_ERRORS: &str = "gatekeeper_redis_errors_total";
pub const REDIS_FALLBACKS: &str = "gatekeeper_redis_fallbacks_total";
pub const REDIS_UP: &str = "gatekeeper_redis_up";
pub const REDIS_REPLICAS: &str = "gatekeeper_redis_replicas";
pub const POSTGRES_LISTENER: &str = "gatekeeper_postgres_listener_connected";
pub const REDIS_POOL_SIZE: &str = "gatekeeper_redis_pool_connections";
pub const REDIS_POOL_AVAILABLE: &str = "gatekeeper_redis_pool_available";
pub const REDIS_POOL_WAITING: &str = "gatekeeper_redis_pool_waiting";
pub const AUDIT_WRITTEN: &str = "gatekeeper_audit_written_total";
pub const AUDIT_DROPPED: &str = "gatekeeper_audit_dropped_total";
pub const AUDIT_WRITE_ERRORS: &str = "gatekeeper_audit_write_errors_total";
pub const AUDIT_QUEUE_DEPTH: &str = "gatekeeper_audit_queue_depth";
pub const AUDIT_DELETED: &str = "gatekeeper_audit_retention_deleted_total";
pub const AUTHZ_CONNECTIONS: &str = "gatekeeper_authz_connections";
pub const AUTHZ_CONNECTIONS_REFUSED: &str = "gatekeeper_authz_connections_refused_total";

/// Explicit buckets from 10 µs: a decision normally takes microseconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Route label when no route matched.
pub const NO_ROUTE: &str = "none";

/// Installs the global Prometheus recorder and describes every metric.
/// Once per process: a second call fails (the recorder is already set).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(DECISION_DURATION.to_owned()),
            DURATION_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Present from the start, so that the first rejected or failed reload
    // is an increase an alert can see, not a series that appears at 1.
    for result in ["ok", "rejected", "failed"] {
        metrics::counter!(RELOADS, "result" => result).increment(0);
    }
    for dependency in crate::error::Dependency::ALL {
        metrics::counter!(OUTAGES, "dependency" => dependency.as_str()).increment(0);
    }
    keep_up(handle.clone())?;
    Ok(handle)
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until it is folded into the
/// buckets, which only a scrape or `run_upkeep` does: a replica nobody
/// scrapes would grow by each decision's duration sample, without bound
/// (the benchmark saw 87 MB over 5.7 M decisions). A thread of its own, so
/// it runs whatever the runtime is doing.
///
/// It has no owner that stops it, on purpose: it keeps the recorder, which
/// is process-global (installed once, by [`install`]), not an App's. It
/// lives as long as the process, and outlives an App's stop, as the
/// recorder must for the next App in the same process (the test harness).
fn keep_up(handle: PrometheusHandle) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        })?;
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(DECISIONS, "Decisions by outcome, reason and route.");
    describe_histogram!(
        DECISION_DURATION,
        Unit::Seconds,
        "Time to decide, from parsed request to answer."
    );
    describe_counter!(
        OUTAGES,
        "Decisions refused (store_unavailable) because a dependency failed, by dependency."
    );
    describe_counter!(CACHE_HITS, "Credential cache hits by layer.");
    describe_counter!(CACHE_MISSES, "Credential cache misses by layer.");
    describe_counter!(
        BCRYPT_VERIFICATIONS,
        "bcrypt computations run for Basic credentials."
    );
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by route.");
    describe_counter!(RELOADS, "Policy reloads by result (ok, rejected).");
    describe_gauge!(ROUTES, "Routes in the serving policy.");
    describe_gauge!(CLIENTS, "Clients in the serving policy.");
    describe_counter!(
        CREDENTIAL_CHECKS,
        "Presented credentials verified (digest, bcrypt or HMAC work), by type."
    );
    describe_counter!(
        FAILED_AUTH_THROTTLED,
        "Requests refused without verification: their source address failed too often."
    );
    describe_counter!(
        REDIS_ERRORS,
        "Redis operations that failed or timed out, by operation."
    );
    describe_counter!(
        REDIS_FALLBACKS,
        "Operations that did without Redis (failure mode applied), by operation."
    );
    describe_gauge!(
        REDIS_UP,
        "0 while Redis is marked down (failures with no answer between them for 250 ms), else 1; absent without Redis."
    );
    describe_gauge!(
        REDIS_REPLICAS,
        "Replicas last known to share Redis (announced every second); in an outage each enforces its share of a limit."
    );
    describe_gauge!(
        POSTGRES_LISTENER,
        "PostgreSQL mode: 1 while the LISTEN connection is up, else 0."
    );
    describe_gauge!(
        REDIS_POOL_SIZE,
        "Redis connections open: one per thread that has called Redis."
    );
    describe_gauge!(
        REDIS_POOL_AVAILABLE,
        "Idle Redis connections in the pool (threads keep the ones they open: normally 0)."
    );
    describe_gauge!(
        REDIS_POOL_WAITING,
        "Requests waiting for a Redis connection to be opened."
    );
    describe_counter!(AUDIT_WRITTEN, "Audit records written to PostgreSQL.");
    describe_counter!(
        AUDIT_DROPPED,
        "Audit records not written, by cause: queue_full (never waited for), write_failed (their batch failed) or unconfirmed (their batch got no answer and stayed in doubt: its rows may be in gk_audit)."
    );
    describe_counter!(
        AUDIT_WRITE_ERRORS,
        "Failed audit INSERTs: a batch PostgreSQL refused or could not be reached for (dropped), or one sent without an answer (in doubt, sent again)."
    );
    describe_gauge!(
        AUDIT_QUEUE_DEPTH,
        "Audit records queued, waiting to be written (sampled by the writer every 100 ms, also while it waits on PostgreSQL)."
    );
    describe_counter!(
        AUDIT_DELETED,
        "Audit rows deleted for being older than GATEKEEPER_AUDIT_RETENTION_DAYS."
    );
    describe_gauge!(
        AUTHZ_CONNECTIONS,
        "Open /authz connections (at most GATEKEEPER_MAX_CONNECTIONS)."
    );
    describe_counter!(
        AUTHZ_CONNECTIONS_REFUSED,
        "/authz connections refused with a 503 for being over GATEKEEPER_MAX_CONNECTIONS."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs."
    );
}

/// Counts one decision and its duration.
///
/// On the request path: the labelled handles are kept per worker thread, so
/// a decision costs two atomic adds and a histogram sample — no label
/// strings built, no registry look-up (the recorder's would hash the whole
/// key and take a lock every time).
pub fn record_decision(decision: &Decision, seconds: f64) {
    let route = decision.route_id().map_or(NO_ROUTE, |r| &**r);
    let (allow, reason) = (decision.is_allow(), decision.reason());
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        handles.of_route(route, |counters| {
            counters.decision(route, allow, reason).increment(1);
            if reason == Reason::RateLimited {
                counters.rate_limited(route).increment(1);
            }
        });
        handles.duration.record(seconds);
    });
}

/// Counts verification work done for a presented credential of `kind`
/// (`api_key`, `basic`, `hmac`), with the handle kept per thread.
/// A decision refused because `dependency` failed (the label of
/// `error::Dependency::as_str`). Rare by nature: no handle cache.
pub fn outage(dependency: &'static str) {
    metrics::counter!(OUTAGES, "dependency" => dependency).increment(1);
}

pub fn credential_checked(kind: &'static str) {
    CREDENTIAL_CHECK_HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        kept(
            &mut handles,
            kind,
            || metrics::counter!(CREDENTIAL_CHECKS, "type" => kind),
        )
        .increment(1);
    });
}

/// The handle kept under `key` in a short list, registered by `make` the
/// first time: a thread's lists hold a handful of entries, so a scan is
/// cheaper than hashing. (Also the Redis limiter's per-thread batch queues.)
pub(crate) fn kept<K: PartialEq, H>(
    list: &mut Vec<(K, H)>,
    key: K,
    make: impl FnOnce() -> H,
) -> &H {
    let at = match list.iter().position(|(k, _)| *k == key) {
        Some(at) => at,
        None => {
            list.push((key, make()));
            list.len() - 1
        }
    };
    &list[at].1
}

/// Route ids whose handles a worker thread keeps.
const MAX_CACHED_ROUTES: usize = 10_000;

thread_local! {
    static CREDENTIAL_CHECK_HANDLES: RefCell<Vec<(&'static str, Counter)>> =
        const { RefCell::new(Vec::new()) };
    static HANDLES: RefCell<Handles> = RefCell::new(Handles {
        routes: HashMap::new(),
        duration: metrics::histogram!(DECISION_DURATION),
    });
}

struct Handles {
    routes: HashMap<Arc<str>, RouteCounters>,
    duration: Histogram,
}

impl Handles {
    fn of_route(&mut self, route: &str, count: impl FnOnce(&mut RouteCounters)) {
        if let Some(counters) = self.routes.get_mut(route) {
            return count(counters);
        }
        if self.routes.len() >= MAX_CACHED_ROUTES {
            // More routes than this, or many reloads that renamed routes:
            // start over rather than grow without bound.
            self.routes.clear();
        }
        let mut counters = RouteCounters::default();
        count(&mut counters);
        self.routes.insert(Arc::from(route), counters);
    }
}

/// A route's labelled counters: a decision by outcome and reason, or (no
/// reason) the route's rate-limit rejections.
#[derive(Default)]
struct RouteCounters(Vec<(Option<(bool, Reason)>, Counter)>);

impl RouteCounters {
    fn decision(&mut self, route: &str, allow: bool, reason: Reason) -> &Counter {
        kept(&mut self.0, Some((allow, reason)), || {
            let outcome = if allow { "allow" } else { "deny" };
            let labels = [
                ("decision", outcome.to_owned()),
                ("reason", reason.as_str().to_owned()),
                ("route", route.to_owned()),
            ];
            metrics::counter!(DECISIONS, &labels)
        })
    }

    fn rate_limited(&mut self, route: &str) -> &Counter {
        kept(
            &mut self.0,
            None,
            || metrics::counter!(RATE_LIMITED, "route" => route.to_owned()),
        )
    }
}
