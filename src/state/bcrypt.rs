//! Verifying Basic client secrets: bcrypt on the blocking pool, never on an
//! async worker, at most once per distinct credential at a time (concurrent
//! misses for the same credential share one computation), and results cached
//! by the SHA-256 of what was presented so bcrypt runs once, not per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

use crate::core::model::Secret;
use crate::error::{Dependency, Outage};
use crate::state::ttl_cache::TtlCache;

type Flight = Arc<OnceCell<bool>>;

pub struct BasicVerifier {
    verified: TtlCache<[u8; 32], ()>,
    in_flight: Mutex<HashMap<[u8; 32], Flight>>,
    runs: AtomicU64,
}

/// What identifies one verification: the client, the presented secret and
/// the hash it is checked against (a reloaded hash never hits an old entry).
fn cache_key(client_id: &str, secret: &Secret, hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [client_id.as_bytes(), secret.expose(), hash.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl BasicVerifier {
    pub fn new(ttl: Duration, capacity: usize) -> BasicVerifier {
        BasicVerifier {
            verified: TtlCache::new(ttl, capacity),
            in_flight: Mutex::new(HashMap::new()),
            runs: AtomicU64::new(0),
        }
    }

    /// Whether `secret` matches the bcrypt `hash`. Wrong secrets are never cached.
    pub async fn verify(
        &self,
        client_id: &str,
        secret: &Secret,
        hash: &Arc<str>,
        now_nanos: u64,
    ) -> Result<bool, Outage> {
        let key = cache_key(client_id, secret, hash);
        if self.verified.get(&key, now_nanos).is_some() {
            metrics::counter!(crate::metrics::CACHE_HITS, "layer" => "l1").increment(1);
            return Ok(true);
        }
        metrics::counter!(crate::metrics::CACHE_MISSES, "layer" => "l1").increment(1);
        let flight = self.join_flight(key);
        let result = flight
            .get_or_try_init(|| {
                self.runs.fetch_add(1, Ordering::Relaxed);
                run_bcrypt(secret.clone(), hash.clone())
            })
            .await
            .copied();
        self.leave_flight(&key, &flight);
        if matches!(result, Ok(true)) {
            self.verified.insert(key, (), now_nanos);
        }
        result
    }

    fn join_flight(&self, key: [u8; 32]) -> Flight {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    fn leave_flight(&self, key: &[u8; 32], flight: &Flight) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
        }
    }

    /// How many bcrypt computations ran (for tests and the metric).
    pub fn bcrypt_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    pub fn clear(&self) {
        self.verified.clear();
    }
}

async fn run_bcrypt(secret: Secret, hash: Arc<str>) -> Result<bool, Outage> {
    metrics::counter!(crate::metrics::BCRYPT_VERIFICATIONS).increment(1);
    tokio::task::spawn_blocking(move || bcrypt::verify(secret.expose(), &hash).unwrap_or(false))
        .await
        .map_err(|_| Outage::of(Dependency::Bcrypt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_right_secret_verifies_once_then_comes_from_the_cache() {
        let hash: Arc<str> = bcrypt::hash("s3cret", 4).unwrap().into();
        let v = BasicVerifier::new(Duration::from_secs(30), 10);
        let right = Secret::new(b"s3cret".to_vec());
        let wrong = Secret::new(b"s3creT".to_vec());
        assert!(v.verify("c", &right, &hash, 0).await.unwrap());
        assert!(v.verify("c", &right, &hash, 0).await.unwrap());
        assert!(!v.verify("c", &wrong, &hash, 0).await.unwrap());
        assert!(!v.verify("c", &wrong, &hash, 0).await.unwrap());
        assert_eq!(
            v.bcrypt_runs(),
            3,
            "right once, wrong twice: negatives are not cached"
        );
        let other: Arc<str> = bcrypt::hash("other", 4).unwrap().into();
        assert!(!v.verify("c", &right, &other, 0).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_credential_share_one_bcrypt() {
        let hash: Arc<str> = bcrypt::hash("s3cret", 8).unwrap().into();
        let v = Arc::new(BasicVerifier::new(Duration::from_secs(30), 10));
        let secret = Secret::new(b"s3cret".to_vec());
        let key = cache_key("c", &secret, &hash);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (v, s, h) = (v.clone(), secret.clone(), hash.clone());
                tokio::spawn(async move { v.verify("c", &s, &h, 0).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert!(v.in_flight.lock().unwrap().get(&key).is_none());
        assert_eq!(v.bcrypt_runs(), 1);
    }
}
