//! A small bounded in-process cache with a time to live: the first level of
//! credential caching (DESIGN §6). Keys are SHA-256 digests of what was
//! presented, never the credential itself. Only positive results go in.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic elsewhere cannot leave a map half-written in a way that
        // matters here; keep serving rather than poison every request.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((value, born)) if now.saturating_duration_since(*born) < self.ttl => {
                Some(value.clone())
            }
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V, now: Instant) {
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, (_, born)| now.saturating_duration_since(*born) < ttl);
            if map.len() >= self.capacity {
                // Still full of live entries: drop an arbitrary one. The
                // cache is a speed-up, never the source of truth.
                if let Some(victim) = map.keys().next().cloned() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(key, (value, now));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let c = TtlCache::new(Duration::from_secs(30), 10);
        let t0 = Instant::now();
        c.insert(1u8, "a", t0);
        assert_eq!(c.get(&1, t0 + Duration::from_secs(29)), Some("a"));
        assert_eq!(c.get(&1, t0 + Duration::from_secs(30)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let c = TtlCache::new(Duration::from_secs(30), 100);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            c.insert(i, i, t0);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.get(&999, t0), Some(999));
    }
}
