//! What a decision asks of the outside world, and where it keeps what it
//! remembers: rate limits and failed-credential counts (`limits`), HMAC
//! nonces (`nonces`), API keys missing from the snapshot (`keys`) and
//! verified Basic secrets (`bcrypt`) — in process, in Redis (`redis/`)
//! shared by the replicas, or in PostgreSQL.
//!
//! The pipeline (`decide`) sees the stores through the small traits below,
//! one per capability with two implementations; it never names Redis or
//! PostgreSQL. What happens when Redis cannot answer is written once, in
//! `fallback`. A store that cannot answer returns an [`Outage`] naming
//! itself. Time comes from the injected `Clock`: no cache or limiter here
//! reads the clock itself.

pub mod bcrypt;
pub mod fallback;
pub mod keys;
pub mod limits;
pub mod nonces;
pub mod redis;
pub mod ttl_cache;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RedisFailure;
use crate::core::decision::RateInfo;
use crate::core::limiter::{Charge, LocalLimiter, Mode, RateDenied};
use crate::core::model::{Digest, KeyRecord};
use crate::error::Outage;

use bcrypt::BasicVerifier;
use fallback::Fallback;
use limits::{LocalLimits, RedisLimits};
use nonces::{HandedOver, Handover, NonceStore, RedisNonces, Side};
use redis::Redis;

/// A store's answer, later.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, Outage>> + Send + 'a>>;

/// What the limits say: admitted (with the headers of the tightest limit)
/// or refused.
pub type RateVerdict = Result<Option<RateInfo>, RateDenied>;

/// GCRA rate limits (DESIGN §6).
pub trait Limits: Send + Sync {
    /// Judges `charges` at `now_nanos` (the injected clock) and, in
    /// `Mode::Charge`, charges them all if all admit. `what` names the
    /// operation in metrics and logs.
    fn ask<'a>(
        &'a self,
        what: &'static str,
        charges: &'a [Charge<'a>],
        mode: Mode,
        now_nanos: u64,
    ) -> Answer<'a, RateVerdict>;

    /// Marks `charges` as spent at `now_nanos`: a store standing in for
    /// another learns that the other refused them (`fallback`). Only the
    /// in-process store keeps anything.
    fn exhaust(&self, _charges: &[Charge<'_>], _now_nanos: u64) {}
}

/// HMAC nonces, each accepted once while its signature could be fresh.
pub trait Nonces: Send + Sync {
    /// Remembers (client, nonce) until the Unix second `until`, and says
    /// whether it was new and since when the store remembers.
    fn insert_once<'a>(
        &'a self,
        client: &'a str,
        nonce: &'a str,
        now: i64,
        until: i64,
    ) -> Answer<'a, NonceCheck>;
}

/// A nonce store's answer for one nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceCheck {
    /// Not remembered before (and remembered now); `false` is a replay.
    pub fresh: bool,
    /// The Unix second the store's memory began: what was accepted while
    /// the clock read this second or earlier may be forgotten (a restart
    /// of an in-process store, Redis losing its data), so a signature that
    /// could have been accepted by then is refused (`decide`).
    pub began: i64,
}

pub type KeyLookup<'a> = Answer<'a, Option<KeyRecord>>;

/// Where a key missing from the snapshot may still be found: in PostgreSQL
/// mode, a key created since the last reload. Only misses ask it, so the
/// hot path never waits on the database for a known key.
pub trait KeyStore: Send + Sync + 'static {
    fn find_key(&self, digest: Digest) -> KeyLookup<'_>;
}

/// PostgreSQL mode's part of the state: keys are looked up per request,
/// the snapshot must be confirmed by its source within `max_staleness`,
/// and each key's last use is gathered for the source to write.
pub struct Managed {
    pub keys: Arc<dyn KeyStore>,
    pub max_staleness: Duration,
}

/// Everything a decision may ask, built once per mode.
pub struct State {
    pub limits: Box<dyn Limits>,
    /// Failed credentials per source address: a defence, so it falls back
    /// to the in-process counts whatever `GATEKEEPER_REDIS_FAILURE` says.
    pub failures: Box<dyn Limits>,
    pub nonces: Box<dyn Nonces>,
    pub bcrypt: BasicVerifier,
    pub managed: Option<Managed>,
}

/// Bound on remembered HMAC nonces (each lives for twice the window).
pub const NONCE_CAPACITY: usize = 1_000_000;

/// Distinct source addresses whose failures are remembered in process.
pub const FAILURES_CAPACITY: usize = 100_000;

impl State {
    /// DB-less, no Redis: every store in process, their memory beginning
    /// at `started` (Unix seconds, the injected clock).
    pub fn in_process(bcrypt: BasicVerifier, limiter: LocalLimiter, started: i64) -> State {
        State {
            limits: Box::new(LocalLimits::new(limiter)),
            failures: Box::new(LocalLimits::new(LocalLimiter::new(FAILURES_CAPACITY))),
            nonces: Box::new(NonceStore::new(NONCE_CAPACITY, started)),
            bcrypt,
            managed: None,
        }
    }

    /// Limits, nonces and failure counts in Redis, shared with the other
    /// replicas; the in-process stores (begun at `started`) are the
    /// fallback, as `redis`'s failure mode says.
    pub fn shared(
        redis: Arc<Redis>,
        bcrypt: BasicVerifier,
        limiter: LocalLimiter,
        started: i64,
    ) -> State {
        let mode = redis.failure_mode();
        let replicas = redis.replicas();
        let handover = Arc::new(Handover::default());
        State {
            limits: Box::new(Fallback::new(
                RedisLimits::new(redis.clone()),
                LocalLimits::per_replica(limiter, replicas.clone()),
                mode,
            )),
            failures: Box::new(Fallback::new(
                RedisLimits::new(redis.clone()),
                LocalLimits::per_replica(LocalLimiter::new(FAILURES_CAPACITY), replicas),
                RedisFailure::Local,
            )),
            nonces: Box::new(Fallback::new(
                HandedOver::new(RedisNonces::new(redis), Side::Shared, handover.clone()),
                HandedOver::new(
                    NonceStore::new(NONCE_CAPACITY, started),
                    Side::Local,
                    handover,
                ),
                mode,
            )),
            bcrypt,
            managed: None,
        }
    }

    /// PostgreSQL mode: keys missing from the snapshot are looked up in
    /// `keys`, and the snapshot is refused once older than `max_staleness`.
    pub fn managed(mut self, keys: Arc<dyn KeyStore>, max_staleness: Duration) -> State {
        self.managed = Some(Managed {
            keys,
            max_staleness,
        });
        self
    }
}
