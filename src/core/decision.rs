//! The outcome of a decision: an allow with an identity, or a deny with a reason.
//!
//! A deny is a value, not an error. This module owns the stable reason strings
//! (they are metric labels and `X-Auth-Reason` values) and the mapping from a
//! reason to the status the client should see. It does no I/O.

use std::sync::Arc;

use super::ids::{ClientId, KeyId, RouteId};
use super::model::CredentialSet;

/// Why a decision came out as it did. The strings are part of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    NoAuthRequired,
    Authenticated,
    NoRouteMatch,
    MethodNotConfigured,
    AmbiguousPath,
    MissingCredentials,
    InvalidCredentials,
    CredentialTypeNotAllowed,
    KeyExpired,
    KeyRevoked,
    ClientSuspended,
    ClientRevoked,
    NoPermission,
    MethodNotAllowed,
    ModelNotAllowed,
    RateLimited,
    ReplayedRequest,
    StaleSignature,
    BodyRequired,
    BadRequest,
    StoreUnavailable,
}

impl Reason {
    /// Every reason, for registering metric series up front.
    pub const ALL: [Reason; 21] = [
        Reason::NoAuthRequired,
        Reason::Authenticated,
        Reason::NoRouteMatch,
        Reason::MethodNotConfigured,
        Reason::AmbiguousPath,
        Reason::MissingCredentials,
        Reason::InvalidCredentials,
        Reason::CredentialTypeNotAllowed,
        Reason::KeyExpired,
        Reason::KeyRevoked,
        Reason::ClientSuspended,
        Reason::ClientRevoked,
        Reason::NoPermission,
        Reason::MethodNotAllowed,
        Reason::ModelNotAllowed,
        Reason::RateLimited,
        Reason::ReplayedRequest,
        Reason::StaleSignature,
        Reason::BodyRequired,
        Reason::BadRequest,
        Reason::StoreUnavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NoAuthRequired => "no_auth_required",
            Reason::Authenticated => "authenticated",
            Reason::NoRouteMatch => "no_route_match",
            Reason::MethodNotConfigured => "method_not_configured",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::MissingCredentials => "missing_credentials",
            Reason::InvalidCredentials => "invalid_credentials",
            Reason::CredentialTypeNotAllowed => "credential_type_not_allowed",
            Reason::KeyExpired => "key_expired",
            Reason::KeyRevoked => "key_revoked",
            Reason::ClientSuspended => "client_suspended",
            Reason::ClientRevoked => "client_revoked",
            Reason::NoPermission => "no_permission",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::ModelNotAllowed => "model_not_allowed",
            Reason::RateLimited => "rate_limited",
            Reason::ReplayedRequest => "replayed_request",
            Reason::StaleSignature => "stale_signature",
            Reason::BodyRequired => "body_required",
            Reason::BadRequest => "bad_request",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }

    /// The status the client should finally see (`X-Auth-Status`).
    pub const fn client_status(self) -> u16 {
        match self {
            Reason::NoAuthRequired | Reason::Authenticated => 200,
            Reason::AmbiguousPath | Reason::BodyRequired | Reason::BadRequest => 400,
            Reason::MissingCredentials
            | Reason::InvalidCredentials
            | Reason::CredentialTypeNotAllowed
            | Reason::KeyExpired
            | Reason::KeyRevoked
            | Reason::StaleSignature
            | Reason::ReplayedRequest => 401,
            Reason::RateLimited => 429,
            Reason::StoreUnavailable => 503,
            Reason::NoRouteMatch
            | Reason::MethodNotConfigured
            | Reason::ClientSuspended
            | Reason::ClientRevoked
            | Reason::NoPermission
            | Reason::MethodNotAllowed
            | Reason::ModelNotAllowed => 403,
        }
    }

    /// The status gatekeeper answers nginx with: nginx's `auth_request` only
    /// understands 2xx, 401 and 403, so everything that is not a 401 is a 403.
    pub const fn subrequest_status(self) -> u16 {
        match self.client_status() {
            200 => 200,
            401 => 401,
            _ => 403,
        }
    }
}

/// Rate-limit state to describe in `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the limit is full again.
    pub reset_secs: u64,
}

/// Who was let through, for the identity headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub client_id: ClientId,
    pub client_name: Arc<str>,
    pub key_id: Option<KeyId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub route_id: RouteId,
    pub identity: Option<Identity>,
    pub rate: Option<RateInfo>,
    /// The method allows bring-your-own-token and the client sent one:
    /// nginx forwards it upstream (`X-Auth-Provider-Token: forward`).
    pub forward_provider_token: bool,
}

impl Allow {
    pub fn reason(&self) -> Reason {
        match self.identity {
            Some(_) => Reason::Authenticated,
            None => Reason::NoAuthRequired,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    pub reason: Reason,
    /// The route, when one matched (a metric label and a log field).
    pub route_id: Option<RouteId>,
    /// The schemes the method accepts, for `WWW-Authenticate` on a 401.
    pub accepts: CredentialSet,
    /// Whole seconds, at least 1, for a 429.
    pub retry_after: Option<u64>,
    pub rate: Option<RateInfo>,
    /// Who was identified before the deny, for the log (never for headers).
    pub client_id: Option<ClientId>,
    pub key_id: Option<KeyId>,
}

impl Deny {
    pub fn new(reason: Reason) -> Deny {
        Deny {
            reason,
            route_id: None,
            accepts: CredentialSet::EMPTY,
            retry_after: None,
            rate: None,
            client_id: None,
            key_id: None,
        }
    }

    pub fn on_route(mut self, route_id: &RouteId) -> Deny {
        self.route_id = Some(route_id.clone());
        self
    }

    pub fn accepting(mut self, accepts: CredentialSet) -> Deny {
        self.accepts = accepts;
        self
    }
}

impl From<Reason> for Deny {
    fn from(reason: Reason) -> Deny {
        Deny::new(reason)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
}

impl Decision {
    pub fn reason(&self) -> Reason {
        match self {
            Decision::Allow(allow) => allow.reason(),
            Decision::Deny(deny) => deny.reason,
        }
    }

    pub fn route_id(&self) -> Option<&RouteId> {
        match self {
            Decision::Allow(allow) => Some(&allow.route_id),
            Decision::Deny(deny) => deny.route_id.as_ref(),
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_401_reasons_reach_nginx_as_401_everything_else_denied_is_403() {
        for reason in Reason::ALL {
            let expected = match reason.client_status() {
                200 => 200,
                401 => 401,
                _ => 403,
            };
            assert_eq!(reason.subrequest_status(), expected, "{reason:?}");
        }
        assert_eq!(Reason::RateLimited.subrequest_status(), 403);
        assert_eq!(Reason::RateLimited.client_status(), 429);
        assert_eq!(Reason::StoreUnavailable.client_status(), 503);
        assert_eq!(Reason::AmbiguousPath.client_status(), 400);
    }

    #[test]
    fn reason_strings_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let s = reason.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(seen.insert(s), "duplicate {s}");
        }
    }
}
