//! What happens when Redis cannot answer (`GATEKEEPER_REDIS_FAILURE`),
//! written once for every store that has a Redis and an in-process
//! implementation: `local` asks the in-process store instead (each replica
//! then counts alone: for limits, its share of each limit), `deny` refuses
//! with the Redis outage.
//!
//! In `local` mode the in-process limits are also charged for every
//! request Redis admits, with this replica's share: when Redis stops
//! answering, they already hold what this replica admitted lately, so an
//! outage does not start from full buckets on every replica (which would
//! admit up to the whole limit again, per replica, at once). The charge is
//! best-effort: a share already spent is not charged further.

use crate::config::RedisFailure;
use crate::core::limiter::{Charge, Mode};
use crate::error::Outage;

use super::{Answer, Limits, Nonces, RateVerdict};

/// A shared store and its in-process stand-in.
pub struct Fallback<S, L> {
    shared: S,
    local: L,
    mode: RedisFailure,
}

impl<S, L> Fallback<S, L> {
    pub fn new(shared: S, local: L, mode: RedisFailure) -> Fallback<S, L> {
        Fallback {
            shared,
            local,
            mode,
        }
    }

    /// The shared store's answer; when it has none, the local one's or the
    /// outage, as the mode says.
    async fn either<'a, T>(
        &'a self,
        shared: Answer<'a, T>,
        local: impl FnOnce() -> Answer<'a, T>,
    ) -> Result<T, Outage> {
        match shared.await {
            Ok(answer) => Ok(answer),
            Err(outage) if self.mode == RedisFailure::Deny => Err(outage),
            Err(_) => local().await,
        }
    }
}

impl<S: Limits, L: Limits> Limits for Fallback<S, L> {
    fn ask<'a>(
        &'a self,
        what: &'static str,
        charges: &'a [Charge<'a>],
        mode: Mode,
        now_nanos: u64,
    ) -> Answer<'a, RateVerdict> {
        if self.mode == RedisFailure::Deny || mode == Mode::Peek {
            return Box::pin(
                self.either(self.shared.ask(what, charges, mode, now_nanos), move || {
                    self.local.ask(what, charges, mode, now_nanos)
                }),
            );
        }
        Box::pin(async move {
            match self.shared.ask(what, charges, mode, now_nanos).await {
                Ok(verdict) => {
                    if verdict.is_ok() {
                        // Mirrors what Redis admitted; the local verdict is
                        // not the answer.
                        let _ = self.local.ask(what, charges, mode, now_nanos).await;
                    }
                    Ok(verdict)
                }
                Err(_) => self.local.ask(what, charges, mode, now_nanos).await,
            }
        })
    }
}

impl<S: Nonces, L: Nonces> Nonces for Fallback<S, L> {
    fn insert_once<'a>(
        &'a self,
        client: &'a str,
        nonce: &'a str,
        now: i64,
        until: i64,
    ) -> Answer<'a, bool> {
        Box::pin(self.either(
            self.shared.insert_once(client, nonce, now, until),
            move || self.local.insert_once(client, nonce, now, until),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Dependency;
    use crate::state::limits::LocalLimits;

    /// A store that is always down, or always answers `true`.
    struct Fixed(Option<bool>);

    impl Nonces for Fixed {
        fn insert_once<'a>(&'a self, _: &'a str, _: &'a str, _: i64, _: i64) -> Answer<'a, bool> {
            let answer = self.0.ok_or(Outage::of(Dependency::Redis));
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn local_mode_asks_the_stand_in_when_the_shared_store_is_down() {
        let f = Fallback::new(Fixed(None), Fixed(Some(true)), RedisFailure::Local);
        assert!(f.insert_once("c", "n", 0, 1).await.unwrap());
    }

    #[tokio::test]
    async fn deny_mode_refuses_with_the_shared_store_outage() {
        let f = Fallback::new(Fixed(None), Fixed(Some(true)), RedisFailure::Deny);
        let outage = f.insert_once("c", "n", 0, 1).await.unwrap_err();
        assert_eq!(outage.dependency, Dependency::Redis);
    }

    /// Limits that are down, or admit everything.
    struct FixedLimits(bool);

    impl Limits for FixedLimits {
        fn ask<'a>(
            &'a self,
            _: &'static str,
            _: &'a [Charge<'a>],
            _: Mode,
            _: u64,
        ) -> Answer<'a, RateVerdict> {
            let answer = if self.0 {
                Ok(Ok(None))
            } else {
                Err(Outage::of(Dependency::Redis))
            };
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn in_local_mode_what_redis_admits_is_charged_locally_too() {
        use crate::core::limiter::{LimitKey, LocalLimiter};
        use crate::core::model::Limit;
        let local = LocalLimits::new(LocalLimiter::new(10));
        let key = LimitKey("c".into());
        let charges = [Charge {
            key: &key,
            limit: Limit::parse("2/1h").unwrap(),
        }];
        let f = Fallback::new(FixedLimits(true), local, RedisFailure::Local);
        for _ in 0..3 {
            let admitted = f.ask("t", &charges, Mode::Charge, 0).await.unwrap();
            assert!(admitted.is_ok(), "Redis's answer is the answer");
        }
        let down = Fallback::new(FixedLimits(false), f.local, RedisFailure::Local);
        let verdict = down.ask("t", &charges, Mode::Charge, 0).await.unwrap();
        assert!(verdict.is_err(), "the local limit was spent while Redis answered");
    }

    #[tokio::test]
    async fn a_shared_answer_is_used_whatever_the_mode() {
        let f = Fallback::new(Fixed(Some(false)), Fixed(Some(true)), RedisFailure::Local);
        assert!(!f.insert_once("c", "n", 0, 1).await.unwrap());
    }
}
