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
#[path = "limiter_tests.rs"]
mod tests;
