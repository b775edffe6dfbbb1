//! The admin listener: `/livez`, `/readyz` (JSON details) and `/metrics`.
//! Never exposed through nginx.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::decide::Authorizer;
use crate::sources::status::ReloadStatus;
use crate::state::redis::Redis;

pub struct AdminState {
    pub authorizer: Arc<Authorizer>,
    pub metrics: PrometheusHandle,
    pub reload: Arc<Mutex<ReloadStatus>>,
    pub redis: Option<Arc<Redis>>,
}

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

pub async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let counts = state.authorizer.policy().counts();
    let reload = state.reload.lock().map(|r| r.clone()).unwrap_or_default();
    let mut policy = serde_json::to_value(counts).unwrap_or_default();
    if reload.listener_connected.is_some() {
        // PostgreSQL mode: keys are looked up per request, not held.
        if let Some(map) = policy.as_object_mut() {
            map.remove("keys");
        }
    }
    // Degraded still serves (from the last snapshot), so it stays 200: an
    // orchestrator should not pull every replica during a database outage.
    let postgres = match reload.listener_connected {
        None => "not_configured",
        Some(true) if reload.last_error.is_none() => "ok",
        Some(_) => "degraded",
    };
    // Redis down: decisions go on per GATEKEEPER_REDIS_FAILURE; a detail,
    // not a reason to stop sending traffic here.
    let redis = match &state.redis {
        None => "not_configured",
        Some(r) if r.is_up() => "ok",
        Some(_) => "degraded",
    };
    let status = if postgres == "degraded" || redis == "degraded" {
        "degraded"
    } else {
        "ready"
    };
    HttpResponse::Ok().json(serde_json::json!({
        "status": status,
        "policy": policy,
        "reload": reload,
        "postgres": postgres,
        "redis": redis,
    }))
}

pub async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
