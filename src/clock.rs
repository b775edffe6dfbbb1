//! The time, injected: wall-clock seconds for key expiry and HMAC
//! timestamps, monotonic nanoseconds for limits and caches. Nothing in the
//! decision pipeline or its caches reads the time any other way, so tests
//! move it.

use std::time::Instant;

/// The time, injected so tests can move it.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock Unix seconds (key expiry, HMAC timestamps).
    fn unix_secs(&self) -> i64;
    /// Monotonic nanoseconds (rate limits).
    fn mono_nanos(&self) -> u64;
}

pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn unix_secs(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn mono_nanos(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
