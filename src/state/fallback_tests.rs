//! Unit tests of `state::fallback`.
use super::*;
use crate::error::Dependency;
use crate::state::limits::LocalLimits;

/// A store that is always down, or always answers `fresh`.
struct Fixed(Option<bool>);

impl Nonces for Fixed {
    fn insert_once<'a>(&'a self, _: &'a str, _: &'a str, _: i64, _: i64) -> Answer<'a, NonceCheck> {
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
    assert!(
        verdict.is_err(),
        "the local limit was spent while Redis answered"
    );
}

/// Limits that are down until `up` is set, then count what they admit.
#[derive(Default)]
struct Recording {
    up: AtomicBool,
    charged: std::sync::atomic::AtomicUsize,
}

impl Limits for &Recording {
    fn ask<'a>(
        &'a self,
        _: &'static str,
        _: &'a [Charge<'a>],
        _: Mode,
        _: u64,
    ) -> Answer<'a, RateVerdict> {
        let answer = if self.up.load(Ordering::Relaxed) {
            self.charged.fetch_add(1, Ordering::Relaxed);
            Ok(Ok(None))
        } else {
            Err(Outage::of(Dependency::Redis))
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn what_the_stand_in_admitted_is_charged_to_redis_when_it_answers_again() {
    use crate::core::limiter::LocalLimiter;
    let redis = Recording::default();
    let key = LimitKey("c".into());
    let charges = [Charge {
        key: &key,
        limit: Limit::parse("3/1h").unwrap(),
    }];
    let f = Fallback::new(
        &redis,
        LocalLimits::new(LocalLimiter::new(10)),
        RedisFailure::Local,
    );
    for _ in 0..5 {
        f.ask("t", &charges, Mode::Charge, 0).await.unwrap().ok();
    }
    redis.up.store(true, Ordering::Relaxed);
    f.ask("t", &charges, Mode::Charge, 0)
        .await
        .unwrap()
        .unwrap();
    // The request itself, then the 3 the stand-in admitted (not the 2 it
    // refused).
    assert_eq!(redis.charged.load(Ordering::Relaxed), 4);
    f.ask("t", &charges, Mode::Charge, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redis.charged.load(Ordering::Relaxed), 5, "repaid once");
}

/// Limits that refuse everything, as a full 1/1h limit would.
struct Refusing;

impl Limits for Refusing {
    fn ask<'a>(
        &'a self,
        _: &'static str,
        _: &'a [Charge<'a>],
        _: Mode,
        _: u64,
    ) -> Answer<'a, RateVerdict> {
        let denied = crate::core::limiter::RateDenied {
            retry_after_secs: 1,
            info: crate::core::decision::RateInfo {
                limit: 5,
                remaining: 0,
                reset_secs: 1,
            },
        };
        Box::pin(async move { Ok(Err(denied)) })
    }
}

#[tokio::test]
async fn in_local_mode_a_limit_redis_refuses_is_spent_locally_too() {
    use crate::core::limiter::LocalLimiter;
    let (client, grant) = (LimitKey("c".into()), LimitKey("g".into()));
    let charges = [
        Charge {
            key: &grant,
            limit: Limit::parse("5/1h").unwrap(),
        },
        Charge {
            key: &client,
            limit: Limit::parse("50/1h").unwrap(),
        },
    ];
    let f = Fallback::new(
        Refusing,
        LocalLimits::new(LocalLimiter::new(10)),
        RedisFailure::Local,
    );
    assert!(f
        .ask("t", &charges, Mode::Charge, 0)
        .await
        .unwrap()
        .is_err());
    let local = &f.local;
    let alone = |i: usize| local.ask("t", &charges[i..=i], Mode::Charge, 0);
    assert!(
        alone(0).await.unwrap().is_err(),
        "the refused limit is spent"
    );
    assert!(alone(1).await.unwrap().is_ok(), "the other is not");
}

#[tokio::test]
async fn a_shared_answer_is_used_whatever_the_mode() {
    let f = Fallback::new(Fixed(Some(false)), Fixed(Some(true)), RedisFailure::Local);
    assert!(!f.insert_once("c", "n", 0, 1).await.unwrap().fresh);
}
