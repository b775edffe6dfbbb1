//! Keeping the policy current in DB-less mode: reload the declarative file on
//! a hang-up (SIGHUP in `serve`) and when it changes on disk. A file that does not validate is
//! rejected with a log line and a metric, and the last good policy keeps
//! serving (DESIGN §2).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::core::policy::{Policy, PolicyError};
use crate::decide::Authorizer;
use crate::signals::Hangups;
use crate::sources::file_format::FileErrors;
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
}

/// Loads and validates a file into a policy.
pub fn load_policy(path: &Path) -> Result<Policy, LoadError> {
    let doc = crate::sources::file_format::load(path).map_err(LoadError::File)?;
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
    ) -> Reloader {
        let seen = version_of(&path);
        Reloader {
            path,
            authorizer,
            status,
            seen,
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
                _ = hangups.recv() => self.reload("sighup"),
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
