//! The two rate-limit stores behind `Limits`: the in-process GCRA table
//! (`core::limiter::LocalLimiter`) and Redis (`redis::batch`, the limiter
//! script run for many requests per round trip).

use std::sync::Arc;

use crate::core::limiter::{Charge, LocalLimiter, Mode};
use crate::error::{Dependency, Outage};

use super::redis::batch::Batcher;
use super::redis::{Redis, Unavailable};
use super::{Answer, Limits, RateVerdict};

/// Limits kept by this process alone.
pub struct LocalLimits(LocalLimiter);

impl LocalLimits {
    pub fn new(limiter: LocalLimiter) -> LocalLimits {
        LocalLimits(limiter)
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
        let verdict = match mode {
            Mode::Charge => self.0.check_and_charge(charges, now_nanos),
            Mode::Peek => self.0.peek(charges, now_nanos).map(|()| None),
        };
        Box::pin(std::future::ready(Ok(verdict)))
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
