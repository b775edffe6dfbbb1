//! What happens when Redis cannot answer (`GATEKEEPER_REDIS_FAILURE`),
//! written once for every store that has a Redis and an in-process
//! implementation: `local` asks the in-process store instead (each replica
//! then counts alone: for limits, its share of each limit), `deny` refuses
//! with the Redis outage.
//!
//! In `local` mode the in-process limits follow Redis while it answers,
//! with this replica's share: what Redis admits is charged locally too,
//! and a limit Redis refuses is marked spent locally. When Redis stops
//! answering, they already hold what the fleet used lately, so an outage
//! does not start from full buckets on every replica (which would admit
//! up to the whole limit again, per replica, at once). Best-effort: a
//! share already spent is not charged further, and a replica that got
//! less than its share since the last refusal keeps the difference.
//!
//! What the local limits admit in place of Redis, Redis does not see: its
//! buckets refill through the outage as if nothing had been admitted, and
//! once it answers the fleet could admit that refill again on top. So each
//! replica remembers what it admitted locally (per key, at most
//! [`OWED_KEYS`] keys) and, with the first answer Redis gives again,
//! charges Redis for it: per key up to its burst (a bucket holds no more),
//! at most [`MAX_REPAY`] charges in all, each charged only if it still fits
//! — a replay cannot deny anyone, only use up what the outage refilled.
//! The request that finds Redis back waits for that one batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures_util::future::join_all;

use crate::config::RedisFailure;
use crate::core::limiter::{distinct, Charge, LimitKey, Mode};
use crate::core::model::Limit;
use crate::error::Outage;

use super::{Answer, Limits, Nonces, RateVerdict};

/// Keys whose local admissions are remembered for Redis; more are forgiven.
pub const OWED_KEYS: usize = 10_000;

/// The most charges replayed into Redis when it answers again.
pub const MAX_REPAY: usize = 1_024;

/// A shared store and its in-process stand-in.
pub struct Fallback<S, L> {
    shared: S,
    local: L,
    mode: RedisFailure,
    /// Limits: what the stand-in admitted that the shared store has not
    /// seen, per key: its limit and how many.
    owed: Mutex<HashMap<LimitKey, (Limit, u32)>>,
    /// `owed` is not empty: checked on every answer without the lock.
    owing: AtomicBool,
}

impl<S, L> Fallback<S, L> {
    pub fn new(shared: S, local: L, mode: RedisFailure) -> Fallback<S, L> {
        Fallback {
            shared,
            local,
            mode,
            owed: Mutex::new(HashMap::new()),
            owing: AtomicBool::new(false),
        }
    }

    /// Remembers that the stand-in admitted `charges`.
    fn owe(&self, charges: &[Charge<'_>]) {
        let mut owed = self.owed.lock().unwrap_or_else(|e| e.into_inner());
        for c in distinct(charges) {
            if let Some((limit, n)) = owed.get_mut(c.key) {
                if *limit == c.limit {
                    *n = n.saturating_add(1);
                } else {
                    *limit = c.limit;
                    *n = 1;
                }
            } else if owed.len() < OWED_KEYS {
                owed.insert(c.key.clone(), (c.limit, 1));
            }
        }
        self.owing.store(!owed.is_empty(), Ordering::Relaxed);
    }

    /// Takes what is owed, as single charges: per key up to its burst, at
    /// most `MAX_REPAY` in all.
    fn take_owed(&self) -> Vec<(LimitKey, Limit)> {
        if !self.owing.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let owed = {
            let mut owed = self.owed.lock().unwrap_or_else(|e| e.into_inner());
            self.owing.store(false, Ordering::Relaxed);
            std::mem::take(&mut *owed)
        };
        let mut due = Vec::new();
        for (key, (limit, n)) in owed {
            let n = n.min(limit.burst) as usize;
            let n = n.min(MAX_REPAY - due.len());
            due.extend(std::iter::repeat_n((key, limit), n));
        }
        due
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
                    self.mirror(what, charges, &verdict, now_nanos).await;
                    self.repay(now_nanos).await;
                    Ok(verdict)
                }
                Err(_) => {
                    let verdict = self.local.ask(what, charges, mode, now_nanos).await?;
                    if verdict.is_ok() {
                        self.owe(charges);
                    }
                    Ok(verdict)
                }
            }
        })
    }
}

impl<S: Limits, L: Limits> Fallback<S, L> {
    /// Keeps the local shares close to what Redis says: what it admitted
    /// is charged locally too (the local verdict is not the answer), and
    /// the limit it refused is spent locally too — else a replica that got
    /// less than its share would keep the rest, and spend it in the next
    /// outage on top of what the fleet had already used.
    async fn mirror(
        &self,
        what: &'static str,
        charges: &[Charge<'_>],
        verdict: &RateVerdict,
        now_nanos: u64,
    ) {
        match verdict {
            Ok(_) => {
                let _ = self.local.ask(what, charges, Mode::Charge, now_nanos).await;
            }
            Err(denied) => {
                // The denial names its limit by count only: every charge
                // with that count is taken as refused (at worst a
                // stricter local stand-in).
                let refused: Vec<Charge<'_>> = charges
                    .iter()
                    .filter(|c| c.limit.count == denied.info.limit)
                    .copied()
                    .collect();
                self.local.exhaust(&refused, now_nanos);
            }
        }
    }

    /// Charges the shared store for what the stand-in admitted, all at once
    /// (one batch); what no longer fits, or finds it down again, is
    /// forgiven.
    async fn repay(&self, now_nanos: u64) {
        let due = self.take_owed();
        if due.is_empty() {
            return;
        }
        let charges: Vec<Charge<'_>> = due
            .iter()
            .map(|(key, limit)| Charge { key, limit: *limit })
            .collect();
        let replays = charges.iter().map(|c| {
            self.shared.ask(
                "limit_repay",
                std::slice::from_ref(c),
                Mode::Charge,
                now_nanos,
            )
        });
        join_all(replays).await;
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
        assert!(!f.insert_once("c", "n", 0, 1).await.unwrap());
    }
}
