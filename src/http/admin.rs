//! The admin listener: `/livez`, `/readyz` (JSON details) and `/metrics`.
//! Never exposed through nginx.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::authorizer::Authorizer;

/// What the reloader last did, for `/readyz`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadStatus {
    pub source: String,
    pub loaded_at: Option<String>,
    pub last_error: Option<String>,
    pub reloads: u64,
    pub rejected: u64,
    /// PostgreSQL mode: whether the LISTEN connection is up.
    pub listener_connected: Option<bool>,
}

pub struct AdminState {
    pub authorizer: Arc<Authorizer>,
    pub metrics: PrometheusHandle,
    pub reload: Arc<Mutex<ReloadStatus>>,
}

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

pub async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let counts = state.authorizer.policy().counts();
    let reload = state.reload.lock().map(|r| r.clone()).unwrap_or_default();
    // Degraded still serves (from the last snapshot), so it stays 200: an
    // orchestrator should not pull every replica during a database outage.
    let postgres = match reload.listener_connected {
        None => "not_configured",
        Some(true) if reload.last_error.is_none() => "ok",
        Some(_) => "degraded",
    };
    let status = if postgres == "degraded" {
        "degraded"
    } else {
        "ready"
    };
    HttpResponse::Ok().json(serde_json::json!({
        "status": status,
        "policy": counts,
        "reload": reload,
        "postgres": postgres,
        "redis": "not_configured",
    }))
}

pub async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
