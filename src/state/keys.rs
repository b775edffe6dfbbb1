//! API keys in PostgreSQL mode (DESIGN §6): the replica's snapshot holds
//! routes, clients and grants, and keys are looked up per request through
//! three layers —
//!
//! - L1, in process: digest → record, bounded, fresh for the cache TTL;
//! - L2, Redis (when configured): the record shared by every replica, with
//!   a sliding TTL (`state::redis::key_cache`);
//! - L3, PostgreSQL: one indexed query; its answer fills L2 and L1.
//!
//! Only records the database returned are cached; an unknown key is asked
//! again each time (the failed-credential throttle bounds how often). The
//! caller re-checks status and expiry on every hit. A key whose row changed
//! is evicted from L1 (`evict`) and its L2 record removed (`forget`); every
//! reload makes all of L1 stale (`clear`). A fill that raced with either is
//! dropped, so a record read before a revocation never lands after it.
//!
//! When PostgreSQL cannot be reached, a stale L1 record (past its TTL, or
//! from before a reload) is still served: the authorizer's staleness bound
//! decides how long that may go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::clock::Clock;
use crate::core::model::{Digest, KeyRecord};
use crate::db::store;
use crate::error::{Dependency, Outage};
use crate::metrics::{CACHE_HITS, CACHE_MISSES};
use crate::state::redis::key_cache::{self as l2, Cached, KeyCache, FILL_DEADLINE};
use crate::state::redis::Redis;
use crate::state::ttl_cache::make_room;
use crate::state::{KeyLookup, KeyStore};

struct Entry {
    record: KeyRecord,
    /// Monotonic nanoseconds (the injected clock).
    fetched: u64,
    /// The `epoch` it was fetched in; an older one is stale.
    epoch: u64,
}

pub struct TieredKeys {
    l1: Mutex<HashMap<Digest, Entry>>,
    ttl: Duration,
    capacity: usize,
    /// Bumped by `clear`: a record fetched in an older epoch is stale.
    epoch: AtomicU64,
    /// Bumped by `evict`: a look-up that started before fills nothing, so
    /// a record read before a revocation never lands after it.
    evictions: AtomicU64,
    l2: Option<(Arc<Redis>, KeyCache)>,
    /// L2 is read only after this replica has flushed it once: records
    /// written before it listened may predate a revocation it never heard.
    l2_trusted: AtomicBool,
    pg: PgKeys,
    clock: Arc<dyn Clock>,
}

impl TieredKeys {
    pub fn new(
        pg: PgKeys,
        redis: Option<Arc<Redis>>,
        ttl: Duration,
        l2_ttl: Duration,
        capacity: usize,
        clock: Arc<dyn Clock>,
    ) -> TieredKeys {
        TieredKeys {
            l1: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
            epoch: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            l2: redis.map(|r| (r, KeyCache::new(l2_ttl))),
            l2_trusted: AtomicBool::new(false),
            pg,
            clock,
        }
    }

    fn young(&self, entry: &Entry, now: u64) -> bool {
        Duration::from_nanos(now.saturating_sub(entry.fetched)) < self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Entry>> {
        self.l1.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every L1 record stale: the policy was reloaded, so each is
    /// read again before it is trusted — unless the database cannot be
    /// reached, when a stale record still serves (as the last snapshot
    /// does). A key whose row changed is evicted outright (`evict`).
    pub fn clear(&self) {
        let _l1 = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops one key's L1 record (its row changed).
    pub fn evict(&self, digest: &Digest) {
        let mut l1 = self.lock();
        self.evictions.fetch_add(1, Ordering::SeqCst);
        l1.remove(digest);
    }

    /// Removes one key's L2 record (its row changed).
    pub async fn forget(&self, digest: &Digest) {
        if let Some((redis, _)) = &self.l2 {
            if l2::forget(redis, digest).await.is_err() {
                // Fail closed: stop trusting L2 until the next flush.
                self.l2_trusted.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Orphans every L2 record (notifications may have been missed) and,
    /// once that worked, starts reading L2.
    pub async fn flush_shared(&self) {
        if let Some((redis, _)) = &self.l2 {
            let flushed = l2::flush(redis).await.is_ok();
            self.l2_trusted.store(flushed, Ordering::SeqCst);
        }
    }

    fn fresh(&self, digest: &Digest) -> Result<KeyRecord, Option<KeyRecord>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let now = self.clock.mono_nanos();
        match self.lock().get(digest) {
            Some(e) if e.epoch == epoch && self.young(e, now) => Ok(e.record.clone()),
            Some(e) => Err(Some(e.record.clone())),
            None => Err(None),
        }
    }

    /// Keeps what a look-up that started in `epoch` after `evictions`
    /// found: dropped if a key was evicted meanwhile; stale if L1 was
    /// cleared meanwhile (still good for an outage, never trusted as fresh).
    fn remember(&self, record: &KeyRecord, (epoch, evictions): (u64, u64)) {
        let mut l1 = self.lock();
        if self.evictions.load(Ordering::SeqCst) != evictions {
            return;
        }
        let now = self.clock.mono_nanos();
        if !l1.contains_key(&record.digest) {
            let current = self.epoch.load(Ordering::SeqCst);
            make_room(&mut l1, self.capacity, |e| {
                e.epoch == current && self.young(e, now)
            });
        }
        l1.insert(
            record.digest,
            Entry {
                record: record.clone(),
                fetched: now,
                epoch,
            },
        );
    }

    async fn look_up(&self, digest: Digest) -> Result<Option<KeyRecord>, Outage> {
        let stale = match self.fresh(&digest) {
            Ok(record) => {
                ::metrics::counter!(CACHE_HITS, "layer" => "l1").increment(1);
                return Ok(Some(record));
            }
            Err(stale) => stale,
        };
        ::metrics::counter!(CACHE_MISSES, "layer" => "l1").increment(1);
        let asked = (
            self.epoch.load(Ordering::SeqCst),
            self.evictions.load(Ordering::SeqCst),
        );
        let started = self.clock.mono_nanos();
        let mut generation = None;
        if let Some((redis, cache)) = &self.l2 {
            if self.l2_trusted.load(Ordering::SeqCst) {
                match cache.get(redis, &digest).await {
                    Ok(Cached::Hit(record)) => {
                        ::metrics::counter!(CACHE_HITS, "layer" => "l2").increment(1);
                        self.remember(&record, asked);
                        return Ok(Some(record));
                    }
                    Ok(Cached::Miss { generation: g }) => {
                        ::metrics::counter!(CACHE_MISSES, "layer" => "l2").increment(1);
                        generation = Some(g);
                    }
                    Err(_) => {}
                }
            }
        }
        match self.pg.find_key(digest).await {
            Ok(Some(record)) => {
                if let (Some((redis, cache)), Some(g)) = (&self.l2, &generation) {
                    let took = self.clock.mono_nanos().saturating_sub(started);
                    if Duration::from_nanos(took) < FILL_DEADLINE {
                        // Best effort: a failed fill only costs a later miss.
                        let _ = cache.fill(redis, &record, g).await;
                    }
                }
                self.remember(&record, asked);
                Ok(Some(record))
            }
            Ok(None) => Ok(None),
            Err(outage) => stale.map(Some).ok_or(outage),
        }
    }
}

impl KeyStore for TieredKeys {
    fn find_key(&self, digest: Digest) -> KeyLookup<'_> {
        Box::pin(self.look_up(digest))
    }
}

/// Finds a key in the database: the last layer (L3).
pub struct PgKeys {
    pool: Pool,
}

impl PgKeys {
    pub fn new(pool: Pool) -> PgKeys {
        PgKeys { pool }
    }
}

impl KeyStore for PgKeys {
    fn find_key(&self, digest: Digest) -> KeyLookup<'_> {
        Box::pin(async move {
            let client = self
                .pool
                .get()
                .await
                .map_err(|_| Outage::of(Dependency::Postgres))?;
            // Prepared once per pooled connection, then one round trip.
            let statement = client.prepare_cached(store::FIND_KEY).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot prepare the key look-up");
                Outage::of(Dependency::Postgres)
            })?;
            store::find_key_with(&**client, &statement, &digest)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "key look-up failed");
                    Outage::of(Dependency::Postgres)
                })
        })
    }
}
