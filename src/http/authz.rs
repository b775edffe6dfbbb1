//! `/authz` (DESIGN §4): always an empty body; 200 with identity headers, or
//! 401/403 with `X-Auth-Status` and `X-Auth-Reason`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use futures_util::StreamExt;

use crate::authorizer::Authorizer;
use crate::config::Cidr;
use crate::core::decision::{Allow, Decision, Deny, RateInfo, Reason};
use crate::core::request::{body_forwarded, AuthRequest, RawRequest};

pub struct AuthzState {
    pub authorizer: Arc<Authorizer>,
    pub max_body: usize,
    pub trusted_proxies: Vec<Cidr>,
}

/// Longest `X-Request-ID` copied into a log line.
const MAX_REQUEST_ID: usize = 128;

pub async fn authz(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AuthzState>,
) -> HttpResponse {
    let started = Instant::now();
    let h = req.headers();
    let body = match read_body(&req, &mut payload, state.max_body).await {
        Ok(body) => body,
        Err(reason) => return finish(&req, &Decision::Deny(Deny::new(reason)), started, &state),
    };
    let raw = RawRequest {
        method: bytes(h, "x-original-method"),
        uri: bytes(h, "x-original-uri"),
        path: bytes(h, "x-original-path"),
        host: bytes(h, "x-original-host"),
        content_length: bytes(h, "x-original-content-length"),
        body_marker: bytes(h, "x-original-body"),
        body: body.as_deref(),
        authorization: bytes(h, "authorization"),
        x_api_key: bytes(h, "x-api-key"),
        provider_token: bytes(h, "x-provider-token"),
    };
    let decision = match AuthRequest::parse(&raw) {
        Ok(mut parsed) => {
            parsed.source = source_address(&req, &state.trusted_proxies);
            state.authorizer.decide(&parsed).await
        }
        Err(reason) => Decision::Deny(Deny::new(reason)),
    };
    finish(&req, &decision, started, &state)
}

fn finish(
    req: &HttpRequest,
    decision: &Decision,
    started: Instant,
    state: &AuthzState,
) -> HttpResponse {
    let seconds = started.elapsed().as_secs_f64();
    crate::metrics::record_decision(decision, seconds);
    log_decision(req, decision, seconds, state);
    respond(decision)
}

fn bytes<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    h.get(name).map(HeaderValue::as_bytes)
}

/// The original body, when the bridge forwarded it; bounded. Anything the
/// request to `/authz` carries without the marker is ignored.
async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    max: usize,
) -> Result<Option<Vec<u8>>, Reason> {
    if !body_forwarded(bytes(req.headers(), "x-original-body")) {
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

pub fn respond(decision: &Decision) -> HttpResponse {
    match decision {
        Decision::Allow(allow) => allow_response(allow),
        Decision::Deny(deny) => deny_response(deny),
    }
}

fn allow_response(allow: &Allow) -> HttpResponse {
    let mut r = HttpResponse::Ok();
    r.insert_header(("x-auth-route-id", header_value(&allow.route_id)));
    r.insert_header(("x-auth-reason", allow.reason().as_str()));
    if let Some(who) = &allow.identity {
        r.insert_header(("x-auth-client-id", header_value(&who.client_id)));
        r.insert_header(("x-auth-client-name", header_value(&who.client_name)));
        if let Some(key) = &who.key_id {
            r.insert_header(("x-auth-key-id", header_value(key)));
        }
    }
    if let Some(rate) = allow.rate {
        rate_headers(&mut r, rate);
    }
    if allow.forward_provider_token {
        r.insert_header(("x-auth-provider-token", "forward"));
    }
    r.finish()
}

fn deny_response(deny: &Deny) -> HttpResponse {
    let status =
        StatusCode::from_u16(deny.reason.subrequest_status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut r = HttpResponseBuilder::new(status);
    r.insert_header(("x-auth-status", deny.reason.client_status().to_string()));
    r.insert_header(("x-auth-reason", deny.reason.as_str()));
    if status == StatusCode::UNAUTHORIZED {
        let schemes: Vec<&str> = deny.accepts.iter().map(|t| t.challenge()).collect();
        let challenge = if schemes.is_empty() {
            "Bearer realm=\"gatekeeper\"".to_owned()
        } else {
            schemes.join(", ")
        };
        r.insert_header(("www-authenticate", challenge));
    }
    if let Some(secs) = deny.retry_after {
        r.insert_header(("retry-after", secs.max(1).to_string()));
    }
    if let Some(rate) = deny.rate {
        rate_headers(&mut r, rate);
    }
    r.finish()
}

fn rate_headers(r: &mut HttpResponseBuilder, rate: RateInfo) {
    r.insert_header(("x-ratelimit-limit", rate.limit.to_string()));
    r.insert_header(("x-ratelimit-remaining", rate.remaining.to_string()));
    r.insert_header(("x-ratelimit-reset", rate.reset_secs.to_string()));
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
fn source_address(req: &HttpRequest, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let from_proxy = peer.is_none_or(|ip| trusted.iter().any(|c| c.contains(ip)));
    let real_ip = || {
        let v = req.headers().get("x-real-ip")?.to_str().ok()?;
        v.trim().parse::<IpAddr>().ok()
    };
    if from_proxy {
        real_ip().or(peer)
    } else {
        peer
    }
}

fn log_decision(req: &HttpRequest, decision: &Decision, seconds: f64, state: &AuthzState) {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("");
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
