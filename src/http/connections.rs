//! Bounds on `/authz` connections, so that an overload is refused at once
//! instead of waiting in the kernel's accept queue, and so that file
//! descriptors stay for the admin listener and the stores.
//!
//! Three numbers, worked out once at start-up ([`Limits::derive`]):
//! - the **budget**: the open-file limit less a reserve for everything else
//!   (the admin listener, PostgreSQL and Redis connections, the runtimes'
//!   own descriptors). `/authz` never holds more descriptors than this, so
//!   `accept` does not meet `EMFILE` and `/readyz` keeps answering;
//! - **max connections** (`GATEKEEPER_MAX_CONNECTIONS`, by default three
//!   quarters of the budget): connections served at once. One more is
//!   accepted and answered `503` with `Connection: close` at once
//!   ([`refuse`]) — nginx's `auth_request` takes any status but 2xx, 401
//!   and 403 as an error and answers 500, which the bundled config turns
//!   into a 503 for the client: an overload fails closed, in milliseconds;
//! - **per worker**: the budget shared between the HTTP workers, given to
//!   actix-server, which stops accepting while every worker holds its share
//!   (then, and only then, connections wait in the kernel's queue,
//!   `GATEKEEPER_BACKLOG`). The quarter of the budget above max connections
//!   is room for refusals in flight.
//!
//! Nothing here reads a request: a refused connection costs one write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use metrics::{Counter, Gauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metrics::{AUTHZ_CONNECTIONS, AUTHZ_CONNECTIONS_REFUSED};

/// Descriptors kept for everything but `/authz` connections and the
/// stores' connections, at least: the admin listener's connections
/// ([`ADMIN_MAX_CONNECTIONS`]), the standard streams, the listeners, the
/// runtimes' own (about 30 at rest with two workers, measured).
pub const RESERVED_FDS: u64 = 64;
/// And per worker thread: its runtime (epoll, eventfd) and its Redis
/// connection, with room to spare.
pub const RESERVED_FDS_PER_WORKER: u64 = 8;
/// The default max connections when the open-file limit is very high:
/// far beyond what nginx keeps open to one upstream.
pub const DEFAULT_MAX_CONNECTIONS_CAP: usize = 16_384;
/// Connections the admin listener serves at once (scrapers and probes).
pub const ADMIN_MAX_CONNECTIONS: usize = 16;
/// The admin listener's accept queue.
pub const ADMIN_BACKLOG: u32 = 64;
/// How long a refused connection waits for the client to close after the
/// 503 (closing with unread bytes makes a reset, which could overtake the
/// answer). Short: a refusal holds a descriptor while it lingers.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(10);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-length: 0\r\n\
connection: close\r\n\
retry-after: 1\r\n\
x-auth-reason: overloaded\r\n\r\n";

/// The numbers of the module doc, for one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft open-file limit they were derived from (None: unlimited).
    pub open_files: Option<u64>,
    /// Descriptors `/authz` connections may hold, served or being refused.
    pub budget: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one worker holds before actix-server stops giving it more.
    pub per_worker: usize,
    /// `max_connections` was asked for above the budget and lowered to it.
    pub lowered: bool,
}

impl Limits {
    /// The limits for `workers` threads and at most `store_connections`
    /// PostgreSQL connections (the pools, the listener, the audit writer)
    /// under an open-file limit of `open_files`, honouring `configured`
    /// (GATEKEEPER_MAX_CONNECTIONS) up to the budget.
    pub fn derive(
        open_files: Option<u64>,
        workers: usize,
        store_connections: usize,
        configured: Option<usize>,
    ) -> Limits {
        let workers = workers.max(1);
        let budget = match open_files {
            Some(limit) => {
                let reserve = (RESERVED_FDS
                    + RESERVED_FDS_PER_WORKER * workers as u64
                    + store_connections as u64)
                    .max(limit / 8);
                usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        }
        // At least one connection per worker, whatever the limit says.
        .max(workers);
        let default = (budget / 4)
            .saturating_mul(3)
            .clamp(1, DEFAULT_MAX_CONNECTIONS_CAP);
        let wanted = configured.unwrap_or(default);
        let max_connections = wanted.min(budget);
        Limits {
            open_files,
            budget,
            max_connections,
            per_worker: (budget / workers).max(1),
            lowered: wanted > max_connections,
        }
    }
}

/// The soft open-file limit (`RLIMIT_NOFILE`); None when unlimited.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the soft open-file limit to the hard one (many systems start
/// services at 1,024 with a much higher hard limit); returns the soft limit
/// before and after. Unprivileged: only up to the hard limit.
pub fn raise_open_file_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised)?;
    }
    Ok((before, getrlimit(Resource::Nofile).current))
}

/// Sets the accept queue of a bound listener (`listen(2)` again: the std
/// listeners are bound with 128).
pub fn set_backlog(listener: impl std::os::fd::AsFd, backlog: u32) -> std::io::Result<()> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    rustix::net::listen(listener, backlog)?;
    Ok(())
}

/// Counts the open `/authz` connections against their bound: shared by
/// every worker.
#[derive(Clone)]
pub struct Gate {
    open: Arc<AtomicUsize>,
    max: usize,
    gauge: Gauge,
    refused: Counter,
}

/// One connection being served; gives its place back when dropped.
pub struct Permit(Gate);

impl Gate {
    /// Builds the metric handles: the recorder must be installed first.
    pub fn new(max: usize) -> Gate {
        let gate = Gate {
            open: Arc::new(AtomicUsize::new(0)),
            max,
            gauge: metrics::gauge!(AUTHZ_CONNECTIONS),
            refused: metrics::counter!(AUTHZ_CONNECTIONS_REFUSED),
        };
        gate.gauge.set(0.0);
        gate.refused.increment(0);
        gate
    }

    /// A place for one more connection, or None (counted as refused) when
    /// `max` are open.
    pub fn enter(&self) -> Option<Permit> {
        let entered = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !entered {
            self.refused.increment(1);
            return None;
        }
        self.gauge.increment(1.0);
        Some(Permit(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.decrement(1.0);
    }
}

/// Answers a connection over the bound: discards what the client already
/// sent, answers a 503 that closes it, then waits (at most
/// [`REFUSAL_LINGER`]) for the client to close its side, discarding what
/// else it sends.
pub async fn refuse<Io: AsyncRead + AsyncWrite + Unpin>(mut io: Io) {
    let answered = async {
        let mut sink = [0u8; 1024];
        while let Some(read) = io.read(&mut sink).now_or_never() {
            if read? == 0 {
                break;
            }
        }
        io.write_all(REFUSAL).await?;
        io.shutdown().await?;
        while io.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answered).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_open_file_limit_keeps_a_reserve_and_refuses_past_three_quarters() {
        // `ulimit -n 256`, 2 workers, 20 store connections: 100 kept back.
        let l = Limits::derive(Some(256), 2, 20, None);
        assert_eq!((l.budget, l.max_connections, l.per_worker), (156, 117, 78));
        assert!(!l.lowered);
        // 1,024 (a common default), 8 workers: 148 kept back.
        let l = Limits::derive(Some(1024), 8, 20, None);
        assert_eq!((l.budget, l.max_connections, l.per_worker), (876, 657, 109));
    }

    #[test]
    fn a_high_limit_keeps_an_eighth_and_caps_the_default() {
        let l = Limits::derive(Some(1 << 20), 4, 20, None);
        assert_eq!(l.budget, (1 << 20) - (1 << 17));
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS_CAP);
        let unlimited = Limits::derive(None, 4, 20, None);
        assert_eq!(unlimited.max_connections, DEFAULT_MAX_CONNECTIONS_CAP);
        assert_eq!(unlimited.per_worker, usize::MAX / 4);
    }

    #[test]
    fn a_configured_bound_is_kept_within_the_budget() {
        assert_eq!(
            Limits::derive(Some(256), 2, 20, Some(10)).max_connections,
            10
        );
        let l = Limits::derive(Some(256), 2, 20, Some(1000));
        assert_eq!((l.max_connections, l.lowered), (156, true));
        // A limit too low for the reserve still serves one per worker.
        let l = Limits::derive(Some(64), 2, 20, None);
        assert_eq!((l.budget, l.max_connections, l.per_worker), (2, 1, 1));
    }

    #[test]
    fn the_gate_admits_up_to_its_bound_and_frees_a_place_on_drop() {
        let gate = Gate::new(2);
        let a = gate.enter().expect("first");
        let _b = gate.enter().expect("second");
        assert!(gate.enter().is_none());
        drop(a);
        assert_eq!(gate.open(), 1);
        assert!(gate.enter().is_some());
    }

    #[tokio::test]
    async fn a_refused_connection_reads_a_503_that_closes_it() {
        let (mut client, server) = tokio::io::duplex(4096);
        client
            .write_all(b"GET /authz HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let refusing = tokio::spawn(refuse(server));
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        drop(client);
        refusing.await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
}
