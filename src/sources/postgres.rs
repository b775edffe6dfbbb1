//! PostgreSQL as the source of truth for a running replica (DESIGN §2, §6).
//!
//! The snapshot is loaded whole at start and reloaded when the database says
//! something changed (`LISTEN gatekeeper`, fed by the triggers of
//! `sql/0001`), periodically as a safety net, and after the listener
//! connection was lost (changes may have been missed). Keys missing from the
//! snapshot are looked up with one indexed query. A failure to reach the
//! database never becomes an allow: the last snapshot keeps serving until it
//! is older than the staleness bound, and look-ups answer `store_unavailable`.
//!
//! A database that accepts connections and never answers is noticed too:
//! the listener connection is asked `SELECT 1` every [`HEARTBEAT`], and one
//! not answered within `GATEKEEPER_DB_TIMEOUT` counts as the connection lost
//! (`/readyz` degraded, stale keys served without asking). Every wait on the
//! database here is bounded — connecting, LISTEN, a reload, a `last_used_at`
//! write — so this task always comes back to its stop signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use crate::core::model::Digest;
use crate::core::policy::Policy;
use crate::core::seal::MasterKey;
use crate::db::store;
use crate::decide::Authorizer;
use crate::signals::Hangups;
use crate::sources::install;
use crate::sources::status::ReloadStatus;
use crate::state::keys::TieredKeys;

/// The channel the triggers notify on.
pub const CHANNEL: &str = "gatekeeper";
/// First and largest wait between listener reconnection attempts.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the listener connection is asked whether the database answers.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The longest a full reload may take: generous (a large policy on a busy
/// database), as the heartbeat, not this, is what notices a silent one.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a `last_used_at` write may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads and validates the whole policy from the database.
pub async fn load_policy(pool: &Pool, key: Option<&MasterKey>) -> anyhow::Result<Policy> {
    let mut client = pool.get().await?;
    // One read-only snapshot transaction: every table as of one instant.
    // Keys are not part of it: they are looked up per request (`state::keys`).
    let doc = store::load_serving_snapshot(&mut client, key).await?;
    Ok(Policy::build(doc)?)
}

/// One notification, as far as a replica cares.
struct Change {
    /// The key whose row changed, for `gk_api_keys`.
    key: Option<Digest>,
}

/// The payload of `gk_notify_change` (sql/0002): only the key digest
/// matters here; anything unreadable still means "reload".
fn change_of(payload: &str) -> Change {
    #[derive(serde::Deserialize)]
    struct Payload {
        digest: Option<String>,
    }
    let key = serde_json::from_str::<Payload>(payload)
        .ok()
        .and_then(|p| p.digest)
        .and_then(|hex| Digest::parse(&format!("sha256:{hex}")));
    Change { key }
}

struct Listener {
    changes: mpsc::Receiver<Change>,
    /// Set when a notification could not be queued: which key it named is
    /// lost, so every shared record must go.
    overflowed: Arc<AtomicBool>,
    /// Drives the connection; ends (closing `changes`) when it does.
    task: tokio::task::JoinHandle<()>,
    /// Asks the connection whether the database answers; it owns the
    /// client, so the session stays open while it runs.
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Also when the source's own task is aborted (the App's stop).
impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        self.heartbeat.abort();
    }
}

/// Keeps one replica's snapshot in step with the database.
pub struct PgSource {
    pub url: String,
    pub pool: Pool,
    pub master_key: Option<MasterKey>,
    pub authorizer: Arc<Authorizer>,
    pub keys: Arc<TieredKeys>,
    pub status: Arc<Mutex<ReloadStatus>>,
    pub reload_interval: Duration,
    /// How often key uses are written to `last_used_at`.
    pub usage_interval: Duration,
    /// How long the heartbeat (and LISTEN) may wait for an answer.
    pub db_timeout: Duration,
    /// A hang-up asks for a full reload: SIGHUP in `serve` (installed
    /// before the listeners answer), a trigger in process.
    pub hangups: Hangups,
}

impl PgSource {
    /// Runs until `stop` flips: listen, reload on change, reconnect on loss.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut hangups = std::mem::replace(&mut self.hangups, Hangups::never());
        let mut backoff = BACKOFF_START;
        loop {
            match self.listen().await {
                Ok(listener) => {
                    backoff = BACKOFF_START;
                    self.listener(true);
                    // Anything may have changed while we were not listening:
                    // flush what was verified against the old state, reload.
                    self.authorizer.forget_verified_secrets();
                    self.keys.flush_shared().await;
                    self.reload("listener_connected").await;
                    let mut listener = listener;
                    let stopped = self.follow(&mut listener, &mut stop, &mut hangups).await;
                    drop(listener);
                    if stopped {
                        return;
                    }
                    self.listener(false);
                    tracing::warn!("lost the PostgreSQL listener connection; reconnecting");
                }
                Err(error) => {
                    self.listener(false);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot listen on PostgreSQL");
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
                // Without a listener the snapshot cannot be trusted to be
                // current anyway: a SIGHUP just retries at once.
                _ = hangups.recv() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Reloads on each change (coalescing a burst) and on the timer, until
    /// the listener connection ends (`false`) or `stop` flips (`true`).
    async fn follow(
        &self,
        listener: &mut Listener,
        stop: &mut watch::Receiver<bool>,
        hangups: &mut Hangups,
    ) -> bool {
        let mut tick = tokio::time::interval(self.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut usage = tokio::time::interval(self.usage_interval);
        usage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    // The last write gets what a request would: a silent
                    // database must not hold the stop for the whole grace.
                    self.flush_usage(self.db_timeout).await;
                    return true;
                }
                _ = usage.tick() => self.flush_usage(USAGE_TIMEOUT).await,
                change = listener.changes.recv() => match change {
                    Some(first) => {
                        // Drop what the changed keys left behind before
                        // anything else, then reload once for the burst.
                        let mut change = Some(first);
                        while let Some(Change { key }) = change {
                            if let Some(digest) = key {
                                self.keys.evict(&digest);
                                self.keys.forget(&digest).await;
                            }
                            change = listener.changes.try_recv().ok();
                        }
                        if listener.overflowed.swap(false, Ordering::SeqCst) {
                            self.keys.flush_shared().await;
                        }
                        self.reload("notify").await;
                    }
                    None => return false,
                },
                _ = tick.tick() => self.reload("periodic").await,
                _ = hangups.recv() => {
                    // The operator asks for everything to be read again:
                    // verified Basic secrets and key records included.
                    self.authorizer.forget_verified_secrets();
                    self.reload("sighup").await;
                }
            }
        }
    }

    /// A dedicated connection (not from the pool) that LISTENs. Its task
    /// polls the connection, forwards each notification, and ends — closing
    /// the channel — when the connection does, or when the heartbeat finds
    /// the database silent and aborts it.
    async fn listen(&self) -> anyhow::Result<Listener> {
        let config = crate::db::parse(&self.url)?;
        let (client, mut connection) = crate::db::open(&config).await?;
        let (tx, changes) = mpsc::channel(1024);
        let overflowed = Arc::new(AtomicBool::new(false));
        let overflow = overflowed.clone();
        let task = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        // A full channel already holds a pending reload; only
                        // the key it named is lost, and the flag says so.
                        if tx.try_send(change_of(n.payload())).is_err() {
                            overflow.store(true, Ordering::SeqCst);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        let listening = tokio::time::timeout(
            self.db_timeout,
            client.batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await;
        match listening {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                task.abort();
                return Err(e.into());
            }
            Err(_) => {
                task.abort();
                anyhow::bail!("PostgreSQL did not answer LISTEN in time");
            }
        }
        let heartbeat = tokio::spawn(heartbeat(
            client,
            task.abort_handle(),
            self.db_timeout,
            self.keys.clone(),
            self.status.clone(),
        ));
        Ok(Listener {
            changes,
            overflowed,
            task,
            heartbeat,
        })
    }

    /// Writes `last_used_at` for the keys used since the last flush, in one
    /// statement (which, by design of the trigger, notifies nobody), or
    /// gives up after `within`.
    async fn flush_usage(&self, within: Duration) {
        let used = self.authorizer.take_key_usage();
        if used.is_empty() {
            return;
        }
        let write = async {
            let client = self.pool.get().await.map_err(|e| e.to_string())?;
            store::touch_keys_last_used(&**client, &used)
                .await
                .map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(within, write).await {
            Ok(written) => written,
            Err(_) => Err("PostgreSQL did not answer in time".to_owned()),
        };
        if let Err(error) = result {
            // Advisory data: dropped, not retried, so an outage cannot grow memory.
            tracing::warn!(%error, keys = used.len(), "cannot record key use");
        }
    }

    async fn reload(&self, trigger: &'static str) {
        let load = load_policy(&self.pool, self.master_key.as_ref());
        let result = match tokio::time::timeout(RELOAD_TIMEOUT, load).await {
            Ok(loaded) => loaded.context("cannot load the policy from PostgreSQL"),
            Err(_) => {
                self.keys.database_answers(false);
                Err(anyhow::anyhow!(
                    "cannot load the policy from PostgreSQL: no answer within {}s",
                    RELOAD_TIMEOUT.as_secs()
                ))
            }
        };
        let loaded = result.is_ok();
        install(&self.authorizer, &self.status, trigger, result, "failed");
        if loaded {
            // Key records were read against the old state: read them again.
            self.keys.clear();
            self.keys.database_answers(true);
        }
    }

    fn listener(&self, connected: bool) {
        listener_connected(&self.status, connected);
    }
}

/// Whether the LISTEN connection is up: in `/readyz` and as a gauge.
fn listener_connected(status: &Mutex<ReloadStatus>, connected: bool) {
    if let Ok(mut s) = status.lock() {
        s.listener_connected = Some(connected);
    }
    ::metrics::gauge!(crate::metrics::POSTGRES_LISTENER).set(if connected { 1.0 } else { 0.0 });
}

/// Asks the listener connection `SELECT 1` every [`HEARTBEAT`]. An error or
/// no answer within `timeout` means the database is gone or silent: the
/// connection is dropped (`connection`, which closes the listener's channel,
/// so the source reconnects and reloads) and stale keys stop asking it.
async fn heartbeat(
    client: tokio_postgres::Client,
    connection: tokio::task::AbortHandle,
    timeout: Duration,
    keys: Arc<TieredKeys>,
    status: Arc<Mutex<ReloadStatus>>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let answered = tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await;
        if matches!(answered, Ok(Ok(_))) {
            keys.database_answers(true);
            continue;
        }
        keys.database_answers(false);
        // At once: the source may be busy (a reload) before it notices.
        listener_connected(&status, false);
        tracing::warn!(
            timeout_ms = timeout.as_millis() as u64,
            "PostgreSQL did not answer the listener's health check; reconnecting"
        );
        connection.abort();
        return;
    }
}
