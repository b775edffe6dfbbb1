//! A small bounded in-process cache with a time to live: the first level of
//! credential caching (DESIGN §6). Keys are SHA-256 digests of what was
//! presented, never the credential itself. Only positive results go in.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, u64)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, u64)>> {
        // A panic elsewhere cannot leave a map half-written in a way that
        // matters here; keep serving rather than poison every request.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value, unless older than the TTL at `now` (monotonic nanoseconds
    /// from the injected clock).
    pub fn get(&self, key: &K, now: u64) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((value, born)) if self.live(*born, now) => Some(value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V, now: u64) {
        let mut map = self.lock();
        if !map.contains_key(&key) {
            // Full of live entries: an arbitrary one goes. The cache is a
            // speed-up, never the source of truth.
            make_room(&mut map, self.capacity, |(_, born)| self.live(*born, now));
        }
        map.insert(key, (value, now));
    }

    fn live(&self, born: u64, now: u64) -> bool {
        Duration::from_nanos(now.saturating_sub(born)) < self.ttl
    }

    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one more entry in a map bounded by `capacity`: drops the
/// entries that are no longer `live`, then, if it is still full, an
/// arbitrary one. The one eviction routine of every bounded cache here.
pub fn make_room<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    capacity: usize,
    live: impl Fn(&V) -> bool,
) {
    if map.len() < capacity {
        return;
    }
    map.retain(|_, v| live(v));
    if map.len() >= capacity {
        if let Some(victim) = map.keys().next().cloned() {
            map.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let c = TtlCache::new(Duration::from_secs(30), 10);
        let t0 = 1_000_000_000u64;
        c.insert(1u8, "a", t0);
        assert_eq!(c.get(&1, t0 + 29_000_000_000), Some("a"));
        assert_eq!(c.get(&1, t0 + 30_000_000_000), None);
        assert!(c.is_empty());
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let c = TtlCache::new(Duration::from_secs(30), 100);
        let t0 = 1_000_000_000u64;
        for i in 0..1000u32 {
            c.insert(i, i, t0);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.get(&999, t0), Some(999));
    }
}
