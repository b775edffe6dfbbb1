//! Building and running the service: binds both listeners (reporting the
//! real addresses, so tests can bind port 0), starts what keeps the policy
//! current (the file reloader or the PostgreSQL listener) and the audit
//! writer, and stops everything within the grace period when the future
//! it is handed resolves (`serve` hands it `signals::terminate()`, a test
//! a channel).
//!
//! It reads no process signal and installs no handler itself: what the
//! caller injects comes in [`Deps`]. Two things stay process-wide and are
//! the caller's to set up once: the log subscriber and the metrics
//! recorder (`metrics::install`, whose handle `Deps` carries).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_http::HttpService;
use actix_service::{apply_fn_factory, fn_service, Service as _, ServiceFactoryExt as _};
use actix_web::dev::ServerHandle;
use actix_web::{web, App as ActixApp, HttpServer};
use anyhow::Context;
use futures_util::future::Either;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{Audit, AuditSink, RunningAudit};
use crate::clock::Clock;
use crate::config::{Config, Listen};
use crate::core::limiter::LocalLimiter;
use crate::core::policy::Policy;
use crate::core::seal::MasterKey;
use crate::decide::{Authorizer, Settings};
use crate::http::admin::{self, AdminState};
use crate::http::authz::{self, AuthzState};
use crate::http::connections;
use crate::signals::Hangups;
use crate::sources::file::Reloader;
use crate::sources::postgres::PgSource;
use crate::sources::status::ReloadStatus;
use crate::sources::{now_rfc3339, publish_counts};
use crate::state::bcrypt::BasicVerifier;
use crate::state::keys::PgKeys;
use crate::state::keys::TieredKeys;
use crate::state::redis::Redis;
use crate::state::State;

/// Where the policy comes from, and so what keeps it current.
pub enum Source {
    File(PathBuf),
    Postgres {
        url: String,
        pool: deadpool_postgres::Pool,
        master_key: Option<MasterKey>,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(path) => format!("file:{}", path.display()),
            Source::Postgres { .. } => "postgres".to_owned(),
        }
    }
}

/// The task that keeps the snapshot current.
enum Watcher {
    File(Reloader),
    Postgres(PgSource),
}

/// What the caller injects into an [`App`]: the policy and where it comes
/// from, the time, the metrics recorder's handle, and what asks for a
/// reload besides the source's own triggers.
pub struct Deps {
    pub source: Source,
    /// The first policy, loaded from `source` by the caller (so a bad one
    /// fails before anything listens, with the caller's exit code).
    pub policy: Policy,
    pub clock: Arc<dyn Clock>,
    /// The installed recorder's handle, rendered on `/metrics`.
    pub metrics: PrometheusHandle,
    /// Hang-ups: `signals::hangup()` in `serve`, a trigger in tests,
    /// `Hangups::never()` when nothing should ask.
    pub hangups: Hangups,
}

pub struct App {
    authz: actix_web::dev::Server,
    admin: actix_web::dev::Server,
    watcher: Option<Watcher>,
    redis: Option<Arc<Redis>>,
    audit: Option<Audit>,
    clock: Arc<dyn Clock>,
    config: Config,
    /// Where `/authz` listens (a TCP address, or `unix:/path`).
    pub authz_addr: String,
    pub admin_addr: std::net::SocketAddr,
}

impl App {
    /// Binds both listeners and wires everything; nothing runs until
    /// [`App::run`]. Must be called inside the Tokio runtime.
    pub fn build(config: Config, deps: Deps) -> anyhow::Result<App> {
        let Deps {
            source,
            policy,
            clock,
            metrics,
            hangups,
        } = deps;
        let counts = policy.counts();
        publish_counts(counts.routes, counts.clients);
        let redis = match &config.redis {
            Some(settings) => Some(Arc::new(Redis::new(settings)?)),
            None => None,
        };
        let (state, keys) = state_for(&config, &source, redis.as_ref(), &clock);
        let settings = Settings {
            allow_query_key: config.allow_query_key,
            hmac_window_secs: config.hmac_window.as_secs(),
            hmac_max_ahead_secs: config.hmac_max_ahead.as_secs(),
            failed_auth_limit: config.failed_auth_limit,
        };
        let authorizer = Authorizer::new(policy, state, clock.clone(), settings);
        let authorizer = Arc::new(authorizer);
        let status = Arc::new(Mutex::new(ReloadStatus {
            source: source.describe(),
            listener_connected: matches!(source, Source::Postgres { .. }).then_some(false),
            loaded_at: Some(now_rfc3339()),
            ..ReloadStatus::default()
        }));
        let audit = match &config.audit {
            Some(settings) => Some(Audit::new(settings).context("the audit database")?),
            None => None,
        };
        let sink = audit.as_ref().map(Audit::sink);
        let (authz, authz_addr) = authz_server(&config, authorizer.clone(), sink)?;
        let (admin, admin_addr) = admin_server(
            &config,
            AdminState {
                authorizer: authorizer.clone(),
                metrics,
                reload: status.clone(),
                redis: redis.clone(),
            },
        )?;
        let watcher = Some(watcher_for(
            source, keys, authorizer, status, hangups, &config,
        )?);
        Ok(App {
            authz,
            admin,
            watcher,
            redis,
            audit,
            clock,
            config,
            authz_addr,
            admin_addr,
        })
    }

    /// Serves until `shutdown` resolves, then stops within the grace
    /// period (plus at most [`MIN_AUDIT_FLUSH`] for the audit queue):
    /// `/authz` drains first, then the admin listener, then the audit
    /// queue; the reloader and the Redis probe are told at once and joined
    /// last (`Running::stop`).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let interval = self.config.reload_interval;
        let reloader = self.watcher.take().map(|w| match w {
            Watcher::File(r) => tokio::spawn(r.run(interval, stopped.clone())),
            Watcher::Postgres(p) => tokio::spawn(p.run(stopped.clone())),
        });
        let clock = self.clock.clone();
        let probe = self.redis.take().map(|redis| {
            let stopped = stopped.clone();
            tokio::spawn(async move {
                // Bounded by the Redis timeout; when it fails, the first
                // nonce stored creates the marker instead.
                let _ = redis.mark_nonce_epoch(clock.unix_secs()).await;
                redis.watch(stopped).await
            })
        });
        let running = Running {
            authz: (self.authz.handle(), tokio::spawn(self.authz)),
            admin: (self.admin.handle(), tokio::spawn(self.admin)),
            audit: self.audit.take().map(Audit::start),
            reloader,
            probe,
            stop,
        };
        shutdown.await;
        running.stop(self.config.shutdown_grace).await
    }
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Everything a running App owns, each with the way it is stopped.
struct Running {
    authz: (ServerHandle, ServerTask),
    admin: (ServerHandle, ServerTask),
    audit: Option<RunningAudit>,
    /// The file reloader or the PostgreSQL listener.
    reloader: Option<JoinHandle<()>>,
    /// The Redis health probe.
    probe: Option<JoinHandle<()>>,
    /// Tells the reloader and the probe to stop.
    stop: watch::Sender<bool>,
}

impl Running {
    /// Stops everything within `grace`, plus at most [`MIN_AUDIT_FLUSH`],
    /// whatever the stores do (every wait here is bounded by what is left
    /// of the grace): the reloader and the probe are told at once; `/authz`
    /// drains first (so `/readyz` keeps answering while it does); the admin
    /// listener gets what is left of the grace, then the audit queue what
    /// is left again (at least `MIN_AUDIT_FLUSH`); the reloader and the
    /// probe are joined last, and aborted if they are not done by then (a
    /// `last_used_at` write to a database that does not answer is lost).
    async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        let grace_ends = Instant::now() + grace;
        let left = || grace_ends.saturating_duration_since(Instant::now());
        tracing::info!(grace_secs = grace.as_secs(), "shutting down");
        let _ = self.stop.send(true);
        let (authz, authz_task) = self.authz;
        let mut listeners = stop_listener(&authz, authz_task, left(), "/authz").await;
        let (admin, admin_task) = self.admin;
        listeners =
            listeners.and(stop_listener(&admin, admin_task, left(), "the admin listener").await);
        // After the listeners: every decision made is queued by now.
        if let Some(audit) = self.audit {
            audit.stop(left().max(MIN_AUDIT_FLUSH)).await;
        }
        listeners?;
        for (task, what) in [
            (self.reloader, "the reloader"),
            (self.probe, "the Redis probe"),
        ] {
            if let Some(task) = task {
                join_or_abort(task, left(), what).await?;
            }
        }
        Ok(())
    }
}

/// A listener's task, once it ended.
async fn joined(task: ServerTask) -> anyhow::Result<()> {
    task.await
        .context("a listener task failed")?
        .context("a listener failed")
}

/// Joins a task already told to stop; aborts it when it has not ended
/// `within` (the PostgreSQL listener may be waiting on a database that
/// does not answer).
async fn join_or_abort(
    task: JoinHandle<()>,
    within: Duration,
    what: &'static str,
) -> anyhow::Result<()> {
    let abort = task.abort_handle();
    match tokio::time::timeout(within, task).await {
        Ok(joined) => joined.with_context(|| format!("{what} failed")),
        Err(_) => {
            abort.abort();
            tracing::warn!(task = what, "not stopped within the grace period; aborted");
            Ok(())
        }
    }
}

/// Stops a listener gracefully, waiting at most `within`. Its socket
/// closes at once; a connection still open then (a request waiting on a
/// store, a scraper's keep-alive) is the server's to close, by its own
/// `shutdown_timeout`, and is not waited for.
async fn stop_listener(
    handle: &ServerHandle,
    task: ServerTask,
    within: Duration,
    what: &'static str,
) -> anyhow::Result<()> {
    let stopping = handle.stop(true);
    match tokio::time::timeout(within, async {
        stopping.await;
        joined(task).await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                listener = what,
                within_ms = within.as_millis() as u64,
                "not drained within the grace period"
            );
            Ok(())
        }
    }
}

/// The least time the audit queue gets to be written out on shutdown, even
/// when draining requests took the whole grace period.
pub const MIN_AUDIT_FLUSH: Duration = Duration::from_secs(1);

/// What keeps the snapshot current: the file reloader, or the PostgreSQL
/// listener with the key tiers it evicts.
fn watcher_for(
    source: Source,
    keys: Option<Arc<TieredKeys>>,
    authorizer: Arc<Authorizer>,
    status: Arc<Mutex<ReloadStatus>>,
    hangups: Hangups,
    config: &Config,
) -> anyhow::Result<Watcher> {
    Ok(match source {
        Source::File(path) => Watcher::File(Reloader::new(
            path,
            authorizer,
            status,
            hangups,
            config.allow_empty_policy,
        )),
        Source::Postgres {
            url,
            pool,
            master_key,
        } => Watcher::Postgres(PgSource {
            keys: keys.context("PostgreSQL mode without its key store")?,
            url,
            pool,
            master_key,
            authorizer,
            status,
            reload_interval: config.db_reload_interval,
            usage_interval: config.last_used_interval,
            db_timeout: config.db_timeout,
            hangups,
        }),
    })
}

/// What decisions ask of the world in this mode: Redis (when configured)
/// shared by the replicas, else in process; in PostgreSQL mode also the key
/// tiers (L1 → Redis → PostgreSQL), returned for the source to keep fresh.
fn state_for(
    config: &Config,
    source: &Source,
    redis: Option<&Arc<Redis>>,
    clock: &Arc<dyn Clock>,
) -> (State, Option<Arc<TieredKeys>>) {
    let bcrypt = BasicVerifier::new(config.cache_ttl, config.cache_capacity);
    let limiter = LocalLimiter::new(config.limiter_capacity);
    let started = clock.unix_secs();
    let state = match redis {
        Some(redis) => State::shared(redis.clone(), bcrypt, limiter, started),
        None => State::in_process(bcrypt, limiter, started),
    };
    let Source::Postgres { pool, .. } = source else {
        return (state, None);
    };
    let l2_ttl = config
        .redis
        .as_ref()
        .map(|r| r.cache_ttl)
        .unwrap_or_default();
    let keys = Arc::new(TieredKeys::new(
        PgKeys::new(pool.clone(), config.db_timeout),
        redis.cloned(),
        config.cache_ttl,
        l2_ttl,
        config.cache_capacity,
        clock.clone(),
    ));
    let state = state.managed(keys.clone(), config.max_staleness);
    (state, Some(keys))
}

fn admin_server(
    config: &Config,
    state: AdminState,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        ActixApp::new()
            .app_data(state.clone())
            .route("/livez", web::get().to(admin::livez))
            .route("/readyz", web::get().to(admin::readyz))
            .route("/metrics", web::get().to(admin::metrics))
    })
    // Its own worker and accept thread; its descriptors come from the
    // reserve `/authz` never takes (`http::connections`), so it answers
    // while `/authz` is saturated.
    .workers(1)
    .max_connections(connections::ADMIN_MAX_CONNECTIONS)
    .backlog(connections::ADMIN_BACKLOG)
    .disable_signals()
    .shutdown_timeout(config.shutdown_grace.as_secs().max(1))
    .bind(config.admin_listen)
    .with_context(|| {
        format!(
            "cannot listen on GATEKEEPER_ADMIN_LISTEN={}",
            config.admin_listen
        )
    })?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .context("the admin listener has no address")?;
    Ok((server.run(), addr))
}

/// The `/authz` connection limits under this process's open-file limit,
/// logged (with a warning when GATEKEEPER_MAX_CONNECTIONS was lowered).
fn connection_limits(config: &Config, workers: usize) -> connections::Limits {
    let limits = connections::Limits::derive(
        connections::open_file_limit(),
        workers,
        // The policy pool, its listener, the audit writer's two.
        config.db_pool_size + 3,
        config.max_connections,
    );
    if limits.lowered {
        tracing::warn!(
            configured = config.max_connections,
            max_connections = limits.max_connections,
            open_files = limits.open_files,
            "GATEKEEPER_MAX_CONNECTIONS is over what the open-file limit leaves for /authz; the default is used"
        );
    }
    tracing::info!(
        max_connections = limits.max_connections,
        per_worker = limits.per_worker,
        open_files = limits.open_files,
        backlog = config.backlog,
        "connection limits"
    );
    limits
}

fn authz_server(
    config: &Config,
    authorizer: Arc<Authorizer>,
    audit: Option<AuditSink>,
) -> anyhow::Result<(actix_web::dev::Server, String)> {
    let state = Arc::new(AuthzState {
        authorizer,
        max_body: config.max_body,
        trusted_proxies: config.trusted_proxies.clone(),
        audit,
    });
    let workers = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let limits = connection_limits(config, workers);
    let gate = connections::Gate::new(limits.max_connections);
    let builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace.as_secs().max(1))
        .workers(workers)
        .max_concurrent_connections(limits.per_worker);
    // Closes idle keep-alive connections (nginx holds some) as soon as a
    // graceful stop begins, rather than after their keep-alive timeout.
    let stopping = builder.graceful_shutdown_signal();
    // One HTTP/1 service per worker, over TCP or a Unix socket (a macro:
    // the two differ in the stream type the service is generic over).
    macro_rules! http {
        () => {{
            let (state, stopping) = (state.clone(), stopping.clone());
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .finish(fn_service(move |req: actix_http::Request| {
                    let state = state.clone();
                    async move { Ok::<_, actix_http::Error>(authz::serve(req, &state).await) }
                }))
        }};
    }
    // Over the bound, a connection is answered 503 at once (and never
    // reaches the HTTP service); under it, it holds a place until closed.
    macro_rules! gated {
        ($factory:expr) => {{
            let gate = gate.clone();
            apply_fn_factory($factory, move |io, service| match gate.enter() {
                Some(permit) => {
                    let serving = service.call(io);
                    Either::Left(async move {
                        let served = serving.await;
                        drop(permit);
                        served
                    })
                }
                None => Either::Right(async move {
                    connections::refuse(io).await;
                    Ok(())
                }),
            })
        }};
    }
    match &config.listen {
        Listen::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on GATEKEEPER_LISTEN={addr}"))?;
            let bound = listener
                .local_addr()
                .context("the authz listener has no address")?;
            connections::set_backlog(&listener, config.backlog)
                .context("cannot set GATEKEEPER_BACKLOG")?;
            let server = builder
                .listen("authz", listener, move || gated!(http!().tcp()))
                .with_context(|| format!("cannot listen on GATEKEEPER_LISTEN={addr}"))?;
            Ok((server.run(), bound.to_string()))
        }
        Listen::Unix(path) => {
            // A stale socket from a previous run would make bind fail.
            if path.exists() {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
            let listener = std::os::unix::net::UnixListener::bind(path).with_context(|| {
                format!("cannot listen on GATEKEEPER_LISTEN=unix:{}", path.display())
            })?;
            connections::set_backlog(&listener, config.backlog)
                .context("cannot set GATEKEEPER_BACKLOG")?;
            let server = builder
                .listen_uds("authz", listener, move || {
                    gated!(fn_service(|io: tokio::net::UnixStream| async {
                        Ok((io, actix_http::Protocol::Http1, None))
                    })
                    .and_then(http!()))
                })
                .with_context(|| {
                    format!("cannot listen on GATEKEEPER_LISTEN=unix:{}", path.display())
                })?;
            Ok((server.run(), format!("unix:{}", path.display())))
        }
    }
}
