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

use super::{Answer, Limits, NonceCheck, Nonces, RateVerdict};

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
    ) -> Answer<'a, NonceCheck> {
        Box::pin(self.either(
            self.shared.insert_once(client, nonce, now, until),
            move || self.local.insert_once(client, nonce, now, until),
        ))
    }
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod tests;
