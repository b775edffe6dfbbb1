//! In-process rate limiting with GCRA (the generic cell rate algorithm).
//!
//! This module owns the limiting arithmetic and the in-process store that
//! every worker shares. It is pure: the caller passes the time (monotonic
//! nanoseconds) and builds the keys (`c:<client>`, `g:<client>:<route>`); it
//! reads no clock and does no I/O. The Redis limiter
//! (`state::redis::limiter_script`) runs the state step below (`base`, `debt`, admission,
//! new TAT) in its Lua script, in microseconds, and hands each `debt` back
//! to [`Gcra::verdict`] and [`combine`]: the header and selection rules live
//! here only.
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
//! - `base = max(tat, now)`, `ahead = base - now`;
//! - `debt = base + T - now` — how far ahead the TAT would be;
//! - **admitted** iff `debt ≤ tau`; then `tat := now + debt` and
//!   - `remaining = (tau - debt) / T` (floor; `burst - 1` from full, then 0),
//!   - `reset = ceil_secs(debt)` — until the new TAT is reached: full again;
//! - **denied** otherwise, nothing stored, and
//!   - `retry_after = max(1, ceil_secs(debt - tau))` — when `debt` will fit,
//!   - `remaining = 0`, `reset = ceil_secs(ahead)`.
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
//! its first limit. [`combine`] makes this choice for both limiters.
//!
//! [`LocalLimiter::peek`] judges the same way and stores nothing.
//!
//! # Shares
//!
//! When `n` replicas each enforce a limit alone (a Redis outage in `local`
//! mode), each enforces its share ([`Gcra::share`]): every request it
//! admits costs `n` emission intervals (`T' = n × T`), and the tolerance
//! holds `ceil(burst / n)` of them (`tau' = ceil(burst / n) × T'`). So each
//! replica admits `ceil(burst / n)` back to back from full — rounded up, so
//! a limit of 1 still admits something on every replica — then `count / n`
//! per window: the fleet admits at most `burst + n - 1` at once and the
//! limit's rate after. A share's TAT is still a time, stored under the
//! whole limit: when `n` changes, what a replica admitted still counts
//! (at the new cost) instead of its bucket starting from full.
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

impl LimitKey {
    /// What the keys one decision charges together share: the client id
    /// of a client's (`c:<id>`) and its grants' (`g:<id>:<route>`) limits,
    /// the whole name otherwise. A store that must keep one call's keys
    /// together (Redis Cluster's hash slots) groups them by it. Client ids
    /// hold no `:` (`core::ids`), so the id is the text up to the next `:`.
    pub fn owner(&self) -> &str {
        let name = &*self.0;
        match name.split_once(':') {
            Some(("c" | "g", rest)) => rest.split_once(':').map_or(rest, |(id, _)| id),
            _ => name,
        }
    }
}

/// One limit a request is charged against.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    pub key: &'a LimitKey,
    pub limit: Limit,
}

/// Whether a call writes the charges it admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Admit and charge, all or nothing.
    Charge,
    /// Judge only: would these charges be admitted now? Writes nothing.
    Peek,
}

/// A request some limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDenied {
    /// Whole seconds, at least 1, until every denying limit would admit it.
    pub retry_after_secs: u64,
    /// The denying limit, with `remaining` 0.
    pub info: RateInfo,
}

/// What one limit says about one request, before the choice among limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted: the headers this limit would give.
    Admit(RateInfo),
    Deny(RateDenied),
}

/// The verdict of a whole call: denied if any limit denies (with the
/// longest `retry_after`, the earlier on a tie), else admitted with the
/// headers of the lowest `remaining` (the earlier on a tie); `Ok(None)` for
/// no verdicts. `verdicts` come in charge order, one per distinct key.
pub fn combine(
    verdicts: impl IntoIterator<Item = Verdict>,
) -> Result<Option<RateInfo>, RateDenied> {
    let mut tightest: Option<RateInfo> = None;
    let mut longest: Option<RateDenied> = None;
    for verdict in verdicts {
        match verdict {
            Verdict::Admit(info) => {
                if tightest.is_none_or(|t| info.remaining < t.remaining) {
                    tightest = Some(info);
                }
            }
            Verdict::Deny(denied) => {
                if longest.is_none_or(|l| denied.retry_after_secs > l.retry_after_secs) {
                    longest = Some(denied);
                }
            }
        }
    }
    longest.map_or(Ok(tightest), Err)
}

/// The state of one key.
#[derive(Clone, Copy, Debug)]
struct Entry {
    tat: u64,
    limit: Limit,
}

/// A limit's GCRA parameters, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    count: u32,
    interval: u64,
    tolerance: u64,
}

impl Gcra {
    /// `T` and `tau`; a zero count or burst (not parseable, but constructible)
    /// is taken as 1 so nothing divides by zero.
    pub fn of(limit: &Limit) -> Gcra {
        let window = u64::try_from(limit.window.as_nanos()).unwrap_or(u64::MAX);
        let interval = (window / u64::from(limit.count.max(1))).max(1);
        Gcra::new(limit.count, interval, limit.burst)
    }

    /// `T = interval` (at least 1) and `tau = burst × T`, for a store that
    /// counts time in coarser units than nanoseconds and rounds `T` first.
    pub fn new(count: u32, interval_nanos: u64, burst: u32) -> Gcra {
        let interval = interval_nanos.max(1);
        Gcra {
            count,
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// `T`, in nanoseconds.
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// `tau`, in nanoseconds.
    pub fn tolerance_nanos(&self) -> u64 {
        self.tolerance
    }

    /// One replica's share when `replicas` replicas each enforce this limit
    /// alone (see "Shares" in the module docs); 0 or 1: the limit itself.
    pub fn share(&self, replicas: u32) -> Gcra {
        if replicas <= 1 {
            return *self;
        }
        let n = u64::from(replicas);
        let interval = self.interval.saturating_mul(n);
        let burst = (self.tolerance / self.interval).div_ceil(n).max(1);
        Gcra {
            count: self.count.div_ceil(replicas).max(1),
            interval,
            tolerance: interval.saturating_mul(burst),
        }
    }

    /// Judges a request at `now` against the stored TAT (`None`: full), and
    /// says the TAT to store if it is admitted.
    fn judge(&self, tat: Option<u64>, now: u64) -> (Verdict, u64) {
        let base = tat.map_or(now, |tat| tat.max(now));
        let debt = base.saturating_add(self.interval).saturating_sub(now);
        (self.verdict(debt, base - now), now.saturating_add(debt))
    }

    /// The verdict for a request whose `debt` the store computed, where
    /// `ahead = max(tat, now) - now` (see the module docs).
    pub fn verdict(&self, debt: u64, ahead: u64) -> Verdict {
        if debt <= self.tolerance {
            let remaining = (self.tolerance - debt) / self.interval;
            Verdict::Admit(self.info(remaining, debt))
        } else {
            Verdict::Deny(RateDenied {
                retry_after_secs: ceil_secs(debt - self.tolerance).max(1),
                info: self.info(0, ahead),
            })
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

/// The charges whose key did not already appear earlier in the slice: a
/// repeated key counts once, with its first limit.
pub fn distinct<'c, 'k>(charges: &'c [Charge<'k>]) -> impl Iterator<Item = &'c Charge<'k>> {
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
        self.check_and_charge_share(charges, 1, now_nanos)
    }

    /// `check_and_charge` against this replica's share of each limit, one
    /// of `replicas` (see "Shares").
    pub fn check_and_charge_share(
        &self,
        charges: &[Charge<'_>],
        replicas: u32,
        now_nanos: u64,
    ) -> Result<Option<RateInfo>, RateDenied> {
        if charges.is_empty() {
            return Ok(None);
        }
        let mut entries = self.lock();
        if entries.len().saturating_add(charges.len()) > self.max_entries {
            make_room(&mut entries, self.max_entries, now_nanos);
        }
        let verdicts = distinct(charges).map(|c| judge(&entries, c, replicas, now_nanos).0);
        let info = combine(verdicts)?;
        for c in distinct(charges) {
            let (_, tat) = judge(&entries, c, replicas, now_nanos);
            store(&mut entries, self.max_entries, c, tat);
        }
        Ok(info)
    }

    /// Marks each charge's share (one of `replicas`) as spent at `now`: no
    /// admission until an emission interval has passed. Never forgives:
    /// a state already further ahead is kept. For a stand-in that learns
    /// the shared store refused these charges.
    pub fn exhaust_share(&self, charges: &[Charge<'_>], replicas: u32, now_nanos: u64) {
        let mut entries = self.lock();
        if entries.len().saturating_add(charges.len()) > self.max_entries {
            make_room(&mut entries, self.max_entries, now_nanos);
        }
        for c in distinct(charges) {
            let spent = now_nanos.saturating_add(Gcra::of(&c.limit).share(replicas).tolerance);
            let tat = entries
                .get(c.key)
                .filter(|e| e.limit == c.limit)
                .map_or(spent, |e| e.tat.max(spent));
            store(&mut entries, self.max_entries, c, tat);
        }
    }

    /// Whether `check_and_charge` would admit these charges now; stores
    /// nothing. For throttles that charge on another event: "would one more
    /// failure from this address still be admitted?"
    pub fn peek(&self, charges: &[Charge<'_>], now_nanos: u64) -> Result<(), RateDenied> {
        self.peek_share(charges, 1, now_nanos)
    }

    /// `peek` against this replica's share of each limit (see "Shares").
    pub fn peek_share(
        &self,
        charges: &[Charge<'_>],
        replicas: u32,
        now_nanos: u64,
    ) -> Result<(), RateDenied> {
        let entries = self.lock();
        combine(distinct(charges).map(|c| judge(&entries, c, replicas, now_nanos).0)).map(|_| ())
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

/// One charge judged, as one of `replicas`, against its stored state: a
/// TAT computed for another limit counts as full.
fn judge(
    entries: &HashMap<LimitKey, Entry>,
    charge: &Charge<'_>,
    replicas: u32,
    now: u64,
) -> (Verdict, u64) {
    let tat = entries
        .get(charge.key)
        .filter(|e| e.limit == charge.limit)
        .map(|e| e.tat);
    Gcra::of(&charge.limit).share(replicas).judge(tat, now)
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
