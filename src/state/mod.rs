//! What a decision asks of the outside world, and where it keeps what it
//! remembers: rate limits, HMAC nonces, API keys missing from the snapshot
//! and verified Basic secrets — each in process, or in Redis
//! (`redis/`) shared by the replicas, or in PostgreSQL (`keys`).
//!
//! The pipeline (`decide`) sees these through small traits where two
//! implementations exist; it never names Redis or PostgreSQL.

pub mod bcrypt;
pub mod keys;
pub mod nonces;
pub mod redis;
pub mod ttl_cache;

use std::future::Future;
use std::pin::Pin;

use crate::core::model::{Digest, KeyRecord};

/// The store could not be asked (an outage): the decision fails closed.
#[derive(Debug)]
pub struct StoreUnavailable;

pub type KeyLookup<'a> =
    Pin<Box<dyn Future<Output = Result<Option<KeyRecord>, StoreUnavailable>> + Send + 'a>>;

/// Where a key missing from the snapshot may still be found: in PostgreSQL
/// mode, a key created since the last reload. Only misses ask it, so the
/// hot path never waits on the database for a known key.
pub trait KeyStore: Send + Sync + 'static {
    fn find_key(&self, digest: Digest) -> KeyLookup<'_>;
}
