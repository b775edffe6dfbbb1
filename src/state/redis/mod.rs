//! Redis: the state replicas share (DESIGN §2, §6) — rate-limit states,
//! HMAC nonces, failed-credential counters and the second-level credential
//! cache.
//!
//! Every operation goes through `Redis::call`, which bounds it by the
//! configured timeout (pool wait included) and turns any failure into
//! `Unavailable`; the caller then applies the failure mode. A failure alone
//! does not mark Redis down — one slow answer is not an outage — but
//! failures that go on with no answer between them do (`health`); then
//! later calls fail at once, without waiting, until the probe
//! (`Redis::watch`) gets an answer again: an outage costs each request
//! nothing, and recovery needs nobody. The probe also announces this
//! replica (`replicas`), so that in an outage each replica knows its share
//! of a limit.
//!
//! Connections are per thread. A multiplexed connection's I/O runs in a
//! task on the runtime that opened it; shared by every worker, each call
//! crossed threads twice (to that task and back), which cost a third of a
//! decision's CPU in the benchmark. So each thread that calls Redis opens
//! its own connection through the pool (which bounds how many are opened
//! at once and how long that may take), on its own runtime, takes it out
//! of the pool, and keeps it until a failure.
//!
//! The URL names the topology (`config::redis_url`): one node, Sentinel or
//! Cluster; `topology` opens the connections, and [`Redis::hash_tag`] names
//! the keys one script call touches so that, in a cluster, they share a
//! hash slot.

pub mod batch;
pub mod health;
pub mod key_cache;
pub mod limiter_script;
pub mod replicas;
pub mod topology;

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, RedisResult};
use deadpool_redis::{PoolConfig, Timeouts};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{RedisFailure, RedisSettings};
use crate::metrics;
pub use topology::Connection;
use topology::Pool;

use health::{AfterFailure, Health};
use replicas::{Replicas, ANNOUNCE_EVERY, ANNOUNCE_TIMEOUT};

/// Identifies each `Redis` handle in the threads' connection lists.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_CONNECTIONS: RefCell<Vec<ThreadConnection>> = const { RefCell::new(Vec::new()) };
}

/// A thread's own connection to one `Redis` handle's server; counted in
/// the handle's `open` while it lives.
struct ThreadConnection {
    owner: u64,
    epoch: u64,
    conn: Connection,
    open: Arc<AtomicUsize>,
}

impl ThreadConnection {
    fn new(redis: &Redis, epoch: u64, conn: Connection) -> ThreadConnection {
        redis.open.fetch_add(1, Ordering::Relaxed);
        ThreadConnection {
            owner: redis.id,
            epoch,
            conn,
            open: redis.open.clone(),
        }
    }
}

impl Drop for ThreadConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Redis could not answer in time (or at all): apply the failure mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Why one attempt got no answer, for the log line (the client's errors
/// name hosts and commands, never values). Cloned to every caller a batch
/// was answering.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    #[error("timed out")]
    TimedOut,
    #[error("the batch was abandoned before its flush")]
    Abandoned,
    #[error("{0}")]
    Failed(Arc<str>),
}

impl From<deadpool_redis::PoolError> for AttemptError {
    fn from(e: deadpool_redis::PoolError) -> AttemptError {
        AttemptError::Failed(e.to_string().into())
    }
}

impl From<redis::RedisError> for AttemptError {
    fn from(e: redis::RedisError) -> AttemptError {
        AttemptError::Failed(e.to_string().into())
    }
}

/// How often the probe asks Redis whether it answers, and refreshes the
/// pool gauges.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

pub struct Redis {
    pool: Pool,
    /// Tells this handle's connections from another's in a thread's list.
    id: u64,
    /// Bumped on every failure: a thread's connection from an older epoch
    /// is dropped, so after an outage every thread connects afresh.
    epoch: AtomicU64,
    /// Threads' connections currently open (the pool gauge).
    open: Arc<AtomicUsize>,
    prefix: String,
    timeout: Duration,
    failure: RedisFailure,
    /// Up, suspect or down: see `health`.
    health: Health,
    replicas: Arc<Replicas>,
}

impl Redis {
    /// A pool for `settings`; connects lazily, so a Redis that is down at
    /// start-up is an outage like any other, not a failed start.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Redis> {
        let mut pool = PoolConfig::new(settings.pool_size);
        pool.timeouts = Timeouts {
            wait: Some(settings.timeout),
            create: Some(settings.timeout),
            recycle: Some(settings.timeout),
        };
        let pool = Pool::new(settings, pool)?;
        Ok(Redis {
            pool,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
            open: Arc::new(AtomicUsize::new(0)),
            prefix: settings.prefix.clone(),
            timeout: settings.timeout,
            failure: settings.failure,
            health: Health::new(std::time::Instant::now()),
            replicas: Arc::new(Replicas::new(format!("{}replicas", settings.prefix))),
        })
    }

    pub fn failure_mode(&self) -> RedisFailure {
        self.failure
    }

    /// Whether Redis is taken to answer: not marked down by a pattern of
    /// failures (`health`).
    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// The replicas sharing this Redis, as last announced.
    pub fn replicas(&self) -> Arc<Replicas> {
        Arc::clone(&self.replicas)
    }

    /// `prefix` + `name`: every key gatekeeper writes starts with the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether Redis is a cluster: the keys of one script call must then
    /// hash to one slot.
    pub fn is_cluster(&self) -> bool {
        self.pool.is_cluster()
    }

    /// What to put in the names of keys one script call touches together,
    /// after the prefix: in a cluster `{group}`, a hash tag, so that they
    /// hash to one slot (Redis hashes only the text between the first `{`
    /// and the next `}`); nothing otherwise, so the names on one node or
    /// behind Sentinel are what they always were. The slot is a function of
    /// the prefix and `group` alone, whatever either holds.
    pub fn hash_tag(&self, group: &str) -> String {
        hash_tag(self.is_cluster(), group)
    }

    /// Runs `op` on a pooled connection within the timeout. `what` names
    /// the operation in metrics and logs. While Redis is marked down this
    /// fails at once.
    pub async fn call<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(self.fell_back(what));
        }
        self.attempt(op)
            .await
            .map_err(|error| self.failed(what, &error))
    }

    /// `op` on this thread's connection within the timeout, without the
    /// down mark or failure handling; the error as text for `failed`.
    async fn attempt<T, F, Fut>(&self, op: F) -> Result<T, AttemptError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.attempt_until(Instant::now() + self.timeout, op).await
    }

    /// `attempt`, bounded by `deadline` instead of the timeout from now.
    async fn attempt_until<T, F, Fut>(&self, deadline: Instant, op: F) -> Result<T, AttemptError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            Ok(op(conn).await?)
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(answer)) => {
                self.health.answered();
                Ok(answer)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(AttemptError::TimedOut),
        }
    }

    /// This thread's connection, opened on first use and after a failure.
    async fn connection(&self) -> Result<Connection, deadpool_redis::PoolError> {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if let Some(conn) = self.thread_connection(epoch) {
            return Ok(conn);
        }
        // Out of the pool for good: back in it, it could be handed to
        // another thread, whose calls would cross threads again.
        let opened = self.pool.take().await?;
        THREAD_CONNECTIONS.with(|list| {
            let mut list = list.borrow_mut();
            // Another task of this thread may have opened one meanwhile:
            // keep that one, close this.
            if let Some(kept) = list.iter().find(|c| c.owner == self.id && c.epoch == epoch) {
                return Ok(kept.conn.clone());
            }
            list.push(ThreadConnection::new(self, epoch, opened.clone()));
            Ok(opened)
        })
    }

    /// This thread's connection of the current epoch; an older one is
    /// closed.
    fn thread_connection(&self, epoch: u64) -> Option<Connection> {
        THREAD_CONNECTIONS.with(|list| {
            let mut list = list.borrow_mut();
            let at = list.iter().position(|c| c.owner == self.id)?;
            if list[at].epoch == epoch {
                return Some(list[at].conn.clone());
            }
            list.swap_remove(at);
            None
        })
    }

    fn failed(&self, what: &'static str, error: &AttemptError) -> Unavailable {
        ::metrics::counter!(metrics::REDIS_ERRORS, "op" => what).increment(1);
        // Errors from the client name hosts and commands, never values.
        match self.missed(error) {
            AfterFailure::MarkedDown => {
                tracing::warn!(op = what, %error, "Redis unavailable; falling back");
            }
            AfterFailure::Suspect => {
                tracing::debug!(op = what, %error, "Redis missed an answer; not down yet");
            }
            AfterFailure::AlreadyDown => {}
        }
        self.fell_back(what)
    }

    /// Counts a missed answer (`health`) and decides whether the
    /// connections are the broken part: then every thread takes a fresh one
    /// on its next call. A connection that only timed out may just be slow:
    /// it is kept while Redis is merely suspect — replacing every thread's
    /// at once means a handshake of several round trips each, through the
    /// same slow path, which then misses the timeout too. Once Redis is
    /// marked down, and on any other error, they are replaced.
    fn missed(&self, error: &AttemptError) -> AfterFailure {
        let after = self.health.failed(std::time::Instant::now());
        if !matches!(error, AttemptError::TimedOut) || after != AfterFailure::Suspect {
            self.forget_connections();
        }
        after
    }

    fn forget_connections(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    fn fell_back(&self, what: &'static str) -> Unavailable {
        ::metrics::counter!(metrics::REDIS_FALLBACKS, "op" => what).increment(1);
        Unavailable
    }

    /// One PING within the timeout, bypassing the down mark.
    async fn ping(&self) -> Result<(), AttemptError> {
        let attempt = async {
            let mut conn = self.connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok(())
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::TimedOut),
        }
    }

    /// Probes until `stop` flips: counts a missed answer as a failure
    /// (`health` marks Redis down on a pattern of them), marks Redis up
    /// again once it answers, announces this replica every
    /// `ANNOUNCE_EVERY`, and keeps the pool gauges current. On `stop`,
    /// withdraws this replica's announcement.
    pub async fn watch(&self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_announced: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            // Behind Sentinel, connections follow a new master at once.
            if self.pool.master_moved(self.timeout).await {
                self.forget_connections();
            }
            // Asked even while up, so an idle replica notices an outage too.
            match self.ping().await {
                Ok(()) => {
                    if self.health.probe_answered() {
                        tracing::info!("Redis answers again");
                    }
                    if last_announced.is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY) {
                        last_announced = Some(Instant::now());
                        self.announce().await;
                    }
                }
                Err(error) => {
                    if self.missed(&error) == AfterFailure::MarkedDown {
                        tracing::warn!(%error, "Redis does not answer; falling back");
                    }
                }
            }
            let up = self.is_up();
            ::metrics::gauge!(metrics::REDIS_UP).set(if up { 1.0 } else { 0.0 });
            let status = self.pool.status();
            let open = self.open.load(Ordering::Relaxed);
            ::metrics::gauge!(metrics::REDIS_POOL_SIZE).set(open as f64);
            ::metrics::gauge!(metrics::REDIS_POOL_AVAILABLE).set(status.available as f64);
            ::metrics::gauge!(metrics::REDIS_POOL_WAITING).set(status.waiting as f64);
        }
        let replicas = &self.replicas;
        let _ = self.attempt(|conn| replicas.withdraw(conn)).await;
    }

    /// Refreshes this replica's entry and the count of live replicas; a
    /// missed answer leaves the last count (the probe judges health).
    async fn announce(&self) {
        let replicas = &self.replicas;
        let deadline = Instant::now() + ANNOUNCE_TIMEOUT;
        match self
            .attempt_until(deadline, |conn| replicas.announce(conn))
            .await
        {
            Ok(count) => ::metrics::gauge!(metrics::REDIS_REPLICAS).set(f64::from(count)),
            Err(error) => tracing::debug!(%error, "replica announcement unanswered"),
        }
    }

    /// Accepts (client, nonce) once until `ttl_secs` from now: `SET NX EX`,
    /// atomic across replicas. The key is a digest, so neither the client's
    /// chosen nonce nor its length reaches Redis as a name. Also answers
    /// since when Redis remembers nonces (the epoch marker, see
    /// [`NONCE_SCRIPT`]), created with `now` when missing — one round trip.
    pub async fn insert_nonce_once(
        &self,
        client: &str,
        nonce: &str,
        ttl_secs: u64,
        now: i64,
    ) -> Result<(bool, i64), Unavailable> {
        let tag = self.hash_tag(&nonce_bucket(client));
        let key = self.key(&format!("{tag}nonce:{}", name_digest(&[client, nonce])));
        let epoch = self.key(&format!("{tag}{NONCE_EPOCH}"));
        self.call("nonce", |mut conn| async move {
            let call = |command: &str, script: &str, mode: &str| {
                let mut cmd = redis::cmd(command);
                cmd.arg(script).arg(2).arg(&key).arg(&epoch);
                cmd.arg(ttl_secs.max(1)).arg(nonce_epoch_for(now)).arg(mode);
                cmd
            };
            let kept = call("EVALSHA", NONCE_SCRIPT_SHA.as_str(), "keep")
                .query_async::<(i64, i64)>(&mut conn)
                .await;
            let (fresh, began) = match kept {
                // Redis forgot its scripts: it restarted (or failed over,
                // or was told SCRIPT FLUSH) and may have kept only part of
                // its data. Begin a new epoch in the call that loads it.
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                    call("EVAL", NONCE_SCRIPT, "reset")
                        .query_async::<(i64, i64)>(&mut conn)
                        .await?
                }
                other => other?,
            };
            Ok((fresh == 1, began))
        })
        .await
    }

    /// Creates the epoch marker unless it exists, and begins a new epoch
    /// if Redis lacks the nonce script (see [`NONCE_SCRIPT`]), so that a
    /// first start, or a start after Redis lost its data, begins the
    /// nonces' memory at once rather than at the first signed request.
    /// In a cluster every bucket's marker is marked (see [`nonce_bucket`]).
    pub async fn mark_nonce_epoch(&self, now: i64) -> Result<(), Unavailable> {
        if !self.is_cluster() {
            return self.mark_one_nonce_epoch(self.key(NONCE_EPOCH), now).await;
        }
        for bucket in 0..NONCE_BUCKETS {
            let tag = self.hash_tag(&format!("n{bucket}"));
            self.mark_one_nonce_epoch(self.key(&format!("{tag}{NONCE_EPOCH}")), now)
                .await?;
        }
        Ok(())
    }

    async fn mark_one_nonce_epoch(&self, epoch: String, now: i64) -> Result<(), Unavailable> {
        self.call("nonce_epoch", |mut conn| async move {
            let call = |command: &str, script: &str, mode: &str| {
                let mut cmd = redis::cmd(command);
                cmd.arg(script).arg(1).arg(&epoch);
                cmd.arg(0).arg(nonce_epoch_for(now)).arg(mode);
                cmd
            };
            let kept = call("EVALSHA", NONCE_SCRIPT_SHA.as_str(), "keep")
                .query_async::<(i64, i64)>(&mut conn)
                .await;
            match kept {
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                    call("EVAL", NONCE_SCRIPT, "reset")
                        .query_async::<(i64, i64)>(&mut conn)
                        .await?;
                }
                other => {
                    other?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// `{group}` when `cluster` (`_` for an empty group: `{}` tags nothing),
/// else nothing.
pub fn hash_tag(cluster: bool, group: &str) -> String {
    match (cluster, group.is_empty()) {
        (false, _) => String::new(),
        (true, true) => "{_}".to_owned(),
        (true, false) => format!("{{{group}}}"),
    }
}

/// The epoch marker's name under the prefix: the Unix second Redis's
/// memory of nonces began. No TTL: it lives exactly as long as the keyspace
/// keeps what it was given (see README, "Redis", on eviction).
pub const NONCE_EPOCH: &str = "nonce-epoch";

/// In a cluster, a nonce and the epoch marker it is judged by must share a
/// hash slot (one script call touches both), and a master that loses its
/// data loses its own markers with its nonces. So clients are spread over
/// this many buckets, each a hash tag with its own marker, all created at
/// start-up; one node and Sentinel keep the single untagged marker.
pub const NONCE_BUCKETS: u32 = 16;

/// The bucket (`n0`…`n15`) of `client`'s nonces; only a cluster tags by it.
fn nonce_bucket(client: &str) -> String {
    let digest = Sha256::digest(client.as_bytes());
    format!("n{}", u32::from(digest[0]) % NONCE_BUCKETS)
}

/// The second a marker created at `now` records: one later, for replicas
/// whose clocks run up to a second ahead of the one that writes it (a
/// nonce they accepted "at" that second must still count as before it).
fn nonce_epoch_for(now: i64) -> i64 {
    now.saturating_add(1)
}

/// KEYS[1]: the nonce, KEYS[2]: the epoch marker (or KEYS[1] the marker
/// alone, to mark it without a nonce). ARGV[1]: the nonce's TTL in seconds, ARGV[2]: the second to record when the marker is
/// missing, ARGV[3]: "reset" to record it anyway (unless later). Returns
/// {1 if the nonce was new else 0, the marker}. A marker that is not an
/// integer fails the call: no answer, never an allow.
///
/// The script is called by its SHA; Redis answering NOSCRIPT means its
/// script cache is empty, which it is after every restart — including one
/// that reloaded a snapshot older than the last nonces (RDB), and a
/// failover to a replica (scripts are not replicated). The same call then
/// runs the script in full with "reset", loading it and starting a new
/// epoch at once, so no replica's `EVALSHA` succeeds between the two.
pub const NONCE_SCRIPT: &str = r#"
local marker = KEYS[#KEYS]
local began = redis.call('GET', marker)
if not began or (ARGV[3] == 'reset' and tonumber(began) and tonumber(began) < tonumber(ARGV[2])) then
  began = ARGV[2]
  redis.call('SET', marker, began)
end
local n = tonumber(began)
if not n or n ~= math.floor(n) then
  return redis.error_reply('bad nonce epoch')
end
if #KEYS == 2 and redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return {1, n}
end
return {0, n}
"#;

static NONCE_SCRIPT_SHA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| redis::Script::new(NONCE_SCRIPT).get_hash().to_owned());

/// Hex SHA-256 of length-prefixed parts: a fixed-size key name for values a
/// client chose.
pub fn name_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}
