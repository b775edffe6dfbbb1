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
//! Every look-up in PostgreSQL is bounded (`GATEKEEPER_DB_TIMEOUT`, pool
//! checkout included): a database that accepts and never answers costs a
//! request that bound, then `store_unavailable`. When PostgreSQL cannot be
//! reached, a stale L1 record (past its TTL, or from before a reload) is
//! still served: the authorizer's staleness bound decides how long that may
//! go on. Once the database is known not to answer (a look-up failed, or
//! the source's health check did), a stale record is served without asking
//! again, so known keys do not each wait out the bound — except by one
//! request a second, which asks (a probe: the listener that would announce
//! a revocation may be what is down, not the database); the first answer
//! from the database (a look-up, a health check, a reload) ends that.

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

/// While the database is silent, how often a look-up holding a stale record
/// still asks it.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

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
    /// Set while PostgreSQL is known not to answer: a stale L1 record is
    /// served without waiting on it.
    silent: AtomicBool,
    /// When a stale record's look-up last asked the silent database
    /// (monotonic nanoseconds).
    probed: AtomicU64,
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
            silent: AtomicBool::new(false),
            probed: AtomicU64::new(0),
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

    /// Whether PostgreSQL answers, as the source's health check and reloads
    /// find: while it does not, stale L1 records serve without asking it.
    pub fn database_answers(&self, answers: bool) {
        self.silent.store(!answers, Ordering::SeqCst);
    }

    /// Whether a look-up that holds a stale record should serve it without
    /// asking: while the database is silent, all but one a [`PROBE_EVERY`].
    fn skip_database(&self) -> bool {
        if !self.silent.load(Ordering::SeqCst) {
            return false;
        }
        let now = self.clock.mono_nanos();
        let last = self.probed.load(Ordering::SeqCst);
        if Duration::from_nanos(now.saturating_sub(last)) < PROBE_EVERY {
            return true;
        }
        // The one that swaps the time is the probe; the others skip.
        self.probed
            .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
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
        if stale.is_some() && self.skip_database() {
            // The database does not answer: asking would only cost this
            // request the look-up bound before the same record is served.
            ::metrics::counter!(CACHE_HITS, "layer" => "l1_stale").increment(1);
            return Ok(stale);
        }
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
        let found = self.pg.find_key(digest).await;
        self.database_answers(found.is_ok());
        match found {
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
    /// Pool checkout, statement preparation and the query, together.
    timeout: Duration,
}

impl PgKeys {
    pub fn new(pool: Pool, timeout: Duration) -> PgKeys {
        PgKeys { pool, timeout }
    }

    async fn look_up(&self, digest: Digest) -> Result<Option<KeyRecord>, Outage> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let client = match tokio::time::timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no PostgreSQL connection for the key look-up");
                return Err(Outage::of(Dependency::Postgres));
            }
            Err(_) => return Err(silent(self.timeout)),
        };
        let query = async {
            // Prepared once per pooled connection, then one round trip.
            let statement = client.prepare_cached(store::FIND_KEY).await?;
            store::find_key_with(&**client, &statement, &digest).await
        };
        match tokio::time::timeout_at(deadline, query).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "key look-up failed");
                Err(Outage::of(Dependency::Postgres))
            }
            Err(_) => {
                // The connection may still get the answer, or never: it is
                // not handed to the next request either way.
                drop(deadpool_postgres::Object::take(client));
                Err(silent(self.timeout))
            }
        }
    }
}

fn silent(waited: Duration) -> Outage {
    tracing::warn!(
        waited_ms = waited.as_millis() as u64,
        "PostgreSQL did not answer the key look-up in time"
    );
    Outage::of(Dependency::Postgres)
}

impl KeyStore for PgKeys {
    fn find_key(&self, digest: Digest) -> KeyLookup<'_> {
        Box::pin(self.look_up(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{ClientId, KeyId, KeyStatus};
    use std::time::Instant;

    /// Monotonic time the test moves (seconds).
    struct TestClock(AtomicU64);

    impl Clock for TestClock {
        fn unix_secs(&self) -> i64 {
            1_800_000_000
        }
        fn mono_nanos(&self) -> u64 {
            self.0.load(Ordering::SeqCst) * 1_000_000_000
        }
    }

    const BOUND: Duration = Duration::from_millis(200);

    /// A database that accepts connections (the kernel's backlog does)
    /// and never answers; kept open while the listener lives.
    fn silent_database() -> (std::net::TcpListener, Pool) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("postgres://u@127.0.0.1:{port}/db");
        (listener, crate::db::pool(&url, 2).unwrap())
    }

    fn record(key: &str) -> KeyRecord {
        KeyRecord {
            id: KeyId::parse("k1").unwrap(),
            client_id: ClientId::parse("c1").unwrap(),
            digest: Digest::of(key.as_bytes()),
            status: KeyStatus::Active,
            expires_at: None,
        }
    }

    async fn timed(keys: &TieredKeys, known: &KeyRecord) -> (Option<KeyRecord>, Duration) {
        let started = Instant::now();
        let found = keys.look_up(known.digest).await.expect("served stale");
        (found, started.elapsed())
    }

    #[tokio::test]
    async fn a_look_up_in_a_silent_database_gives_up_within_the_bound() {
        let (_db, pool) = silent_database();
        let keys = PgKeys::new(pool, BOUND);
        let started = Instant::now();
        let found = keys.find_key(Digest::of(b"some key")).await;
        assert!(found.is_err(), "an outage, not an answer");
        assert!(started.elapsed() < BOUND * 3, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_stale_record_is_served_at_once_while_the_database_is_silent_but_one_look_up_a_second_asks(
    ) {
        let (_db, pool) = silent_database();
        let clock = Arc::new(TestClock(AtomicU64::new(100)));
        let ttl = Duration::from_secs(30);
        let keys = TieredKeys::new(PgKeys::new(pool, BOUND), None, ttl, ttl, 8, clock.clone());
        let known = record("known key");
        keys.remember(&known, (0, 0));
        clock.0.fetch_add(31, Ordering::SeqCst); // past the TTL

        // Not known to be silent yet: asked, then served stale.
        let (found, took) = timed(&keys, &known).await;
        assert_eq!(found.as_ref().map(|r| &r.id), Some(&known.id));
        assert!(took >= BOUND, "the database was asked first");
        // Now it is: served without waiting, but for one probe a second.
        let (found, took) = timed(&keys, &known).await;
        assert!(found.is_some());
        assert!(took >= BOUND, "the first look-up while silent probes");
        for _ in 0..3 {
            let (found, took) = timed(&keys, &known).await;
            assert!(found.is_some());
            assert!(took < BOUND, "served at once: {took:?}");
        }
        clock.0.fetch_add(1, Ordering::SeqCst);
        let (_, took) = timed(&keys, &known).await;
        assert!(took >= BOUND, "a second later, one look-up asks again");
        // An unknown key is always asked, and refused within the bound.
        let started = Instant::now();
        assert!(keys.look_up(Digest::of(b"unknown")).await.is_err());
        assert!(started.elapsed() < BOUND * 3);
        // The database answers again (the source says so): asked again.
        keys.database_answers(true);
        let (_, took) = timed(&keys, &known).await;
        assert!(took >= BOUND);
    }
}
