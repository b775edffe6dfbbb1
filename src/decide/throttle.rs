//! Failed credentials per source address (DESIGN §6, §10): an address that
//! presented too many wrong credentials is refused (429) before its next one
//! is verified. A defence, so it never refuses for want of a store: the
//! `failures` store falls back to in-process counts whatever the Redis
//! failure mode.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::core::decision::Reason;
use crate::core::limiter::{Charge, LimitKey, Mode};
use crate::core::model::Limit;
use crate::state::ttl_cache::TtlCache;
use crate::state::{Limits, FAILURES_CAPACITY};

pub struct Throttle {
    limit: Limit,
    clock: Arc<dyn Clock>,
    failures: Box<dyn Limits>,
    /// Addresses the store just said may still fail, so the next request
    /// from them skips the round trip for `CLEAN_FOR`. Any failure this
    /// replica records forgets the address, so each replica verifies at
    /// most one extra failure beyond what the store allows — and a
    /// well-behaved client costs one Redis round trip per decision (its
    /// limit), not two.
    clean: TtlCache<LimitKey, ()>,
}

/// How long a "not throttled" answer is reused.
const CLEAN_FOR: Duration = Duration::from_secs(1);

impl Throttle {
    pub fn new(failures: Box<dyn Limits>, limit: Limit, clock: Arc<dyn Clock>) -> Throttle {
        Throttle {
            limit,
            clock,
            failures,
            clean: TtlCache::new(CLEAN_FOR, FAILURES_CAPACITY),
        }
    }

    /// `Err(retry_after)` when `source` has failed too often.
    pub async fn admit(&self, source: Option<&LimitKey>) -> Result<(), u64> {
        let Some(source) = source else {
            return Ok(());
        };
        let now_nanos = self.clock.mono_nanos();
        if self.clean.get(source, now_nanos).is_some() {
            return Ok(());
        }
        let charge = [Charge {
            key: source,
            limit: self.limit,
        }];
        let asked = self
            .failures
            .ask("failed_auth_check", &charge, Mode::Peek, now_nanos);
        match asked.await {
            Ok(Err(denied)) => {
                ::metrics::counter!(crate::metrics::FAILED_AUTH_THROTTLED).increment(1);
                Err(denied.retry_after_secs.max(1))
            }
            Ok(Ok(_)) => {
                self.clean.insert(source.clone(), (), now_nanos);
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Counts `reason` against `source` when it is a wrong credential: one
    /// that was presented and is wrong (not a missing one, not one of
    /// another type).
    pub async fn count(&self, source: Option<&LimitKey>, reason: Reason) {
        let wrong = matches!(
            reason,
            Reason::InvalidCredentials | Reason::KeyRevoked | Reason::KeyExpired
        );
        let Some(source) = source.filter(|_| wrong) else {
            return;
        };
        self.clean.remove(source);
        let now_nanos = self.clock.mono_nanos();
        let charge = [Charge {
            key: source,
            limit: self.limit,
        }];
        let counted = self
            .failures
            .ask("failed_auth_count", &charge, Mode::Charge, now_nanos);
        // Already past the limit or not: the next `admit` says.
        let _ = counted.await;
    }
}

/// The throttle bucket of an address: the address itself for IPv4, its /64
/// for IPv6 (one host usually holds a whole /64).
pub fn bucket(source: IpAddr) -> LimitKey {
    let v4_key = |v4: Ipv4Addr| {
        // `f:` and the dotted quad, without the formatting machinery: this
        // runs for every request that has a source address.
        let mut digits = itoa::Buffer::new();
        let mut name = String::with_capacity(17);
        name.push_str("f:");
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                name.push('.');
            }
            name.push_str(digits.format(octet));
        }
        name
    };
    let name = match source {
        IpAddr::V4(v4) => v4_key(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_key(v4),
            None => {
                let s = v6.segments();
                format!("f:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    };
    LimitKey(name.into())
}
