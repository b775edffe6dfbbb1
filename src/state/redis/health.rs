//! Whether Redis is up: marked down on a pattern of failures, never on one.
//!
//! One slow answer is not an outage. Under CPU pressure a single call can
//! miss the timeout while Redis is fine; marking Redis down for it sent
//! every request of the replica to the local limiter until the next probe
//! (issue 19: 131 admitted against 100/1m across two replicas). So a failed
//! call or probe only makes Redis *suspect*; it is marked down once failures
//! have gone on, with no answer between them, for [`CONFIRM`] — at least
//! two failures that far apart. The probe runs every 250 ms whatever the
//! traffic, so an idle replica is marked down by its second failed probe,
//! and a busy one by the first failure [`CONFIRM`] after the first. Any
//! answer (a call's or the probe's) clears the suspicion.
//!
//! While suspect, calls still go to Redis; the one that failed is answered
//! as in an outage (the failure mode: the local limiter with this replica's
//! share, or a refusal). While down, calls fail at once without waiting;
//! only the probe's answer marks Redis up again.
//!
//! Time is passed in (`Instant`), so the rule is tested without sleeping.
//! The answer path is two relaxed loads: the suspicion is written only on
//! failures and on the first answer after one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long failures must go on, with no answer between, before Redis is
/// marked down: the probe interval, so two failed probes in a row suffice.
pub const CONFIRM: Duration = Duration::from_millis(250);

/// What a failure did to the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Redis was already marked down.
    AlreadyDown,
    /// The first failure, or not yet [`CONFIRM`] of them: still up.
    Suspect,
    /// This failure confirmed the pattern: Redis is now marked down.
    MarkedDown,
}

#[derive(Debug)]
pub struct Health {
    /// Reference point for `failing_since`.
    origin: Instant,
    up: AtomicBool,
    /// Nanoseconds after `origin` plus one of the first failure since the
    /// last answer; 0 for none.
    failing_since: AtomicU64,
}

impl Health {
    pub fn new(origin: Instant) -> Health {
        Health {
            origin,
            up: AtomicBool::new(true),
            failing_since: AtomicU64::new(0),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A call got an answer: failures so far were no outage. Does not mark
    /// Redis up (no call is made while it is down); the probe does.
    pub fn answered(&self) {
        if self.failing_since.load(Ordering::Relaxed) != 0 {
            self.failing_since.store(0, Ordering::Relaxed);
        }
    }

    /// The probe got an answer; `true` when this marked Redis up again.
    pub fn probe_answered(&self) -> bool {
        self.answered();
        !self.up.swap(true, Ordering::Relaxed)
    }

    /// A call or the probe got no answer at `now`.
    pub fn failed(&self, now: Instant) -> AfterFailure {
        if !self.is_up() {
            return AfterFailure::AlreadyDown;
        }
        let at = self.stamp(now);
        let since =
            match self
                .failing_since
                .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => at,
                Err(earlier) => earlier,
            };
        if at.saturating_sub(since) < nanos(CONFIRM) {
            return AfterFailure::Suspect;
        }
        if self.up.swap(false, Ordering::Relaxed) {
            AfterFailure::MarkedDown
        } else {
            AfterFailure::AlreadyDown
        }
    }

    /// `now` as nanoseconds after `origin`, plus one so it is never 0.
    fn stamp(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin)).saturating_add(1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_failure_leaves_redis_up() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        assert_eq!(h.failed(t0 + ms(10)), AfterFailure::Suspect);
        assert!(h.is_up());
    }

    #[test]
    fn failures_within_the_confirmation_span_leave_redis_up() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        for i in 0..100 {
            assert_eq!(h.failed(t0 + ms(i * 2)), AfterFailure::Suspect);
        }
        assert!(h.is_up());
    }

    #[test]
    fn failures_spanning_the_confirmation_span_mark_redis_down_once() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        assert_eq!(h.failed(t0), AfterFailure::Suspect);
        assert_eq!(h.failed(t0 + CONFIRM), AfterFailure::MarkedDown);
        assert!(!h.is_up());
        assert_eq!(h.failed(t0 + CONFIRM + ms(1)), AfterFailure::AlreadyDown);
    }

    #[test]
    fn an_answer_between_failures_starts_the_span_again() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        assert_eq!(h.failed(t0), AfterFailure::Suspect);
        h.answered();
        assert_eq!(h.failed(t0 + CONFIRM), AfterFailure::Suspect);
        assert_eq!(h.failed(t0 + CONFIRM + ms(100)), AfterFailure::Suspect);
        assert!(h.is_up());
        assert_eq!(h.failed(t0 + CONFIRM * 2), AfterFailure::MarkedDown);
    }

    #[test]
    fn only_the_probe_marks_redis_up_again() {
        let t0 = Instant::now();
        let h = Health::new(t0);
        h.failed(t0);
        h.failed(t0 + CONFIRM);
        h.answered();
        assert!(!h.is_up());
        assert!(h.probe_answered());
        assert!(h.is_up());
        assert!(!h.probe_answered(), "already up");
        assert_eq!(h.failed(t0 + CONFIRM * 3), AfterFailure::Suspect);
    }
}
