//! The policy a decision reads: one immutable snapshot, swapped whole by
//! its source; in PostgreSQL mode, how long it may go unconfirmed by the
//! database, and the keys' last uses gathered for the source to write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::core::model::KeyId;
use crate::core::policy::Policy;
use crate::error::{Dependency, Outage};

pub struct Snapshot {
    policy: ArcSwap<Policy>,
    clock: Arc<dyn Clock>,
    /// PostgreSQL mode only.
    freshness: Option<Freshness>,
    usage: Option<KeyUsage>,
}

/// How long a snapshot may go without confirmation from its source before
/// credentialed requests are refused.
struct Freshness {
    max_staleness: Duration,
    confirmed_at_nanos: AtomicU64,
}

/// Last use per key id, gathered on the allow path and written to the store
/// in batches by the source, never by the request itself.
#[derive(Default)]
struct KeyUsage {
    seen: Mutex<HashMap<KeyId, i64>>,
}

/// Bound on distinct keys remembered between two flushes.
const KEY_USAGE_CAPACITY: usize = 100_000;

impl Snapshot {
    /// `max_staleness` (PostgreSQL mode) also turns on key-usage records.
    pub fn new(policy: Policy, max_staleness: Option<Duration>, clock: Arc<dyn Clock>) -> Snapshot {
        let now_nanos = clock.mono_nanos();
        Snapshot {
            policy: ArcSwap::from_pointee(policy),
            clock,
            freshness: max_staleness.map(|max_staleness| Freshness {
                max_staleness,
                confirmed_at_nanos: AtomicU64::new(now_nanos),
            }),
            usage: max_staleness.map(|_| KeyUsage::default()),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Every later decision sees `policy` whole.
    pub fn replace(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// The source reached its store and the snapshot is current.
    pub fn confirm(&self) {
        if let Some(f) = &self.freshness {
            f.confirmed_at_nanos
                .store(self.clock.mono_nanos(), Ordering::Relaxed);
        }
    }

    /// An outage once the snapshot has gone `max_staleness` unconfirmed.
    pub fn fresh(&self) -> Result<(), Outage> {
        let Some(f) = &self.freshness else {
            return Ok(());
        };
        let age = self
            .clock
            .mono_nanos()
            .saturating_sub(f.confirmed_at_nanos.load(Ordering::Relaxed));
        match Duration::from_nanos(age) > f.max_staleness {
            true => Err(Outage::of(Dependency::PolicySnapshot)),
            false => Ok(()),
        }
    }

    /// `key_id` allowed a request at `now` (Unix seconds).
    pub fn used(&self, key_id: Option<&KeyId>, now: i64) {
        let (Some(usage), Some(key_id)) = (&self.usage, key_id) else {
            return;
        };
        let mut seen = usage.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < KEY_USAGE_CAPACITY || seen.contains_key(key_id) {
            seen.insert(key_id.clone(), now);
        }
    }

    /// Key uses since the last call (empty outside PostgreSQL mode).
    pub fn take_usage(&self) -> Vec<(KeyId, i64)> {
        let Some(usage) = &self.usage else {
            return Vec::new();
        };
        let mut seen = usage.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.drain().collect()
    }
}
