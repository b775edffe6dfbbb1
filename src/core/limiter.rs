//! In-process rate limiting with GCRA (the generic cell rate algorithm).
//!
//! This module owns the limiting arithmetic and the in-process store that
//! every worker shares. It is pure: the caller passes the time (monotonic
//! nanoseconds) and builds the keys (`c:<client>`, `g:<client>:<route>`); it
//! reads no clock and does no I/O. The Redis limiter reuses the formulas
//! below verbatim in its Lua script.
//!
//! # Formulas (all times in nanoseconds, all arithmetic saturating)
//!
//! For a limit `count / window` with `burst`:
//!
//! - `T   = max(1, window / count)` — the emission interval (integer division);
//! - `tau = burst × T` — how far the TAT may run ahead of `now`.
//!
//! Per key the store holds `tat`, the theoretical arrival time, and the limit
//! it was computed for. A missing key, a key stored for another limit, or a
//! `tat ≤ now` all mean "full": `tat = now`. For a request at `now`:
//!
//! - `debt = max(tat, now) + T - now` — how far ahead the TAT would be;
//! - **admitted** iff `debt ≤ tau`; then `tat := now + debt` and
//!   - `remaining = (tau - debt) / T` (floor; `burst - 1` from full, then 0),
//!   - `reset = ceil_secs(debt)` — until the new TAT is reached: full again;
//! - **denied** otherwise, nothing stored, and
//!   - `retry_after = max(1, ceil_secs(debt - tau))` — when `debt` will fit,
//!   - `remaining = 0`, `reset = ceil_secs(max(tat, now) - now)`.
//!
//! So `burst` requests pass back to back from full, then one every `T`, and
//! the window slides: there is no doubling at window boundaries.
//!
//! # Several limits
//!
//! A request is admitted only if every charge admits it, and only then is
//! every one charged, all under one lock. The headers describe the tighter
//! limit — the lower `remaining`, the earlier charge on a tie (the caller
//! puts the grant's limit first). A denial carries the longest
//! `retry_after` among the denying limits (the earlier on a tie) and
//! describes that limit. A key repeated within one call counts once, with
//! its first limit.
//!
//! # Memory bound
//!
//! At most `max_entries` keys are stored. When a call could cross the bound,
//! entries with `tat ≤ now` (equivalent to absent) are purged; if more than
//! 7/8 of the bound is still in use, the entries closest to full (smallest
//! `tat`) are evicted down to 7/8, forgiving them the least debt. Every
//! O(n) sweep therefore buys at least n/8 inserts: amortised O(1). Should a
//! new key still not fit, its request is judged as from full but its state is
//! not stored: the limiter never denies for lack of room and never grows past
//! the bound. Size the bound well above the number of live keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::decision::RateInfo;
use super::model::Limit;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A rate-limit bucket's name, built by the caller (`c:team-a`,
/// `g:team-a:route-1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitKey(pub Arc<str>);

/// One limit a request is charged against.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    pub key: &'a LimitKey,
    pub limit: Limit,
}

/// A request some limit refused.
#[derive(Debug, PartialEq, Eq)]
pub struct RateDenied {
    /// Whole seconds, at least 1, until every denying limit would admit it.
    pub retry_after_secs: u64,
    /// The denying limit, with `remaining` 0.
    pub info: RateInfo,
}

/// The state of one key.
#[derive(Clone, Copy, Debug)]
struct Entry {
    tat: u64,
    limit: Limit,
}

/// A limit's GCRA parameters, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Gcra {
    count: u32,
    interval: u64,
    tolerance: u64,
}

/// What one limit says about one request.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Admit {
        tat: u64,
        info: RateInfo,
    },
    Deny {
        retry_after_secs: u64,
        info: RateInfo,
    },
}

impl Gcra {
    /// `T` and `tau`; a zero count or burst (not parseable, but constructible)
    /// is taken as 1 so nothing divides by zero.
    fn of(limit: &Limit) -> Gcra {
        let window = u64::try_from(limit.window.as_nanos()).unwrap_or(u64::MAX);
        let interval = (window / u64::from(limit.count.max(1))).max(1);
        Gcra {
            count: limit.count,
            interval,
            tolerance: interval.saturating_mul(u64::from(limit.burst.max(1))),
        }
    }

    /// Judges a request at `now` against the stored TAT (`None`: full).
    fn judge(&self, tat: Option<u64>, now: u64) -> Verdict {
        let base = tat.map_or(now, |tat| tat.max(now));
        let debt = base.saturating_add(self.interval).saturating_sub(now);
        if debt <= self.tolerance {
            let remaining = (self.tolerance - debt) / self.interval;
            let info = self.info(remaining, debt);
            Verdict::Admit {
                tat: now.saturating_add(debt),
                info,
            }
        } else {
            let retry_after_secs = ceil_secs(debt - self.tolerance).max(1);
            let info = self.info(0, base - now);
            Verdict::Deny {
                retry_after_secs,
                info,
            }
        }
    }

    fn info(&self, remaining: u64, until_full: u64) -> RateInfo {
        RateInfo {
            limit: self.count,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_secs: ceil_secs(until_full),
        }
    }
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

/// The charges whose key did not already appear earlier in the slice.
fn distinct<'c, 'k>(charges: &'c [Charge<'k>]) -> impl Iterator<Item = &'c Charge<'k>> {
    charges
        .iter()
        .enumerate()
        .filter(|(i, c)| !charges[..*i].iter().any(|e| e.key == c.key))
        .map(|(_, c)| c)
}

/// GCRA limits keyed by name, shared by all workers of the process.
#[derive(Debug)]
pub struct LocalLimiter {
    max_entries: usize,
    entries: Mutex<HashMap<LimitKey, Entry>>,
}

impl LocalLimiter {
    /// A limiter that stores at most `max_entries` keys (at least 1).
    pub fn new(max_entries: usize) -> LocalLimiter {
        LocalLimiter {
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Admits the request only if every charge admits it, and then charges
    /// them all, atomically. `Ok(None)` when there is nothing to charge.
    pub fn check_and_charge(
        &self,
        charges: &[Charge<'_>],
        now_nanos: u64,
    ) -> Result<Option<RateInfo>, RateDenied> {
        if charges.is_empty() {
            return Ok(None);
        }
        let mut entries = self.lock();
        if entries.len().saturating_add(charges.len()) > self.max_entries {
            make_room(&mut entries, self.max_entries, now_nanos);
        }
        check(&entries, charges, now_nanos)?;
        Ok(charge(&mut entries, self.max_entries, charges, now_nanos))
    }

    /// The number of keys stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic elsewhere while holding the lock cannot leave an entry half
    /// written (each is one `Copy` store), so a poisoned map is still sound.
    fn lock(&self) -> MutexGuard<'_, HashMap<LimitKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stored TAT for a charge, if it was computed for the same limit.
fn stored_tat(entries: &HashMap<LimitKey, Entry>, charge: &Charge<'_>) -> Option<u64> {
    entries
        .get(charge.key)
        .filter(|e| e.limit == charge.limit)
        .map(|e| e.tat)
}

/// Fails with the longest wait if any charge denies; stores nothing.
fn check(
    entries: &HashMap<LimitKey, Entry>,
    charges: &[Charge<'_>],
    now: u64,
) -> Result<(), RateDenied> {
    let mut denied: Option<RateDenied> = None;
    for c in distinct(charges) {
        let verdict = Gcra::of(&c.limit).judge(stored_tat(entries, c), now);
        if let Verdict::Deny {
            retry_after_secs,
            info,
        } = verdict
        {
            match &denied {
                Some(d) if d.retry_after_secs >= retry_after_secs => {}
                _ => {
                    denied = Some(RateDenied {
                        retry_after_secs,
                        info,
                    })
                }
            }
        }
    }
    denied.map_or(Ok(()), Err)
}

/// Charges every limit (all admit: `check` ran under the same lock) and
/// returns the tighter one's headers.
fn charge(
    entries: &mut HashMap<LimitKey, Entry>,
    max_entries: usize,
    charges: &[Charge<'_>],
    now: u64,
) -> Option<RateInfo> {
    let mut tightest: Option<RateInfo> = None;
    for c in distinct(charges) {
        let Verdict::Admit { tat, info } = Gcra::of(&c.limit).judge(stored_tat(entries, c), now)
        else {
            continue;
        };
        store(entries, max_entries, c, tat);
        match tightest {
            Some(t) if t.remaining <= info.remaining => {}
            _ => tightest = Some(info),
        }
    }
    tightest
}

/// Stores a key's new TAT, unless it is new and the map is at its bound.
fn store(entries: &mut HashMap<LimitKey, Entry>, max_entries: usize, c: &Charge<'_>, tat: u64) {
    let entry = Entry {
        tat,
        limit: c.limit,
    };
    if let Some(existing) = entries.get_mut(c.key) {
        *existing = entry;
    } else if entries.len() < max_entries {
        entries.insert(c.key.clone(), entry);
    }
}

/// Purges full entries, then evicts those closest to full down to 7/8 of
/// the bound (see the module docs).
fn make_room(entries: &mut HashMap<LimitKey, Entry>, max_entries: usize, now: u64) {
    entries.retain(|_, e| e.tat > now);
    let low_water = max_entries - max_entries.div_ceil(8);
    if entries.len() > low_water {
        evict_closest_to_full(entries, entries.len() - low_water);
    }
}

/// Removes the `n` (≥ 1) entries with the smallest TAT.
fn evict_closest_to_full(entries: &mut HashMap<LimitKey, Entry>, n: usize) {
    let mut by_tat: Vec<(u64, LimitKey)> =
        entries.iter().map(|(k, e)| (e.tat, k.clone())).collect();
    if n == 0 || n > by_tat.len() {
        return;
    }
    by_tat.select_nth_unstable_by_key(n - 1, |(tat, _)| *tat);
    for (_, key) in &by_tat[..n] {
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SEC: u64 = NANOS_PER_SEC;

    fn key(name: &str) -> LimitKey {
        LimitKey(name.into())
    }

    fn limit(s: &str) -> Limit {
        Limit::parse(s).unwrap()
    }

    fn one(l: &LocalLimiter, k: &LimitKey, lim: Limit, now: u64) -> Result<RateInfo, RateDenied> {
        let charges = [Charge { key: k, limit: lim }];
        l.check_and_charge(&charges, now).map(|i| i.unwrap())
    }

    #[test]
    fn five_per_minute_admits_five_back_to_back_then_asks_to_retry_after_12_seconds() {
        let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("5/1m"));
        let t0 = 1_000 * SEC;
        for _ in 0..5 {
            assert!(one(&l, &k, lim, t0).is_ok());
        }
        let denied = one(&l, &k, lim, t0).unwrap_err();
        assert_eq!(denied.retry_after_secs, 12);
        assert_eq!(
            denied.info,
            RateInfo {
                limit: 5,
                remaining: 0,
                reset_secs: 60
            }
        );
        assert!(one(&l, &k, lim, t0 + 12 * SEC - 1).is_err());
        assert_eq!(one(&l, &k, lim, t0 + 12 * SEC).map(|i| i.remaining), Ok(0));
        assert!(one(&l, &k, lim, t0 + 12 * SEC).is_err());
    }

    #[test]
    fn a_burst_of_two_at_sixty_per_minute_admits_two_then_one_per_second() {
        let (l, k) = (LocalLimiter::new(100), key("c:a"));
        let lim = limit("60/1m").with_burst(2).unwrap();
        assert!(one(&l, &k, lim, 0).is_ok());
        assert!(one(&l, &k, lim, 0).is_ok());
        assert_eq!(one(&l, &k, lim, 0).unwrap_err().retry_after_secs, 1);
        for s in 1..=5 {
            assert!(one(&l, &k, lim, s * SEC).is_ok(), "second {s}");
            assert!(one(&l, &k, lim, s * SEC).is_err(), "second {s}");
        }
    }

    #[test]
    fn remaining_counts_down_to_zero_and_reset_is_the_seconds_until_full() {
        let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("5/1m"));
        let seen: Vec<(u32, u64)> = (0..5)
            .map(|_| {
                one(&l, &k, lim, 0)
                    .map(|i| (i.remaining, i.reset_secs))
                    .unwrap()
            })
            .collect();
        assert_eq!(seen, [(4, 12), (3, 24), (2, 36), (1, 48), (0, 60)]);
        // 29.5 s later two slots are back and this request takes one; the
        // debt is 60 - 29.5 + 12 = 42.5 s.
        let info = one(&l, &k, lim, 29_500_000_000).unwrap();
        assert_eq!((info.remaining, info.reset_secs, info.limit), (1, 43, 5));
    }

    #[test]
    fn when_one_charge_denies_neither_is_charged() {
        let l = LocalLimiter::new(100);
        let (grant, client) = (key("g:a:r"), key("c:a"));
        let tight = limit("1/1m");
        let loose = limit("10/1m");
        assert!(one(&l, &grant, tight, 0).is_ok());
        let both = [
            Charge {
                key: &grant,
                limit: tight,
            },
            Charge {
                key: &client,
                limit: loose,
            },
        ];
        let denied = l.check_and_charge(&both, 0).unwrap_err();
        assert_eq!(denied.retry_after_secs, 60);
        assert_eq!(
            denied.info,
            RateInfo {
                limit: 1,
                remaining: 0,
                reset_secs: 60
            }
        );
        assert_eq!(one(&l, &client, loose, 0).map(|i| i.remaining), Ok(9));
    }

    #[test]
    fn a_denial_waits_for_the_slowest_denying_limit() {
        let l = LocalLimiter::new(100);
        let (a, b) = (key("g:a:r"), key("c:a"));
        let (fast, slow) = (limit("2/2s"), limit("1/1m"));
        let both = [
            Charge {
                key: &a,
                limit: fast,
            },
            Charge {
                key: &b,
                limit: slow,
            },
        ];
        assert!(l.check_and_charge(&both, 0).is_ok());
        assert!(one(&l, &a, fast, 0).is_ok());
        let denied = l.check_and_charge(&both, 0).unwrap_err();
        assert_eq!(denied.retry_after_secs, 60);
        assert_eq!(denied.info.limit, 1);
    }

    #[test]
    fn headers_describe_the_lower_remaining_and_the_first_charge_on_a_tie() {
        let l = LocalLimiter::new(100);
        let (g, c) = (key("g:a:r"), key("c:a"));
        let (ten, five) = (limit("10/1m"), limit("5/1m"));
        let lower = [
            Charge {
                key: &g,
                limit: ten,
            },
            Charge {
                key: &c,
                limit: five,
            },
        ];
        let info = l.check_and_charge(&lower, 0).unwrap().unwrap();
        assert_eq!((info.limit, info.remaining), (5, 4));

        let (g2, c2) = (key("g:b:r"), key("c:b"));
        let (per_min, per_hour) = (limit("3/1m"), limit("3/1h"));
        let tie = [
            Charge {
                key: &g2,
                limit: per_min,
            },
            Charge {
                key: &c2,
                limit: per_hour,
            },
        ];
        let info = l.check_and_charge(&tie, 0).unwrap().unwrap();
        assert_eq!((info.remaining, info.reset_secs), (2, 20));
    }

    #[test]
    fn a_changed_limit_for_a_key_starts_fresh() {
        let (l, k) = (LocalLimiter::new(100), key("c:a"));
        assert!(one(&l, &k, limit("1/1m"), 0).is_ok());
        assert!(one(&l, &k, limit("1/1m"), 0).is_err());
        assert_eq!(one(&l, &k, limit("2/1m"), 0).map(|i| i.remaining), Ok(1));
    }

    #[test]
    fn no_charges_means_no_limit() {
        assert_eq!(LocalLimiter::new(1).check_and_charge(&[], 0), Ok(None));
    }

    #[test]
    fn a_key_repeated_in_one_call_is_charged_once() {
        let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("2/1m"));
        let twice = [
            Charge {
                key: &k,
                limit: lim,
            },
            Charge {
                key: &k,
                limit: lim,
            },
        ];
        assert_eq!(
            l.check_and_charge(&twice, 0).unwrap().map(|i| i.remaining),
            Some(1)
        );
        assert!(l.check_and_charge(&twice, 0).is_ok());
        assert!(l.check_and_charge(&twice, 0).is_err());
    }

    #[test]
    fn a_purge_keeps_the_map_bounded_and_forgets_only_what_is_full() {
        let l = LocalLimiter::new(64);
        let lim = limit("1/1s");
        for i in 0..1_000u64 {
            assert!(one(&l, &key(&format!("c:{i}")), lim, i * SEC / 2).is_ok());
            assert!(l.len() <= 64);
        }
        // A key deep in debt outlives the purges of keys that filled up again.
        let (hot, hourly) = (key("c:hot"), limit("1/1h"));
        let now = 1_000 * SEC;
        assert!(one(&l, &hot, hourly, now).is_ok());
        for i in 0..200u64 {
            assert!(one(&l, &key(&format!("c:x{i}")), lim, now + i * SEC).is_ok());
        }
        assert!(l.len() <= 64);
        assert!(one(&l, &hot, hourly, now + 200 * SEC).is_err());
        // All keys live: the bound holds and nothing is denied for lack of room.
        let live = LocalLimiter::new(8);
        let slow = limit("1/1h");
        for i in 0..100 {
            assert!(one(&live, &key(&format!("c:{i}")), slow, 0).is_ok());
            assert!(live.len() <= 8);
        }
    }

    #[test]
    fn spread_requests_at_three_times_the_rate_pass_exactly_one_in_three() {
        let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("5/1m"));
        let step = 4 * SEC; // T / 3
        for _ in 0..5 {
            assert!(one(&l, &k, lim, 0).is_ok());
        }
        let admitted = (1..=15)
            .filter(|i| one(&l, &k, lim, i * step).is_ok())
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn the_window_slides_with_no_doubling_at_window_boundaries() {
        let (l, k, lim) = (LocalLimiter::new(100), key("c:a"), limit("30/1m"));
        let interval = 2 * SEC;
        let step = interval / 3;
        let mut admitted = 0u64;
        let mut now = 0;
        while now <= 120 * SEC {
            admitted += u64::from(one(&l, &k, lim, now).is_ok());
            now += step;
        }
        assert!(admitted <= 30 + 120 * SEC / interval + 1, "{admitted}");
        assert!(admitted >= 30 + 120 * SEC / interval - 1, "{admitted}");
    }

    #[test]
    fn extreme_values_never_panic() {
        let l = LocalLimiter::new(4);
        let k = key("c:a");
        let huge = Limit {
            count: 1,
            window: Duration::MAX,
            burst: u32::MAX,
        };
        let zero = Limit {
            count: 0,
            window: Duration::ZERO,
            burst: 0,
        };
        let dense = Limit {
            count: u32::MAX,
            window: Duration::from_secs(1),
            burst: u32::MAX,
        };
        for lim in [huge, zero, dense, limit("1/366d")] {
            for now in [0, 1, u64::MAX - 1, u64::MAX, 5] {
                let _ = one(&l, &k, lim, now);
                let _ = one(&l, &k, lim, now);
            }
        }
        assert!(one(&l, &key("c:b"), huge, u64::MAX).is_ok());
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let l = Arc::new(LocalLimiter::new(4));
        let l2 = Arc::clone(&l);
        let _ = std::thread::spawn(move || {
            let _guard = l2.entries.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(l.entries.is_poisoned());
        assert!(one(&l, &key("c:a"), limit("1/1m"), 0).is_ok());
        assert_eq!(l.len(), 1);
    }
}
