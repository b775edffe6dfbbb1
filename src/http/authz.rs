//! `/authz` (DESIGN §4): always an empty body; 200 with identity headers, or
//! 401/403 with `X-Auth-Status` and `X-Auth-Reason`.
//!
//! Served by actix-http's HTTP/1 service directly, not through actix-web's
//! router: one path answers, and the router's per-request work (request
//! object, route match, method guards, extractors) was about a sixth of
//! the instructions a decision took.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_http::body::EitherBody;
use actix_http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use actix_http::{
    HttpMessage as _, Method, Payload, Request, Response, ResponseBuilder, StatusCode,
};
use futures_util::StreamExt;

use crate::audit::{AuditRecord, AuditSink, RequestFacts};
use crate::config::Cidr;
use crate::core::decision::{Allow, Decision, Deny, RateInfo, Reason};
use crate::core::request::{body_forwarded, AuthRequest, RawRequest};
use crate::decide::Authorizer;
use crate::error::{Dependency, Outage};

pub struct AuthzState {
    pub authorizer: Arc<Authorizer>,
    pub max_body: usize,
    pub trusted_proxies: Vec<Cidr>,
    /// Set when decisions are audited (`GATEKEEPER_AUDIT=postgres`).
    pub audit: Option<AuditSink>,
}

// Header names, built once: a name given as a string is parsed, and a
// non-standard one copied into a new allocation, on every look-up.
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-original-path");
static X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-original-host");
static X_ORIGINAL_CONTENT_LENGTH: HeaderName = HeaderName::from_static("x-original-content-length");
static X_ORIGINAL_BODY: HeaderName = HeaderName::from_static("x-original-body");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static X_PROVIDER_TOKEN: HeaderName = HeaderName::from_static("x-provider-token");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_AUTH_STATUS: HeaderName = HeaderName::from_static("x-auth-status");
static X_AUTH_REASON: HeaderName = HeaderName::from_static("x-auth-reason");
static X_AUTH_ROUTE_ID: HeaderName = HeaderName::from_static("x-auth-route-id");
static X_AUTH_CLIENT_ID: HeaderName = HeaderName::from_static("x-auth-client-id");
static X_AUTH_CLIENT_NAME: HeaderName = HeaderName::from_static("x-auth-client-name");
static X_AUTH_KEY_ID: HeaderName = HeaderName::from_static("x-auth-key-id");
static X_AUTH_PROVIDER_TOKEN: HeaderName = HeaderName::from_static("x-auth-provider-token");
static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Longest `X-Request-ID` copied into a log line or an audit row.
const MAX_REQUEST_ID: usize = 128;

/// What `/authz` answers: an empty body, the decision in the status and
/// headers.
pub type AuthzResponse = Response<EitherBody<()>>;

/// Every request the listener gets: `/authz` by GET, POST or HEAD is
/// decided; anything else is 404, as no such resource exists.
pub async fn serve(mut req: Request, state: &AuthzState) -> AuthzResponse {
    let known_method = matches!(*req.method(), Method::GET | Method::POST | Method::HEAD);
    if req.path() != "/authz" || !known_method {
        return Response::build(StatusCode::NOT_FOUND).finish();
    }
    let mut payload = req.take_payload();
    authz(&req, &mut payload, state).await
}

async fn authz(req: &Request, payload: &mut Payload, state: &AuthzState) -> AuthzResponse {
    let started = Instant::now();
    let h = req.headers();
    let body = match read_body(req, payload, state.max_body).await {
        Ok(body) => body,
        Err(reason) => {
            let decision = Decision::Deny(Deny::new(reason));
            return finish(req, &decision, None, None, started, state);
        }
    };
    let raw = RawRequest {
        method: bytes(h, &X_ORIGINAL_METHOD),
        uri: bytes(h, &X_ORIGINAL_URI),
        path: bytes(h, &X_ORIGINAL_PATH),
        host: bytes(h, &X_ORIGINAL_HOST),
        content_length: bytes(h, &X_ORIGINAL_CONTENT_LENGTH),
        body_marker: bytes(h, &X_ORIGINAL_BODY),
        body: body.as_deref(),
        authorization: bytes(h, &AUTHORIZATION),
        x_api_key: bytes(h, &X_API_KEY),
        provider_token: bytes(h, &X_PROVIDER_TOKEN),
    };
    let (decision, facts) = match AuthRequest::parse(&raw) {
        Ok(mut parsed) => {
            parsed.source = source_address(req, &state.trusted_proxies);
            let answer = state.authorizer.decide(&parsed).await;
            // An audited decision keeps what was parsed (moved, not copied);
            // otherwise it is dropped here as it always was.
            let facts = state.audit.is_some().then_some(RequestFacts {
                method: Some(parsed.method),
                host: parsed.host,
                path: Some(parsed.uri.path),
                source: parsed.source,
            });
            (answer, facts)
        }
        Err(reason) => (Ok(Decision::Deny(Deny::new(reason))), None),
    };
    let (decision, outage) = match decision {
        Ok(decision) => (decision, None),
        Err(outage) => answer_outage(outage),
    };
    finish(req, &decision, outage, facts, started, state)
}

/// The one place an outage becomes an answer: `store_unavailable` (403 to
/// nginx, `X-Auth-Status: 503`; never an allow), counted by the dependency
/// that failed, which the decision log line names.
fn answer_outage(outage: Outage) -> (Decision, Option<Dependency>) {
    let dependency = outage.dependency;
    crate::metrics::outage(dependency.as_str());
    (Decision::Deny(outage.refusal()), Some(dependency))
}

fn finish(
    req: &Request,
    decision: &Decision,
    outage: Option<Dependency>,
    facts: Option<RequestFacts>,
    started: Instant,
    state: &AuthzState,
) -> AuthzResponse {
    let elapsed = started.elapsed();
    let seconds = elapsed.as_secs_f64();
    crate::metrics::record_decision(decision, seconds);
    log_decision(req, decision, outage, seconds, state);
    if let Some(audit) = &state.audit {
        // Never waits: a full queue drops the record and counts it.
        audit.try_record(audit_record(req, decision, facts, elapsed, state));
    }
    respond(decision)
}

/// The decision's audit record. A request that did not parse keeps only its
/// source address: its raw headers are neither trusted nor copied.
fn audit_record(
    req: &Request,
    decision: &Decision,
    facts: Option<RequestFacts>,
    elapsed: std::time::Duration,
    state: &AuthzState,
) -> AuditRecord {
    let facts = facts.unwrap_or_else(|| RequestFacts {
        source: source_address(req, &state.trusted_proxies),
        ..RequestFacts::default()
    });
    AuditRecord::of(decision, facts, request_id(req), elapsed)
}

/// `X-Request-ID` when it is printable ASCII and at most `MAX_REQUEST_ID`
/// bytes, else "": what the decision log and the audit log keep.
fn request_id(req: &Request) -> &str {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
}

fn bytes<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    h.get(name).map(HeaderValue::as_bytes)
}

/// The original body, when the bridge forwarded it; bounded. Anything the
/// request to `/authz` carries without the marker is ignored.
async fn read_body(
    req: &Request,
    payload: &mut Payload,
    max: usize,
) -> Result<Option<Vec<u8>>, Reason> {
    if !body_forwarded(bytes(req.headers(), &X_ORIGINAL_BODY)) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Reason::BadRequest)?;
        if body.len() + chunk.len() > max {
            return Err(Reason::BadRequest);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

pub fn respond(decision: &Decision) -> AuthzResponse {
    match decision {
        Decision::Allow(allow) => allow_response(allow),
        Decision::Deny(deny) => deny_response(deny),
    }
}

fn allow_response(allow: &Allow) -> AuthzResponse {
    let mut r = Response::build(StatusCode::OK);
    r.insert_header((X_AUTH_ROUTE_ID.clone(), header_value(&allow.route_id)));
    r.insert_header((X_AUTH_REASON.clone(), reason_value(allow.reason())));
    if let Some(who) = &allow.identity {
        r.insert_header((X_AUTH_CLIENT_ID.clone(), header_value(&who.client_id)));
        r.insert_header((X_AUTH_CLIENT_NAME.clone(), header_value(&who.client_name)));
        if let Some(key) = &who.key_id {
            r.insert_header((X_AUTH_KEY_ID.clone(), header_value(key)));
        }
    }
    if let Some(rate) = allow.rate {
        rate_headers(&mut r, rate);
    }
    if allow.forward_provider_token {
        r.insert_header((
            X_AUTH_PROVIDER_TOKEN.clone(),
            HeaderValue::from_static("forward"),
        ));
    }
    r.finish()
}

fn deny_response(deny: &Deny) -> AuthzResponse {
    let status =
        StatusCode::from_u16(deny.reason.subrequest_status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut r = Response::build(status);
    r.insert_header((
        X_AUTH_STATUS.clone(),
        HeaderValue::from(deny.reason.client_status()),
    ));
    r.insert_header((X_AUTH_REASON.clone(), reason_value(deny.reason)));
    if status == StatusCode::UNAUTHORIZED {
        let schemes: Vec<&str> = deny.accepts.iter().map(|t| t.challenge()).collect();
        let challenge = if schemes.is_empty() {
            "Bearer realm=\"gatekeeper\"".to_owned()
        } else {
            schemes.join(", ")
        };
        r.insert_header((WWW_AUTHENTICATE, challenge));
    }
    if let Some(secs) = deny.retry_after {
        r.insert_header((RETRY_AFTER, HeaderValue::from(secs.max(1))));
    }
    if let Some(rate) = deny.rate {
        rate_headers(&mut r, rate);
    }
    r.finish()
}

fn rate_headers(r: &mut ResponseBuilder, rate: RateInfo) {
    r.insert_header((X_RATELIMIT_LIMIT.clone(), HeaderValue::from(rate.limit)));
    r.insert_header((
        X_RATELIMIT_REMAINING.clone(),
        HeaderValue::from(rate.remaining),
    ));
    r.insert_header((
        X_RATELIMIT_RESET.clone(),
        HeaderValue::from(rate.reset_secs),
    ));
}

fn reason_value(reason: Reason) -> HeaderValue {
    HeaderValue::from_static(reason.as_str())
}

/// Ids and names come from the operator's configuration; anything that is
/// not a valid header value is percent-escaped rather than dropped.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let escaped: String = s
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        HeaderValue::from_str(&escaped).unwrap_or(HeaderValue::from_static(""))
    })
}

/// The source address: `X-Real-IP` when the peer is a trusted proxy.
fn source_address(req: &Request, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let from_proxy = peer.is_none_or(|ip| trusted.iter().any(|c| c.contains(ip)));
    let real_ip = || {
        let v = req.headers().get(&X_REAL_IP)?.to_str().ok()?;
        v.trim().parse::<IpAddr>().ok()
    };
    if from_proxy {
        real_ip().or(peer)
    } else {
        peer
    }
}

fn log_decision(
    req: &Request,
    decision: &Decision,
    outage: Option<Dependency>,
    seconds: f64,
    state: &AuthzState,
) {
    // Allows are logged at debug: when that is off (the default), an allow
    // costs no formatting at all.
    let enabled = match decision {
        Decision::Allow(_) => tracing::enabled!(tracing::Level::DEBUG),
        Decision::Deny(_) => tracing::enabled!(tracing::Level::INFO),
    };
    if !enabled {
        return;
    }
    let request_id = request_id(req);
    let route = decision.route_id().map(|r| &**r).unwrap_or("");
    let source = source_address(req, &state.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let micros = (seconds * 1e6) as u64;
    match decision {
        Decision::Allow(allow) => {
            let who = allow.identity.as_ref();
            tracing::debug!(
                request_id,
                route,
                decision = "allow",
                reason = allow.reason().as_str(),
                client_id = who.map(|w| &*w.client_id).unwrap_or(""),
                key_id = who.and_then(|w| w.key_id.as_deref()).unwrap_or(""),
                source,
                duration_us = micros,
                "decision"
            );
        }
        Decision::Deny(deny) if outage.is_some() => {
            tracing::warn!(
                request_id,
                route,
                decision = "deny",
                reason = deny.reason.as_str(),
                dependency = outage.map(Dependency::as_str).unwrap_or(""),
                client_id = deny.client_id.as_deref().unwrap_or(""),
                key_id = deny.key_id.as_deref().unwrap_or(""),
                source,
                duration_us = micros,
                "decision"
            );
        }
        Decision::Deny(deny) => {
            tracing::info!(
                request_id,
                route,
                decision = "deny",
                reason = deny.reason.as_str(),
                client_id = deny.client_id.as_deref().unwrap_or(""),
                key_id = deny.key_id.as_deref().unwrap_or(""),
                source,
                duration_us = micros,
                "decision"
            );
        }
    }
}
