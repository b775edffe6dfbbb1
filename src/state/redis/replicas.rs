//! How many replicas share Redis, so that in a Redis outage each one can
//! enforce its share of every limit (`state::limits`).
//!
//! Each replica announces itself from the probe (`Redis::watch`) every
//! [`ANNOUNCE_EVERY`]: one script adds its random id to the sorted set
//! `<prefix>replicas`, scored by Redis `TIME` in milliseconds (one clock
//! for all), drops the ids not seen for [`LIVE_FOR`] and answers how many
//! are left. The count is kept in process; when Redis stops answering, the
//! last count known stays, which is what the share is computed from. A
//! replica that stops cleanly removes its id at once; one that dies drops
//! out after [`LIVE_FOR`].
//!
//! A higher count is believed at once (smaller shares: the fleet admits
//! less), a lower one only once announcements have said so for
//! [`LIVE_FOR`]: while Redis is slow, another replica's announcements may
//! miss and its entry lapse for a moment, and a share raised for that
//! moment is what the fleet would over-admit if the outage began then. The
//! announcement is not on a request's path, so it waits up to
//! [`ANNOUNCE_TIMEOUT`], longer than a request would.
//!
//! Limits of the count (README, "Redis failure modes"): a replica that has
//! never reached Redis knows of no other (count 1: it enforces the whole
//! limit); replicas started or stopped during an outage are not counted;
//! one that died less than [`LIVE_FOR`] before it still is (its share is
//! left unused: the fleet admits less, never more).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, aio::ConnectionLike, RedisResult};

/// How often a replica refreshes its entry.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// How long an entry counts without a refresh.
pub const LIVE_FOR: Duration = Duration::from_secs(3);

/// How long an announcement may wait for Redis.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS[1]: the set. ARGV[1]: this replica's id; ARGV[2]: `LIVE_FOR` in ms.
/// Returns the number of replicas seen within `LIVE_FOR`, this one included.
const ANNOUNCE: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local live = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - live)
redis.call('PEXPIRE', KEYS[1], live * 2)
return redis.call('ZCARD', KEYS[1])
"#;

/// This replica's id and the last count of live replicas.
#[derive(Debug)]
pub struct Replicas {
    id: String,
    key: String,
    /// 0 until the first announcement is answered.
    alive: AtomicU32,
    /// Since when announcements have answered fewer than `alive`.
    lower_since: Mutex<Option<Instant>>,
    script: redis::Script,
}

impl Replicas {
    /// A fresh random id; `key` is the set's full name.
    pub fn new(key: String) -> Replicas {
        let mut bytes = [0u8; 8];
        // Without randomness, ids could collide and the count be low (each
        // replica's share too high): then better a distinct one from the
        // clock than none.
        if getrandom::getrandom(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos as u64).to_be_bytes();
        }
        Replicas {
            id: hex::encode(bytes),
            key,
            alive: AtomicU32::new(0),
            lower_since: Mutex::new(None),
            script: redis::Script::new(ANNOUNCE),
        }
    }

    /// The replicas last known to share Redis, this one included; 1 when
    /// none is known yet.
    pub fn count(&self) -> u32 {
        self.alive.load(Ordering::Relaxed).max(1)
    }

    /// Refreshes this replica's entry and the count.
    pub async fn announce<C: ConnectionLike + Send>(&self, mut conn: C) -> RedisResult<u32> {
        let live = u64::try_from(LIVE_FOR.as_millis()).unwrap_or(u64::MAX);
        let count: u32 = self
            .script
            .key(&self.key)
            .arg(&self.id)
            .arg(live)
            .invoke_async(&mut conn)
            .await?;
        self.observe(count, Instant::now());
        Ok(self.count())
    }

    /// An announcement answered `count` at `now`: a higher count is taken
    /// at once, a lower one once it has lasted `LIVE_FOR`.
    fn observe(&self, count: u32, now: Instant) {
        let count = count.max(1);
        let mut lower_since = self.lower_since.lock().unwrap_or_else(|e| e.into_inner());
        if count >= self.alive.load(Ordering::Relaxed) {
            *lower_since = None;
            self.alive.store(count, Ordering::Relaxed);
            return;
        }
        let since = *lower_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= LIVE_FOR {
            *lower_since = None;
            self.alive.store(count, Ordering::Relaxed);
        }
    }

    /// Removes this replica's entry (a clean stop).
    pub async fn withdraw<C: ConnectionLike + Send>(&self, mut conn: C) -> RedisResult<()> {
        redis::cmd("ZREM")
            .arg(&self.key)
            .arg(&self.id)
            .query_async::<()>(&mut conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_count_known_is_one_replica() {
        assert_eq!(Replicas::new("r".into()).count(), 1);
    }

    #[test]
    fn a_higher_count_is_taken_at_once_a_lower_one_once_it_lasts() {
        let r = Replicas::new("r".into());
        let t0 = Instant::now();
        r.observe(2, t0);
        r.observe(3, t0);
        assert_eq!(r.count(), 3);
        r.observe(2, t0 + Duration::from_secs(1));
        assert_eq!(r.count(), 3, "one lapsed announcement");
        r.observe(3, t0 + Duration::from_secs(2));
        r.observe(2, t0 + Duration::from_secs(3));
        r.observe(2, t0 + Duration::from_secs(5));
        assert_eq!(r.count(), 3, "lower for 2 s");
        r.observe(2, t0 + Duration::from_secs(6));
        assert_eq!(r.count(), 2, "lower for 3 s");
    }
}
