//! The decision, end to end: the pure steps of `core::policy` strung
//! together with the edges they need — the current policy snapshot, the
//! Basic verifier, the nonce store, the rate limiter and the
//! failed-credential throttle, each in process or, when configured, in
//! Redis with the configured failure mode.
//!
//! This is the only place that turns a request into a `Decision`. It reads
//! time only through the `Clock` it was given.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::state::{KeyStore, StoreUnavailable};

use arc_swap::ArcSwap;

use crate::config::RedisFailure;
use crate::core::apikey::classify;
use crate::core::credential::{extract, HmacParams, Presented};
use crate::core::decision::RateInfo;
use crate::core::decision::{Allow, Decision, Deny, Identity, Reason};
use crate::core::limiter::{Charge, LimitKey, LocalLimiter, RateDenied};
use crate::core::model::{CredentialSet, Digest, KeyId, Limit, MethodRule};
use crate::core::policy::{check_presented, permit, Policy, Verified};
use crate::core::request::{AuthRequest, Body};
use crate::core::signature;
use crate::state::bcrypt::BasicVerifier;
use crate::state::nonces::{NonceOutcome, NonceStore};
use crate::state::redis::batch::Batcher;
use crate::state::redis::limiter_script::Mode;
use crate::state::redis::{Redis, Unavailable};
use crate::state::ttl_cache::TtlCache;

/// How long a snapshot may go without confirmation from its source before
/// credentialed requests are refused with `store_unavailable`.
struct Freshness {
    max_staleness: Duration,
    confirmed_at_nanos: AtomicU64,
}

/// Last use per key id, gathered on the allow path and written to the store
/// in batches by the source, never by the request itself.
#[derive(Default)]
pub struct KeyUsage {
    seen: std::sync::Mutex<std::collections::HashMap<KeyId, i64>>,
}

/// Bound on distinct keys remembered between two flushes.
const KEY_USAGE_CAPACITY: usize = 100_000;

impl KeyUsage {
    fn record(&self, key_id: &KeyId, now: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < KEY_USAGE_CAPACITY || seen.contains_key(key_id) {
            seen.insert(key_id.clone(), now);
        }
    }

    /// Everything recorded since the last call.
    pub fn take(&self) -> Vec<(KeyId, i64)> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.drain().collect()
    }
}

pub struct Settings {
    pub allow_query_key: bool,
    pub hmac_window_secs: u64,
}

/// Redis and what the authorizer runs on it.
struct Shared {
    redis: Arc<Redis>,
    limits: Batcher,
}

/// Failed credentials per source address (DESIGN §6, §10).
struct Throttle {
    limit: Limit,
    local: LocalLimiter,
    /// Addresses Redis just said may still fail, so the next request from
    /// them skips the round trip for `CLEAN_FOR`. Any failure this replica
    /// records forgets the address, so each replica verifies at most one
    /// extra failure beyond what Redis allows — and a well-behaved client
    /// costs one Redis round trip per decision (its limit), not two.
    clean: TtlCache<LimitKey, ()>,
}

/// How long a Redis "not throttled" answer is reused.
const CLEAN_FOR: Duration = Duration::from_secs(1);

/// Distinct source addresses whose failures are remembered in process.
const THROTTLE_CAPACITY: usize = 100_000;

/// A rate limit said no, or (`deny` mode) could not be asked.
enum Limited {
    Denied(RateDenied),
    Unavailable,
}

pub struct Authorizer {
    policy: ArcSwap<Policy>,
    basic: BasicVerifier,
    limiter: LocalLimiter,
    nonces: NonceStore,
    shared: Option<Shared>,
    throttle: Throttle,
    clock: Arc<dyn Clock>,
    settings: Settings,
    key_store: Option<Arc<dyn KeyStore>>,
    freshness: Option<Freshness>,
    usage: Option<KeyUsage>,
}

/// Bound on remembered HMAC nonces (each lives for twice the window).
const NONCE_CAPACITY: usize = 1_000_000;

impl Authorizer {
    pub fn new(
        policy: Policy,
        basic: BasicVerifier,
        limiter: LocalLimiter,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Authorizer {
        Authorizer {
            policy: ArcSwap::from_pointee(policy),
            basic,
            limiter,
            nonces: NonceStore::new(NONCE_CAPACITY),
            shared: None,
            throttle: Throttle {
                limit: Limit {
                    count: 20,
                    window: Duration::from_secs(60),
                    burst: 20,
                },
                local: LocalLimiter::new(THROTTLE_CAPACITY),
                clean: TtlCache::new(CLEAN_FOR, THROTTLE_CAPACITY),
            },
            clock,
            settings,
            key_store: None,
            freshness: None,
            usage: None,
        }
    }

    /// Keep rate limits, nonces and failure counts in Redis, shared with the
    /// other replicas; the in-process stores become the fallback.
    pub fn with_redis(mut self, redis: Arc<Redis>) -> Authorizer {
        self.shared = Some(Shared {
            limits: Batcher::new(Arc::clone(&redis)),
            redis,
        });
        self
    }

    /// How many failed credentials a source address may present (default
    /// 20/1m) before it is refused without verification.
    pub fn with_failed_auth_limit(mut self, limit: Limit) -> Authorizer {
        self.throttle.limit = limit;
        self
    }

    /// Remember when each key was last used, for `take_key_usage`.
    pub fn with_key_usage(mut self) -> Authorizer {
        self.usage = Some(KeyUsage::default());
        self
    }

    /// Key uses since the last call (empty when usage is not recorded).
    pub fn take_key_usage(&self) -> Vec<(KeyId, i64)> {
        self.usage.as_ref().map(KeyUsage::take).unwrap_or_default()
    }

    /// Consult `store` for keys missing from the snapshot.
    pub fn with_key_store(mut self, store: Arc<dyn KeyStore>) -> Authorizer {
        self.key_store = Some(store);
        self
    }

    /// Refuse credentialed requests once the snapshot has gone
    /// `max_staleness` without `confirm_fresh`.
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Authorizer {
        let now = self.clock.mono_nanos();
        self.freshness = Some(Freshness {
            max_staleness,
            confirmed_at_nanos: AtomicU64::new(now),
        });
        self
    }

    /// The source reached its store and the snapshot is current.
    pub fn confirm_fresh(&self) {
        if let Some(f) = &self.freshness {
            f.confirmed_at_nanos
                .store(self.clock.mono_nanos(), Ordering::Relaxed);
        }
    }

    fn is_stale(&self) -> bool {
        self.freshness.as_ref().is_some_and(|f| {
            let age = self
                .clock
                .mono_nanos()
                .saturating_sub(f.confirmed_at_nanos.load(Ordering::Relaxed));
            Duration::from_nanos(age) > f.max_staleness
        })
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Swaps in a new snapshot: every later decision sees it whole.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    pub fn basic(&self) -> &BasicVerifier {
        &self.basic
    }

    pub async fn decide(&self, req: &AuthRequest<'_>) -> Decision {
        let policy = self.policy.load_full();
        let target = match policy.target(req.host.as_deref(), &req.uri.path, &req.method) {
            Ok(target) => target,
            Err(deny) => return Decision::Deny(deny),
        };
        let route = target.route;
        let accepts = match target.rule {
            MethodRule::Public => {
                return Decision::Allow(Allow {
                    route_id: route.id.clone(),
                    identity: None,
                    rate: None,
                    forward_provider_token: false,
                })
            }
            MethodRule::Credentials(accepts) => accepts,
        };
        let deny = |reason: Reason| Deny::new(reason).on_route(&route.id).accepting(accepts);
        if self.is_stale() {
            return Decision::Deny(deny(Reason::StoreUnavailable));
        }
        let source = req.source.map(throttle_key);
        if let Some(source) = &source {
            if let Err(retry_after) = self.not_throttled(source).await {
                ::metrics::counter!(crate::metrics::FAILED_AUTH_THROTTLED).increment(1);
                let mut d = deny(Reason::RateLimited);
                d.retry_after = Some(retry_after);
                return Decision::Deny(d);
            }
        }
        let who = match self.authenticate(&policy, accepts, req).await {
            Ok(who) => who,
            Err(reason) => {
                self.count_failure(source.as_ref(), reason).await;
                return Decision::Deny(deny(reason));
            }
        };
        let identity = identity_of(&who);
        let with_identity = |mut d: Deny| {
            d.client_id = Some(identity.client_id.clone());
            d.key_id = identity.key_id.clone();
            Decision::Deny(d)
        };
        let now = self.clock.unix_secs();
        let charges = match permit(who, route, req, now) {
            Ok(charges) => charges,
            Err(reason) => {
                // A revoked or expired key is a wrong credential like an
                // unknown one: it counts against its source address.
                self.count_failure(source.as_ref(), reason).await;
                return with_identity(deny(reason));
            }
        };
        match self.charge(&charges).await {
            Ok(rate) => {
                if let (Some(usage), Some(key)) = (&self.usage, &identity.key_id) {
                    usage.record(key, now);
                }
                Decision::Allow(Allow {
                    route_id: route.id.clone(),
                    identity: Some(identity),
                    rate,
                    forward_provider_token: accepts.forwards_provider_token()
                        && req.has_provider_token,
                })
            }
            Err(Limited::Denied(limited)) => {
                let mut d = deny(Reason::RateLimited);
                d.retry_after = Some(limited.retry_after_secs.max(1));
                d.rate = Some(limited.info);
                with_identity(d)
            }
            Err(Limited::Unavailable) => with_identity(deny(Reason::StoreUnavailable)),
        }
    }

    /// Charges every limit, in Redis when configured. When Redis cannot be
    /// asked: the in-process limiter (`local`) or a refusal (`deny`).
    async fn charge(&self, charges: &[Charge<'_>]) -> Result<Option<RateInfo>, Limited> {
        if charges.is_empty() {
            return Ok(None);
        }
        if let Some(shared) = &self.shared {
            let asked = shared.limits.ask("rate_limit", charges, Mode::Charge).await;
            match asked {
                Ok(verdict) => return verdict.map_err(Limited::Denied),
                Err(Unavailable) if shared.redis.failure_mode() == RedisFailure::Deny => {
                    return Err(Limited::Unavailable)
                }
                Err(Unavailable) => {}
            }
        }
        self.limiter
            .check_and_charge(charges, self.clock.mono_nanos())
            .map_err(Limited::Denied)
    }

    /// `Err(retry_after)` when `source` has failed too often. Without Redis
    /// (or while it is down) the in-process counts decide: throttling is a
    /// defence, it never refuses for want of a store.
    async fn not_throttled(&self, source: &LimitKey) -> Result<(), u64> {
        let charge = [Charge {
            key: source,
            limit: self.throttle.limit,
        }];
        if self.shared.is_some() && self.throttle.clean.get(source, Instant::now()).is_some() {
            return Ok(());
        }
        let verdict = match self
            .ask_shared("failed_auth_check", &charge, Mode::Peek)
            .await
        {
            Some(verdict) => {
                if verdict.is_ok() {
                    self.throttle
                        .clean
                        .insert(source.clone(), (), Instant::now());
                }
                verdict.map(drop)
            }
            None => self.throttle.local.peek(&charge, self.clock.mono_nanos()),
        };
        verdict.map_err(|denied| denied.retry_after_secs.max(1))
    }

    /// Counts `reason` against `source` when it is a wrong credential.
    async fn count_failure(&self, source: Option<&LimitKey>, reason: Reason) {
        if let (Some(source), true) = (source, counts_as_failure(reason)) {
            self.record_failure(source).await;
        }
    }

    /// Counts one failed credential from `source`.
    async fn record_failure(&self, source: &LimitKey) {
        self.throttle.clean.remove(source);
        let charge = [Charge {
            key: source,
            limit: self.throttle.limit,
        }];
        if self
            .ask_shared("failed_auth_count", &charge, Mode::Charge)
            .await
            .is_none()
        {
            let _ = self
                .throttle
                .local
                .check_and_charge(&charge, self.clock.mono_nanos());
        }
    }

    /// Runs the limiter script on Redis; `None` when there is no Redis or it
    /// could not answer.
    async fn ask_shared(
        &self,
        what: &'static str,
        charges: &[Charge<'_>],
        mode: Mode,
    ) -> Option<Result<Option<RateInfo>, RateDenied>> {
        let shared = self.shared.as_ref()?;
        shared.limits.ask(what, charges, mode).await.ok()
    }

    /// Steps 2 and 3: the presented credential, of an accepted type, verified.
    async fn authenticate<'p>(
        &self,
        policy: &'p Policy,
        accepts: CredentialSet,
        req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Reason> {
        let presented = extract(&req.credentials, self.settings.allow_query_key);
        check_presented(accepts, &presented)?;
        match &presented {
            Presented::ApiKey(key) => {
                classify(key).map_err(|_| Reason::InvalidCredentials)?;
                checked("api_key");
                let digest = Digest::of(key.as_bytes());
                match policy.key(&digest) {
                    Some(found) => Ok(found),
                    None => self.key_from_store(policy, digest).await,
                }
            }
            Presented::Basic { client_id, secret } => {
                let client = policy.client(client_id).ok_or(Reason::InvalidCredentials)?;
                let hash = client
                    .client
                    .secret_hash
                    .as_ref()
                    .ok_or(Reason::InvalidCredentials)?;
                checked("basic");
                match self.basic.verify(client_id, secret, hash).await {
                    Ok(true) => Ok(Verified { client, key: None }),
                    Ok(false) => Err(Reason::InvalidCredentials),
                    Err(_) => Err(Reason::StoreUnavailable),
                }
            }
            Presented::Hmac(params) => self.verify_hmac(policy, params, req).await,
            Presented::None | Presented::Invalid(_) => Err(Reason::InvalidCredentials),
        }
    }

    /// A key the snapshot does not know: ask the store, if there is one.
    async fn key_from_store<'p>(
        &self,
        policy: &'p Policy,
        digest: Digest,
    ) -> Result<Verified<'p>, Reason> {
        let Some(store) = &self.key_store else {
            return Err(Reason::InvalidCredentials);
        };
        let record = match store.find_key(digest).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(Reason::InvalidCredentials),
            Err(StoreUnavailable) => return Err(Reason::StoreUnavailable),
        };
        // A client newer than the snapshot: the reload its change triggered
        // has not landed yet. Ask the caller to retry rather than guess.
        let client = policy
            .client(&record.client_id)
            .ok_or(Reason::StoreUnavailable)?;
        Ok(Verified {
            client,
            key: Some(Cow::Owned(record)),
        })
    }

    /// DESIGN §11 order: body → timestamp window → secret and signature →
    /// replay. A nonce is remembered only after a valid signature.
    async fn verify_hmac<'p>(
        &self,
        policy: &'p Policy,
        p: &HmacParams,
        req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Reason> {
        let body: &[u8] = match req.body {
            Body::Forwarded(bytes) => bytes,
            Body::NotForwarded { announced: true } => return Err(Reason::BodyRequired),
            Body::NotForwarded { announced: false } => b"",
        };
        let now = self.clock.unix_secs();
        let window = self.settings.hmac_window_secs;
        if !signature::within_window(p.timestamp, now, window) {
            return Err(Reason::StaleSignature);
        }
        let client = policy
            .client(&p.client_id)
            .ok_or(Reason::InvalidCredentials)?;
        let secret = client
            .client
            .hmac_secret
            .as_ref()
            .ok_or(Reason::InvalidCredentials)?;
        let method = req.method.as_str();
        checked("hmac");
        if !signature::verify(
            secret.expose(),
            &p.signature,
            method,
            &req.uri.raw_path,
            p.timestamp,
            &p.nonce,
            body,
        ) {
            return Err(Reason::InvalidCredentials);
        }
        // Remember the nonce until the timestamp can no longer be fresh.
        let until = p
            .timestamp
            .saturating_add(i64::try_from(window).unwrap_or(i64::MAX));
        match self
            .remember_nonce(&p.client_id, &p.nonce, now, until)
            .await
        {
            NonceOutcome::Fresh => Ok(Verified { client, key: None }),
            NonceOutcome::Replayed => Err(Reason::ReplayedRequest),
            NonceOutcome::Full => Err(Reason::StoreUnavailable),
        }
    }

    /// `SET NX EX` in Redis, shared by the replicas; when Redis cannot be
    /// asked, the in-process store (`local`) or a refusal (`deny`).
    async fn remember_nonce(
        &self,
        client: &str,
        nonce: &str,
        now: i64,
        until: i64,
    ) -> NonceOutcome {
        if let Some(shared) = &self.shared {
            let ttl = redis_nonce_ttl(now, until);
            match shared.redis.insert_nonce_once(client, nonce, ttl).await {
                Ok(true) => return NonceOutcome::Fresh,
                Ok(false) => return NonceOutcome::Replayed,
                Err(Unavailable) if shared.redis.failure_mode() == RedisFailure::Deny => {
                    return NonceOutcome::Full
                }
                Err(Unavailable) => {}
            }
        }
        self.nonces.insert_once(client, nonce, now, until)
    }
}

/// How long Redis keeps a nonce, in whole seconds from `now`, so that it
/// outlives the timestamp's validity. The timestamp stays valid through the
/// whole Unix second `until`, i.e. until the real time `until + 1`; `now` is
/// truncated (the real time may be up to a second later) and Redis counts
/// `EX` from when it receives the command: `until + 2 - now` seconds expire
/// at least a second after the last moment the signature is accepted (that
/// second also absorbs sub-second clock differences between replicas).
fn redis_nonce_ttl(now: i64, until: i64) -> u64 {
    u64::try_from(until.saturating_sub(now).saturating_add(2))
        .unwrap_or(0)
        .max(2)
}

/// Counts verification work done for a presented credential.
fn checked(credential: &'static str) {
    crate::metrics::credential_checked(credential);
}

/// The failures that count against a source address: a credential that
/// was presented and is wrong (not a missing one, not one of another type).
fn counts_as_failure(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::InvalidCredentials | Reason::KeyRevoked | Reason::KeyExpired
    )
}

/// The throttle bucket of an address: the address itself for IPv4, its /64
/// for IPv6 (one host usually holds a whole /64).
fn throttle_key(source: std::net::IpAddr) -> LimitKey {
    use std::net::IpAddr;
    let v4_key = |v4: std::net::Ipv4Addr| {
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

fn identity_of(who: &Verified<'_>) -> Identity {
    Identity {
        client_id: who.client.client.id.clone(),
        client_name: who.client.client.name.clone(),
        key_id: who.key.as_ref().map(|k| k.id.clone()),
    }
}

#[cfg(test)]
mod tests;
