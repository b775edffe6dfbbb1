//! The in-process HMAC nonce store: each (client, nonce) is accepted once
//! while its signature could still be fresh. Used when Redis is not
//! configured; shared by all workers; bounded in memory.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, PartialEq, Eq)]
pub enum NonceOutcome {
    Fresh,
    Replayed,
    /// The store is full of live nonces: fail closed.
    Full,
}

/// (client id, nonce) → Unix second until which it is remembered.
type Seen = HashMap<(Box<str>, Box<str>), i64>;

pub struct NonceStore {
    seen: Mutex<Seen>,
    capacity: usize,
}

impl NonceStore {
    pub fn new(capacity: usize) -> NonceStore {
        NonceStore {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Records the nonce until `expires_at` (Unix seconds) unless it was seen.
    pub fn insert_once(
        &self,
        client: &str,
        nonce: &str,
        now: i64,
        expires_at: i64,
    ) -> NonceOutcome {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Box::from(client), Box::from(nonce));
        if let Some(until) = seen.get(&key) {
            if *until >= now {
                return NonceOutcome::Replayed;
            }
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= self.capacity {
                return NonceOutcome::Full;
            }
        }
        seen.insert(key, expires_at);
        NonceOutcome::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_client_until_it_expires() {
        let s = NonceStore::new(10);
        assert_eq!(s.insert_once("a", "n", 100, 700), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "n", 200, 800), NonceOutcome::Replayed);
        assert_eq!(s.insert_once("b", "n", 200, 800), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "n", 701, 1301), NonceOutcome::Fresh);
    }

    #[test]
    fn a_full_store_refuses_rather_than_forgets() {
        let s = NonceStore::new(2);
        assert_eq!(s.insert_once("a", "1", 0, 100), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "2", 0, 100), NonceOutcome::Fresh);
        assert_eq!(s.insert_once("a", "3", 0, 100), NonceOutcome::Full);
        assert_eq!(s.insert_once("a", "3", 101, 200), NonceOutcome::Fresh);
    }
}
