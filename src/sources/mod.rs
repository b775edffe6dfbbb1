//! Where the policy comes from (DESIGN §2): the declarative file
//! (`file_format` parses it, `file` watches it) or PostgreSQL (`postgres`,
//! a replica's LISTEN/NOTIFY sync), and what both do with a reload's
//! outcome (`install`), reported on `/readyz` through `status`.
//!
//! A source swaps whole snapshots into the decision service; it never
//! decides a request itself.

pub mod file;
pub mod file_format;
pub mod postgres;
pub mod status;

use std::sync::Mutex;

use crate::core::policy::Policy;
use crate::decide::Authorizer;
use crate::metrics::{CLIENTS, RELOADS, ROUTES};
use status::ReloadStatus;

/// What every source does with a reload's outcome: a good policy is swapped
/// in whole and confirmed fresh; a bad one is refused and the last good one
/// keeps serving. Either way it is counted (`failure` labels the refusal),
/// logged and shown in `/readyz`.
pub fn install<E: std::fmt::Display>(
    authorizer: &Authorizer,
    status: &Mutex<ReloadStatus>,
    trigger: &'static str,
    result: Result<Policy, E>,
    failure: &'static str,
) {
    let update = |f: &dyn Fn(&mut ReloadStatus)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s);
        }
    };
    match result {
        Ok(policy) => {
            let counts = policy.counts();
            authorizer.replace_policy(policy);
            authorizer.confirm_fresh();
            publish_counts(counts.routes, counts.clients);
            metrics::counter!(RELOADS, "result" => "ok").increment(1);
            // The periodic safety net would flood the log at info.
            match trigger {
                "periodic" => tracing::debug!(
                    trigger,
                    routes = counts.routes,
                    clients = counts.clients,
                    "policy reloaded"
                ),
                _ => tracing::info!(
                    trigger,
                    routes = counts.routes,
                    clients = counts.clients,
                    "policy reloaded"
                ),
            }
            let loaded_at = now_rfc3339();
            update(&|s| {
                s.reloads += 1;
                s.loaded_at = Some(loaded_at.clone());
                s.last_error = None;
            });
        }
        Err(error) => {
            // `#`: an anyhow error's whole chain of causes.
            let error = format!("{error:#}");
            metrics::counter!(RELOADS, "result" => failure).increment(1);
            tracing::error!(trigger, %error, "policy not reloaded; the last good one keeps serving");
            update(&|s| {
                s.rejected += 1;
                s.last_error = Some(error.clone());
            });
        }
    }
}

pub fn publish_counts(routes: usize, clients: usize) {
    metrics::gauge!(ROUTES).set(routes as f64);
    metrics::gauge!(CLIENTS).set(clients as f64);
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
