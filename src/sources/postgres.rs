//! PostgreSQL as the source of truth for a running replica (DESIGN §2, §6).
//!
//! The snapshot is loaded whole at start and reloaded when the database says
//! something changed (`LISTEN gatekeeper`, fed by the triggers of
//! `sql/0001`), periodically as a safety net, and after the listener
//! connection was lost (changes may have been missed). Keys missing from the
//! snapshot are looked up with one indexed query. A failure to reach the
//! database never becomes an allow: the last snapshot keeps serving until it
//! is older than the staleness bound, and look-ups answer `store_unavailable`.

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
    _client: tokio_postgres::Client,
    changes: mpsc::Receiver<Change>,
    /// Set when a notification could not be queued: which key it named is
    /// lost, so every shared record must go.
    overflowed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
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
                    listener.task.abort();
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
                    self.flush_usage().await;
                    return true;
                }
                _ = usage.tick() => self.flush_usage().await,
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
    /// the channel — when the connection does. The client is returned so the
    /// caller keeps the session open.
    async fn listen(&self) -> anyhow::Result<Listener> {
        let config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid PostgreSQL URL"))?;
        let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
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
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok(Listener {
            _client: client,
            changes,
            overflowed,
            task,
        })
    }

    /// Writes `last_used_at` for the keys used since the last flush, in one
    /// statement (which, by design of the trigger, notifies nobody).
    async fn flush_usage(&self) {
        let used = self.authorizer.take_key_usage();
        if used.is_empty() {
            return;
        }
        let result = match self.pool.get().await {
            Ok(client) => store::touch_keys_last_used(&**client, &used)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            // Advisory data: dropped, not retried, so an outage cannot grow memory.
            tracing::warn!(%error, keys = used.len(), "cannot record key use");
        }
    }

    async fn reload(&self, trigger: &'static str) {
        let result = load_policy(&self.pool, self.master_key.as_ref())
            .await
            .context("cannot load the policy from PostgreSQL");
        let loaded = result.is_ok();
        install(&self.authorizer, &self.status, trigger, result, "failed");
        if loaded {
            // Key records were read against the old state: read them again.
            self.keys.clear();
        }
    }

    /// Whether the LISTEN connection is up: in `/readyz` and as a gauge.
    fn listener(&self, connected: bool) {
        self.update(|s| s.listener_connected = Some(connected));
        ::metrics::gauge!(crate::metrics::POSTGRES_LISTENER).set(if connected { 1.0 } else { 0.0 });
    }

    fn update(&self, f: impl FnOnce(&mut ReloadStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}
