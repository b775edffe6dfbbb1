//! `gatekeeper apply FILE [--dry-run] [--prune]`: make the database match a
//! declarative file (DESIGN §2, §9), in one SERIALIZABLE transaction. The
//! current state is read inside it, compared with the file by id, and only
//! what differs is written: an apply that changes nothing issues no write
//! at all, so every table (timestamps included) stays byte-identical. Rows
//! the file leaves out are deleted only with `--prune`; otherwise they are
//! listed as kept. `--dry-run` computes the plan, runs it, and rolls back.

mod diff;
mod text;
mod write;

use serde::Serialize;
use tokio_postgres::IsolationLevel;

use crate::core::model::Document;
use crate::core::policy::Policy;
use crate::core::seal::{MasterKey, SealError};
use crate::db::store::{self, StoreError};
use crate::db::DbError;

pub use diff::KEPT;

/// What an apply creates, changes and deletes. `kept` lists the rows the
/// file leaves out that stay because `--prune` was not given.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub create: Vec<Change>,
    pub update: Vec<Change>,
    pub delete: Vec<Change>,
    pub kept: Vec<Change>,
}

impl Plan {
    /// Nothing to create, change or delete (kept rows are no change).
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// One row's change. `detail` never holds a secret or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `route`, `client`, `key`, `secret`, `grant` or `limit`.
    pub kind: &'static str,
    /// The row's id; a grant (and its limit) is `client → route`.
    pub id: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file's policy does not validate; nothing was read or written.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "client `{client}` has an HMAC secret but no master key is set \
         (GATEKEEPER_MASTER_KEY or GATEKEEPER_MASTER_KEY_FILE)"
    )]
    MasterKeyMissing { client: String },
    #[error("cannot seal the HMAC secret of client `{client}`")]
    Seal {
        client: String,
        #[source]
        source: SealError,
    },
    #[error("another transaction changed the policy at the same time; nothing was written, run apply again")]
    Concurrent,
    #[error(transparent)]
    Connect(#[from] DbError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> ApplyError {
        match e {
            StoreError::MasterKeyMissing { client } => ApplyError::MasterKeyMissing { client },
            StoreError::Refused { code, .. } if code == "40001" || code == "40P01" => {
                ApplyError::Concurrent
            }
            e => ApplyError::Store(e),
        }
    }
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(e: tokio_postgres::Error) -> ApplyError {
        StoreError::from(e).into()
    }
}

/// Validates `doc`, then in one transaction reads the database, computes
/// the plan and carries it out; commits unless `dry_run`.
pub async fn plan_and_apply(
    url: &str,
    doc: &Document,
    master_key: Option<&MasterKey>,
    dry_run: bool,
    prune: bool,
) -> Result<Plan, ApplyError> {
    Policy::build(doc.clone()).map_err(|e| ApplyError::Invalid(e.to_string()))?;
    if master_key.is_none() {
        if let Some(c) = doc.clients.iter().find(|c| c.hmac_secret.is_some()) {
            return Err(ApplyError::MasterKeyMissing {
                client: c.id.to_string(),
            });
        }
    }
    let (mut client, task) = crate::db::connect(url).await?;
    let result = in_transaction(&mut client, doc, master_key, dry_run, prune).await;
    drop(client);
    let _ = task.await;
    result
}

async fn in_transaction(
    client: &mut tokio_postgres::Client,
    doc: &Document,
    master_key: Option<&MasterKey>,
    dry_run: bool,
    prune: bool,
) -> Result<Plan, ApplyError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await?;
    let current = store::load_document(&tx, master_key).await?;
    let (plan, ops) = diff::diff(&current, doc, prune);
    for op in &ops {
        write::run(&mut tx, op, master_key).await?;
    }
    match dry_run {
        true => tx.rollback().await?,
        false => tx.commit().await?,
    }
    Ok(plan)
}

/// The plan as people read it.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.create {
        out.push_str(&format!("+ {} {}", c.kind, c.id));
        if !c.detail.is_empty() {
            out.push_str(&format!(" ({})", c.detail));
        }
        out.push('\n');
    }
    for c in &plan.update {
        out.push_str(&format!("~ {} {}: {}\n", c.kind, c.id, c.detail));
    }
    for c in &plan.delete {
        out.push_str(&format!("- {} {}", c.kind, c.id));
        if !c.detail.is_empty() {
            out.push_str(&format!(" ({})", c.detail));
        }
        out.push('\n');
    }
    for c in &plan.kept {
        out.push_str(&format!("  {} {}: {}\n", c.kind, c.id, c.detail));
    }
    out
}
