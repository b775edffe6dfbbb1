//! How gatekeeper's errors are shaped, and so where each kind ends up.
//!
//! - **A deny is a value**, not an error: `core::decision::Deny` with a
//!   `Reason`. It is counted, logged and answered like any decision.
//! - **An outage is an [`Outage`]**: a dependency the decision needed did
//!   not answer (PostgreSQL, Redis, the bcrypt pool, a current policy
//!   snapshot, room in the in-process nonce store). The stores in `state`
//!   return it, the pipeline in `decide` adds what it knew (route, accepted
//!   schemes, who), and `http::authz` maps it to the response in exactly one
//!   place: `store_unavailable` (403 to nginx, `X-Auth-Status: 503`), a
//!   WARN log line naming the dependency, and
//!   `gatekeeper_outages_total{dependency}`. It never becomes an allow.
//! - **Module errors** are `thiserror` enums beside the code that fails
//!   (`ConfigError`, `StoreError`, `DbError`, `ApplyError`, …). Their
//!   messages name the setting, row or file at fault and never a secret, a
//!   URL's password or a database's row detail. Library code does not
//!   return `Result<_, String>`.
//! - **`anyhow`** with `.context(…)` is for start-up wiring (`app`) and
//!   the command line, where an error is only ever printed.
//! - **Exit codes** are chosen in one place, the binary's
//!   `src/commands/mod.rs`: 64 for bad settings or flags, 65 for an invalid
//!   data file, 1 for anything else. The library knows no exit code.

use crate::core::decision::{Deny, Reason};

/// What a decision depended on and could not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The key look-up (PostgreSQL mode) with no stale copy to fall back on.
    Postgres,
    /// Redis, in `GATEKEEPER_REDIS_FAILURE=deny` mode.
    Redis,
    /// The blocking pool that runs bcrypt for Basic credentials.
    Bcrypt,
    /// The snapshot went unconfirmed by its source past
    /// `GATEKEEPER_MAX_STALENESS`.
    PolicySnapshot,
    /// The in-process nonce store is full of live nonces.
    NonceStore,
}

impl Dependency {
    pub const ALL: [Dependency; 5] = [
        Dependency::Postgres,
        Dependency::Redis,
        Dependency::Bcrypt,
        Dependency::PolicySnapshot,
        Dependency::NonceStore,
    ];

    /// The `dependency` label of `gatekeeper_outages_total` and the log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Postgres => "postgres",
            Dependency::Redis => "redis",
            Dependency::Bcrypt => "bcrypt",
            Dependency::PolicySnapshot => "policy_snapshot",
            Dependency::NonceStore => "nonce_store",
        }
    }
}

/// A dependency failed: the request is refused with `store_unavailable`.
#[derive(Debug, Clone)]
pub struct Outage {
    pub dependency: Dependency,
    /// What the pipeline knew when it failed — the route, the schemes it
    /// accepts, who was identified — so the refusal and the audit row carry
    /// it. Its reason is always `store_unavailable`.
    refusal: Deny,
}

impl Outage {
    pub fn of(dependency: Dependency) -> Outage {
        Outage {
            dependency,
            refusal: Deny::new(Reason::StoreUnavailable),
        }
    }

    /// Records where the decision was (`deny`'s route, schemes and
    /// identity); the reason stays `store_unavailable`.
    pub fn during(mut self, deny: Deny) -> Outage {
        self.refusal = Deny {
            reason: Reason::StoreUnavailable,
            retry_after: None,
            rate: None,
            ..deny
        };
        self
    }

    /// The deny the client gets.
    pub fn refusal(self) -> Deny {
        self.refusal
    }
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} unavailable", self.dependency.as_str())
    }
}

impl std::error::Error for Outage {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_always_refused_as_store_unavailable_with_its_context() {
        let mut context = Deny::new(Reason::RateLimited).on_route(&"chat".parse().unwrap());
        context.retry_after = Some(7);
        let deny = Outage::of(Dependency::Redis).during(context).refusal();
        assert_eq!(deny.reason, Reason::StoreUnavailable);
        assert_eq!(deny.route_id.as_deref(), Some("chat"));
        assert_eq!(deny.retry_after, None);
    }

    #[test]
    fn every_dependency_has_a_distinct_label() {
        let labels: std::collections::HashSet<_> =
            Dependency::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels.len(), Dependency::ALL.len());
    }
}
