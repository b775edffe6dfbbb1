//! Keeping the policy current in DB-less mode: reload the declarative file on
//! a hang-up (SIGHUP in `serve`) and when it changes on disk. A file that does
//! not validate is rejected with a log line and a metric, and the last good
//! policy keeps serving (DESIGN §2).
//!
//! A file rewritten in place can be read half-written, and half a file can
//! still validate (a missing `status = "revoked"` line revives a key). So a
//! reload installs only a settled file: two reads `QUIET` apart that agree
//! (content, length and modification time). A file still changing after
//! `SETTLE_LIMIT` is not installed. Writing the file atomically (a rename)
//! remains the way to make every reload see a whole file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::core::policy::{Policy, PolicyError};
use crate::decide::Authorizer;
use crate::signals::Hangups;
use crate::sources::file_format::{parse_document, FileErrors};
use crate::sources::install;
use crate::sources::status::ReloadStatus;

/// Why a declarative file could not become a policy; the message names the
/// place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    File(FileErrors),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("the file kept changing for {0:?}; not installed (write it atomically: a rename)")]
    Unsettled(Duration),
    /// A file with no route is what a truncated or emptied file looks like.
    #[error("the file defines no route; set GATEKEEPER_ALLOW_EMPTY_POLICY=true to serve it")]
    NoRoutes,
}

/// Loads and validates a file into a policy; one with no route only when
/// `allow_empty`.
pub fn load_policy(path: &Path, allow_empty: bool) -> Result<Policy, LoadError> {
    let doc = crate::sources::file_format::load(path).map_err(LoadError::File)?;
    routed(Policy::build(doc)?, allow_empty)
}

fn routed(policy: Policy, allow_empty: bool) -> Result<Policy, LoadError> {
    match policy.counts().routes == 0 && !allow_empty {
        true => Err(LoadError::NoRoutes),
        false => Ok(policy),
    }
}

/// How long a file must stay the same, read twice, before it is installed.
const QUIET: Duration = Duration::from_millis(250);
/// How long a reload waits for a changing file to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// The policy of a settled file — read twice `QUIET` apart with the same
/// version — built from the very bytes compared, with their version.
async fn load_settled(
    path: &Path,
    allow_empty: bool,
) -> (Result<Policy, LoadError>, Option<Version>) {
    let mut before = version_of(path);
    for _ in 0..SETTLE_LIMIT.as_millis() / QUIET.as_millis() {
        tokio::time::sleep(QUIET).await;
        let Some((now, bytes)) = read_version(path) else {
            // Gone or unreadable: the plain load names the error.
            return (load_policy(path, allow_empty), None);
        };
        if before.as_ref() == Some(&now) {
            let policy = policy_of(path, &bytes).and_then(|p| routed(p, allow_empty));
            return (policy, Some(now));
        }
        before = Some(now);
    }
    (Err(LoadError::Unsettled(SETTLE_LIMIT)), None)
}

/// The policy in `bytes`, read from `path` (the base of relative secret
/// files); secrets named by `{ env = … }` come from the process.
fn policy_of(path: &Path, bytes: &[u8]) -> Result<Policy, LoadError> {
    let place = || path.display().to_string();
    let text = std::str::from_utf8(bytes)
        .map_err(|_| LoadError::File(FileErrors::single(place(), "cannot read: not UTF-8")))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let env = |name: &str| std::env::var(name).ok();
    let doc = parse_document(text, &env, base_dir).map_err(LoadError::File)?;
    Ok(Policy::build(doc)?)
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
    read_version(path).map(|(version, _)| version)
}

/// The file's version and the bytes it was computed from.
fn read_version(path: &Path) -> Option<(Version, Vec<u8>)> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    let version = Version {
        modified: meta.modified().ok(),
        len: meta.len(),
        digest: Sha256::digest(&bytes).into(),
    };
    Some((version, bytes))
}

pub struct Reloader {
    path: PathBuf,
    authorizer: Arc<Authorizer>,
    status: Arc<Mutex<ReloadStatus>>,
    seen: Option<Version>,
    allow_empty: bool,
    /// What asks for a reload besides a change on disk: SIGHUP in `serve`
    /// (installed before the service says it is listening), a trigger in
    /// process.
    hangups: Hangups,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        authorizer: Arc<Authorizer>,
        status: Arc<Mutex<ReloadStatus>>,
        hangups: Hangups,
        allow_empty: bool,
    ) -> Reloader {
        let seen = version_of(&path);
        Reloader {
            path,
            authorizer,
            status,
            seen,
            allow_empty,
            hangups,
        }
    }

    /// Runs until `stop` flips: reloads on a hang-up, and when the file
    /// changed.
    pub async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut hangups = std::mem::replace(&mut self.hangups, Hangups::never());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = hangups.recv() => self.reload("sighup").await,
                _ = tick.tick() => self.reload_if_changed().await,
            }
        }
    }

    async fn reload_if_changed(&mut self) {
        let now = version_of(&self.path);
        if now.is_some() && now != self.seen {
            self.reload("file_change").await;
        }
    }

    pub async fn reload(&mut self, trigger: &'static str) {
        let (loaded, version) = load_settled(&self.path, self.allow_empty).await;
        // The version installed (or refused), so the watcher does not load
        // it again; a file that never settled is looked at again.
        self.seen = version;
        install(&self.authorizer, &self.status, trigger, loaded, "rejected");
    }
}
