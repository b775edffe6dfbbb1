//! Keeping the policy current in DB-less mode: reload the declarative file on
//! SIGHUP and when it changes on disk. A file that does not validate is
//! rejected with a log line and a metric, and the last good policy keeps
//! serving (DESIGN §2).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::authorizer::Authorizer;
use crate::core::policy::Policy;
use crate::http::admin::ReloadStatus;
use crate::metrics::{CLIENTS, RELOADS, ROUTES};

/// Loads and validates a file into a policy; the message names the place.
pub fn load_policy(path: &Path) -> Result<Policy, String> {
    let doc = crate::file::load(path).map_err(|e| e.to_string())?;
    Policy::build(doc).map_err(|e| e.to_string())
}

/// What identifies a version of the file: cheap metadata first, then the
/// content digest (an editor may rewrite a file without changing its size
/// within one mtime tick).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
}

fn version_of(path: &Path) -> Option<Version> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some(Version {
        modified: meta.modified().ok(),
        len: meta.len(),
        digest: Sha256::digest(&bytes).into(),
    })
}

pub struct Reloader {
    path: PathBuf,
    authorizer: Arc<Authorizer>,
    status: Arc<Mutex<ReloadStatus>>,
    seen: Option<Version>,
    /// Installed when the reloader is built, before the service says it is
    /// listening: from then on a SIGHUP reloads instead of killing us.
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Reloader {
    /// Must run inside the Tokio runtime: it registers the SIGHUP handler.
    pub fn new(
        path: PathBuf,
        authorizer: Arc<Authorizer>,
        status: Arc<Mutex<ReloadStatus>>,
    ) -> Reloader {
        let seen = version_of(&path);
        let hangup = hangup_signal();
        Reloader {
            path,
            authorizer,
            status,
            seen,
            hangup,
        }
    }

    /// Runs until `stop` flips: reloads on SIGHUP, and when the file changed.
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut hangup = self.hangup.take();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = recv_hangup(&mut hangup) => self.reload("sighup"),
                _ = tick.tick() => self.reload_if_changed(),
            }
        }
    }

    fn reload_if_changed(&mut self) {
        let now = version_of(&self.path);
        if now.is_some() && now != self.seen {
            self.reload("file_change");
        }
    }

    pub fn reload(&mut self, trigger: &'static str) {
        self.seen = version_of(&self.path);
        install(
            &self.authorizer,
            &self.status,
            trigger,
            load_policy(&self.path),
            "rejected",
        );
    }
}

/// What every source does with a reload's outcome: a good policy is swapped
/// in whole and confirmed fresh; a bad one is refused and the last good one
/// keeps serving. Either way it is counted (`failure` labels the refusal),
/// logged and shown in `/readyz`.
pub fn install(
    authorizer: &Authorizer,
    status: &Mutex<ReloadStatus>,
    trigger: &'static str,
    result: Result<Policy, String>,
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
            metrics::counter!(RELOADS, "result" => failure).increment(1);
            tracing::error!(trigger, %error, "policy not reloaded; the last good one keeps serving");
            update(&|s| {
                s.rejected += 1;
                s.last_error = Some(error.clone());
            });
        }
    }
}

/// The SIGHUP stream. Once it exists, a SIGHUP no longer kills the process
/// (its default action): both sources install it before the listeners
/// answer, so `systemctl reload` never stops the service. Must be called
/// inside the Tokio runtime.
pub(crate) fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; it would stop the service");
            None
        }
    }
}

/// The next SIGHUP; never, without a handler.
pub(crate) async fn recv_hangup(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
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
