//! The two rate-limit stores behind `Limits`: the in-process GCRA table
//! (`core::limiter::LocalLimiter`) and Redis (`redis::batch`, the limiter
//! script run for many requests per round trip).
//!
//! Standing in for Redis, the in-process table enforces this replica's
//! share of each limit (`core::limiter`, "Shares": the limit divided by the
//! replicas last known to share Redis, `redis::replicas`), so that N
//! replicas limiting alone admit about the limit together, not N times it.

use std::sync::Arc;

use crate::core::limiter::{Charge, LocalLimiter, Mode};
use crate::error::{Dependency, Outage};

use super::redis::batch::Batcher;
use super::redis::replicas::Replicas;
use super::redis::{Redis, Unavailable};
use super::{Answer, Limits, RateVerdict};

/// Limits kept by this process alone: whole, or this replica's share.
pub struct LocalLimits {
    limiter: LocalLimiter,
    /// Set when standing in for Redis: the replicas to share limits with.
    replicas: Option<Arc<Replicas>>,
}

impl LocalLimits {
    /// Each limit whole: this process is the only one enforcing it.
    pub fn new(limiter: LocalLimiter) -> LocalLimits {
        LocalLimits {
            limiter,
            replicas: None,
        }
    }

    /// Each limit divided among `replicas` (rounded up).
    pub fn per_replica(limiter: LocalLimiter, replicas: Arc<Replicas>) -> LocalLimits {
        LocalLimits {
            limiter,
            replicas: Some(replicas),
        }
    }
}

impl Limits for LocalLimits {
    fn ask<'a>(
        &'a self,
        _what: &'static str,
        charges: &'a [Charge<'a>],
        mode: Mode,
        now_nanos: u64,
    ) -> Answer<'a, RateVerdict> {
        let n = self.replicas.as_ref().map_or(1, |r| r.count());
        let verdict = match mode {
            Mode::Charge => self.limiter.check_and_charge_share(charges, n, now_nanos),
            Mode::Peek => self
                .limiter
                .peek_share(charges, n, now_nanos)
                .map(|()| None),
        };
        Box::pin(std::future::ready(Ok(verdict)))
    }

    fn exhaust(&self, charges: &[Charge<'_>], now_nanos: u64) {
        let n = self.replicas.as_ref().map_or(1, |r| r.count());
        self.limiter.exhaust_share(charges, n, now_nanos);
    }
}

/// Limits shared by every replica, in Redis (whose own clock judges them).
pub struct RedisLimits(Batcher);

impl RedisLimits {
    pub fn new(redis: Arc<Redis>) -> RedisLimits {
        RedisLimits(Batcher::new(redis))
    }
}

impl Limits for RedisLimits {
    fn ask<'a>(
        &'a self,
        what: &'static str,
        charges: &'a [Charge<'a>],
        mode: Mode,
        _now_nanos: u64,
    ) -> Answer<'a, RateVerdict> {
        Box::pin(async move {
            self.0
                .ask(what, charges, mode)
                .await
                .map_err(|Unavailable| Outage::of(Dependency::Redis))
        })
    }
}
