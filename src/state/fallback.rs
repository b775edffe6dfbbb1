//! What happens when Redis cannot answer (`GATEKEEPER_REDIS_FAILURE`),
//! written once for every store that has a Redis and an in-process
//! implementation: `local` asks the in-process store instead (each replica
//! then counts alone), `deny` refuses with the Redis outage.

use crate::config::RedisFailure;
use crate::core::limiter::{Charge, Mode};
use crate::error::Outage;

use super::{Answer, Limits, NonceCheck, Nonces, RateVerdict};

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
        Box::pin(
            self.either(self.shared.ask(what, charges, mode, now_nanos), move || {
                self.local.ask(what, charges, mode, now_nanos)
            }),
        )
    }
}

impl<S: Nonces, L: Nonces> Nonces for Fallback<S, L> {
    fn insert_once<'a>(
        &'a self,
        client: &'a str,
        nonce: &'a str,
        now: i64,
        until: i64,
    ) -> Answer<'a, NonceCheck> {
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

    /// A store that is always down, or always answers `fresh`.
    struct Fixed(Option<bool>);

    impl Nonces for Fixed {
        fn insert_once<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: i64,
            _: i64,
        ) -> Answer<'a, NonceCheck> {
            let answer = self
                .0
                .map(|fresh| NonceCheck { fresh, began: 0 })
                .ok_or(Outage::of(Dependency::Redis));
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn local_mode_asks_the_stand_in_when_the_shared_store_is_down() {
        let f = Fallback::new(Fixed(None), Fixed(Some(true)), RedisFailure::Local);
        assert!(f.insert_once("c", "n", 0, 1).await.unwrap().fresh);
    }

    #[tokio::test]
    async fn deny_mode_refuses_with_the_shared_store_outage() {
        let f = Fallback::new(Fixed(None), Fixed(Some(true)), RedisFailure::Deny);
        let outage = f.insert_once("c", "n", 0, 1).await.unwrap_err();
        assert_eq!(outage.dependency, Dependency::Redis);
    }

    #[tokio::test]
    async fn a_shared_answer_is_used_whatever_the_mode() {
        let f = Fallback::new(Fixed(Some(false)), Fixed(Some(true)), RedisFailure::Local);
        assert!(!f.insert_once("c", "n", 0, 1).await.unwrap().fresh);
    }
}
