//! The decision pipeline (DESIGN §1): one request → `Result<Decision,
//! Outage>`. [`Authorizer::decide`] states the steps in order — the target
//! (route and method rule), the failed-credential throttle, the credential,
//! its status and permission, the limits — each a pure function of `core`
//! or a store of `state` behind its trait. A deny is a `Decision`; a
//! dependency that failed is an `Outage`, which `http::authz` answers.
//!
//! Each credential type is a `Verifier` (`verify/`): a new type is one new
//! file and one line in `Verifiers::verify`; a new permission source is one
//! more step between the credential and the limits. Time comes only from
//! the injected `Clock`.

mod snapshot;
mod throttle;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::core::credential::extract;
use crate::core::decision::{Allow, Decision, Deny, Identity, Reason};
use crate::core::limiter::{LimitKey, Mode, RateDenied};
use crate::core::model::{KeyId, Limit, MethodRule, RouteId};
use crate::core::policy::{permit, Policy, Verified};
use crate::core::request::AuthRequest;
use crate::core::signature::Window;
use crate::error::Outage;
use crate::state::{Limits, State};

use snapshot::Snapshot;
use throttle::Throttle;
use verify::{Stop, Verifiers};

pub struct Settings {
    pub allow_query_key: bool,
    pub hmac_window_secs: u64,
    /// How far ahead of the clock a timestamp may be (at most the window).
    pub hmac_max_ahead_secs: u64,
    /// Failed credentials a source address may present before it is
    /// refused without verification.
    pub failed_auth_limit: Limit,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            allow_query_key: false,
            hmac_window_secs: 300,
            hmac_max_ahead_secs: 5,
            failed_auth_limit: Limit {
                count: 20,
                window: Duration::from_secs(60),
                burst: 20,
            },
        }
    }
}

pub struct Authorizer {
    snapshot: Snapshot,
    verifiers: Verifiers,
    throttle: Throttle,
    limits: Box<dyn Limits>,
    clock: Arc<dyn Clock>,
    allow_query_key: bool,
}

impl Authorizer {
    pub fn new(
        policy: Policy,
        state: State,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Authorizer {
        let (keys, max_staleness) = match state.managed {
            Some(m) => (Some(m.keys), Some(m.max_staleness)),
            None => (None, None),
        };
        Authorizer {
            snapshot: Snapshot::new(policy, max_staleness, clock.clone()),
            verifiers: Verifiers::new(
                keys,
                state.bcrypt,
                state.nonces,
                Window::new(settings.hmac_window_secs, settings.hmac_max_ahead_secs),
                clock.clone(),
            ),
            throttle: Throttle::new(state.failures, settings.failed_auth_limit, clock.clone()),
            limits: state.limits,
            clock,
            allow_query_key: settings.allow_query_key,
        }
    }

    pub async fn decide(&self, req: &AuthRequest<'_>) -> Result<Decision, Outage> {
        let policy = self.snapshot.policy();
        // 1. The route, and its rule for the method.
        let target = match policy.target(req.host.as_deref(), &req.uri.path, &req.method) {
            Ok(target) => target,
            Err(deny) => return Ok(Decision::Deny(deny)),
        };
        let (route, accepts) = match target.rule {
            MethodRule::Public => return Ok(Decision::Allow(public(&target.route.id))),
            MethodRule::Credentials(accepts) => (target.route, accepts),
        };
        let at = Deny::new(Reason::StoreUnavailable)
            .on_route(&route.id)
            .accepting(accepts);
        self.snapshot.fresh().map_err(|o| o.during(at.clone()))?;
        // 2. The source address's failed credentials.
        let source = req.source.map(throttle::bucket);
        if let Err(retry_after) = self.throttle.admit(source.as_ref()).await {
            return Ok(Decision::Deny(throttled(at, retry_after)));
        }
        // 3. The credential, of an accepted type, verified.
        let presented = extract(&req.credentials, self.allow_query_key);
        let who = match self
            .verifiers
            .verify(&policy, accepts, &presented, req)
            .await
        {
            Ok(who) => who,
            Err(stop) => return self.refuse(stop, source.as_ref(), at).await,
        };
        // 4. Key and client status, the grant, its methods and models.
        let identity = identity_of(&who);
        let at = identified(at, &identity);
        let now = self.clock.unix_secs();
        let charges = match permit(who, route, req, now) {
            Ok(charges) => charges,
            Err(reason) => return self.refuse(reason.into(), source.as_ref(), at).await,
        };
        // 5. The limits, all charged or none.
        let asked = self.limits.ask(
            "rate_limit",
            &charges,
            Mode::Charge,
            self.clock.mono_nanos(),
        );
        let rate = match asked.await {
            Ok(Ok(rate)) => rate,
            Ok(Err(denied)) => return Ok(Decision::Deny(limited(at, denied))),
            Err(outage) => return Err(outage.during(at)),
        };
        self.snapshot.used(identity.key_id.as_ref(), now);
        let forward = accepts.forwards_provider_token() && req.has_provider_token;
        Ok(Decision::Allow(Allow {
            route_id: route.id.clone(),
            identity: Some(identity),
            rate,
            forward_provider_token: forward,
        }))
    }

    /// Ends the pipeline on `stop`: a wrong credential counts against its
    /// source address; an outage is returned as one.
    async fn refuse(
        &self,
        stop: Stop,
        source: Option<&LimitKey>,
        at: Deny,
    ) -> Result<Decision, Outage> {
        match stop {
            Stop::Refused(reason) => {
                self.throttle.count(source, reason).await;
                Ok(Decision::Deny(Deny { reason, ..at }))
            }
            Stop::Outage(outage) => Err(outage.during(at)),
            Stop::SnapshotBehind => {
                // `store_unavailable` (503) as before, so the wire is
                // unchanged; but no outage is counted and no failure.
                tracing::debug!("a key's client is newer than the snapshot; a retry will pass");
                Ok(Decision::Deny(at))
            }
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.snapshot.policy()
    }

    /// Swaps in a new snapshot: every later decision sees it whole.
    pub fn replace_policy(&self, policy: Policy) {
        self.snapshot.replace(policy);
    }

    /// The source reached its store and the snapshot is current.
    pub fn confirm_fresh(&self) {
        self.snapshot.confirm();
    }

    /// Key uses since the last call (PostgreSQL mode; empty otherwise).
    pub fn take_key_usage(&self) -> Vec<(KeyId, i64)> {
        self.snapshot.take_usage()
    }

    /// Forgets every verified Basic secret: a client's secret may have
    /// changed.
    pub fn forget_verified_secrets(&self) {
        self.verifiers.forget_verified_secrets();
    }

    /// bcrypt computations run so far (benchmarks check the cache).
    pub fn bcrypt_runs(&self) -> u64 {
        self.verifiers.bcrypt_runs()
    }
}

fn public(route_id: &RouteId) -> Allow {
    Allow {
        route_id: route_id.clone(),
        identity: None,
        rate: None,
        forward_provider_token: false,
    }
}

fn throttled(at: Deny, retry_after: u64) -> Deny {
    Deny {
        reason: Reason::RateLimited,
        retry_after: Some(retry_after),
        ..at
    }
}

fn limited(at: Deny, denied: RateDenied) -> Deny {
    Deny {
        reason: Reason::RateLimited,
        retry_after: Some(denied.retry_after_secs.max(1)),
        rate: Some(denied.info),
        ..at
    }
}

/// Who was identified before the deny, for the log (never for headers).
fn identified(at: Deny, identity: &Identity) -> Deny {
    Deny {
        client_id: Some(identity.client_id.clone()),
        key_id: identity.key_id.clone(),
        ..at
    }
}

fn identity_of(who: &Verified<'_>) -> Identity {
    Identity {
        client_id: who.client.client.id.clone(),
        client_name: who.client.client.name.clone(),
        key_id: who.key.as_ref().map(|k| k.id.clone()),
    }
}

#[cfg(test)]
mod tests;
