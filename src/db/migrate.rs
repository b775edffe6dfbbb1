//! Schema migrations: the numbered files in `sql/`, embedded in the binary,
//! applied in order by `gatekeeper migrate` and recorded with a checksum in
//! `gk_schema_migrations`.
//!
//! Forward-only: there is no "down". An applied migration is never edited,
//! so a checksum that differs from the embedded file is refused rather than
//! papered over, and so is a version this binary does not know (the database
//! was migrated by a newer gatekeeper). `serve` only checks (`ensure_current`);
//! it never migrates on its own, so many replicas starting at once cannot
//! race a schema change.

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient, Transaction};

use super::connect;

/// One file of `sql/`: `NNNN_name.sql` is version `NNNN`, name `name`.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order; versions run 1..=n without a gap (a unit test
/// holds this list to the directory, so a new file cannot be forgotten).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "policy",
        sql: include_str!("../../sql/0001_policy.sql"),
    },
    Migration {
        version: 2,
        name: "notify_key_digest",
        sql: include_str!("../../sql/0002_notify_key_digest.sql"),
    },
    Migration {
        version: 3,
        name: "provider_token",
        sql: include_str!("../../sql/0003_provider_token.sql"),
    },
    Migration {
        version: 4,
        name: "audit",
        sql: include_str!("../../sql/0004_audit.sql"),
    },
    Migration {
        version: 5,
        name: "audit_batch",
        sql: include_str!("../../sql/0005_audit_batch.sql"),
    },
];

impl Migration {
    /// SHA-256 of the file's bytes, as recorded when it is applied.
    pub fn checksum(&self) -> [u8; 32] {
        Sha256::digest(self.sql.as_bytes()).into()
    }
}

/// A digest of every migration (version, name, checksum) in order: two
/// binaries with the same fingerprint build the same schema.
pub fn fingerprint() -> [u8; 32] {
    fingerprint_of(MIGRATIONS)
}

fn fingerprint_of(migrations: &[Migration]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for m in migrations {
        hash.update(m.version.to_be_bytes());
        hash.update(m.name.as_bytes());
        hash.update([0]);
        hash.update(m.checksum());
    }
    hash.finalize().into()
}

/// The lock every `migrate` takes inside each of its transactions, so two
/// runs at once apply each version once ("gatekeep" in ASCII).
const LOCK_KEY: i64 = 0x6761_7465_6b65_6570;

const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

const TABLE_EXISTS: &str = "SELECT to_regclass('gk_schema_migrations') IS NOT NULL";

// The migrations table itself is created here, not in a migration: it must
// exist before the first one can be recorded.
const CREATE_TABLE: &str = "
CREATE TABLE gk_schema_migrations (
    version    INTEGER PRIMARY KEY CHECK (version > 0),
    name       TEXT NOT NULL,
    checksum   BYTEA NOT NULL, -- SHA-256 of the file as applied
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

const SELECT_APPLIED: &str = "SELECT version, checksum FROM gk_schema_migrations ORDER BY version";

const INSERT_APPLIED: &str =
    "INSERT INTO gk_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)";

/// Every statement this module runs, for the test that prepares them all
/// against a migrated database.
pub const STATEMENTS: &[&str] = &[
    LOCK,
    TABLE_EXISTS,
    CREATE_TABLE,
    SELECT_APPLIED,
    INSERT_APPLIED,
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "migration {version} ({name}) in the database differs from the one in this binary: \
         an applied migration must never be edited"
    )]
    Modified { version: u32, name: &'static str },
    #[error(
        "the database has migration(s) {versions:?} that this gatekeeper does not know: \
         it was migrated by a newer version, run that one"
    )]
    Unknown { versions: Vec<u32> },
    #[error("gk_schema_migrations holds an invalid version {0}")]
    InvalidVersion(i32),
    #[error("migration {version} ({name}) failed")]
    Apply {
        version: u32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("reading or recording the applied migrations failed")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Where a database stands against this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Known versions that are applied.
    pub applied: Vec<u32>,
    /// Known versions not yet applied: `gatekeeper migrate` applies them.
    pub pending: Vec<u32>,
    /// Applied versions this binary does not know (a newer one migrated).
    pub unknown: Vec<u32>,
}

impl SchemaStatus {
    /// The database has exactly this binary's migrations.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// Applies every pending migration, each in its own transaction, and returns
/// the versions applied by this call (empty when there was nothing to do).
pub async fn migrate(client: &mut Client) -> Result<Vec<u32>, MigrateError> {
    let mut applied_now = Vec::new();
    for m in MIGRATIONS {
        let tx = client.transaction().await?;
        // Taken before reading anything: a second run waits here, then sees
        // what the first one committed.
        tx.execute(LOCK, &[&LOCK_KEY]).await?;
        let applied = applied_locked(&tx).await?;
        verify(&applied)?;
        if applied.iter().any(|(v, _)| *v == m.version) {
            tx.rollback().await?;
            continue;
        }
        apply(&tx, m).await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied_now.push(m.version);
    }
    Ok(applied_now)
}

/// What is applied, pending and unknown. A database without the migrations
/// table has everything pending.
pub async fn status(client: &Client) -> Result<SchemaStatus, MigrateError> {
    let applied = applied(client).await?;
    let is_applied = |v: u32| applied.iter().any(|(a, _)| *a == v);
    let is_known = |v: u32| MIGRATIONS.iter().any(|m| m.version == v);
    Ok(SchemaStatus {
        applied: known_versions().filter(|v| is_applied(*v)).collect(),
        pending: known_versions().filter(|v| !is_applied(*v)).collect(),
        unknown: applied
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| !is_known(*v))
            .collect(),
    })
}

/// `gatekeeper migrate`: connects, applies what is pending, returns it.
pub async fn run(url: &str) -> anyhow::Result<Vec<u32>> {
    let (mut client, connection) = connect(url).await?;
    let result = migrate(&mut client).await;
    drop(client);
    let _ = connection.await;
    result.context("migrating the database schema")
}

/// For `serve`: refuses a database with pending migrations, naming the
/// command that fixes it. A database ahead of this binary is allowed (a
/// rolling upgrade migrates before replacing the replicas), with a warning.
pub async fn ensure_current(url: &str) -> anyhow::Result<()> {
    let (client, connection) = connect(url).await?;
    let result = status(&client).await;
    drop(client);
    let _ = connection.await;
    let status = result.context("reading the database schema version")?;
    if !status.pending.is_empty() {
        anyhow::bail!(
            "the database schema is behind: run `gatekeeper migrate` \
             (pending migrations: {:?})",
            status.pending
        );
    }
    if !status.unknown.is_empty() {
        tracing::warn!(
            unknown = ?status.unknown,
            "the database has migrations newer than this gatekeeper"
        );
    }
    Ok(())
}

fn known_versions() -> impl Iterator<Item = u32> {
    MIGRATIONS.iter().map(|m| m.version)
}

/// Applied (version, checksum) rows, or none when the table is missing.
async fn applied(client: &impl GenericClient) -> Result<Vec<(u32, Vec<u8>)>, MigrateError> {
    let exists: bool = client.query_one(TABLE_EXISTS, &[]).await?.get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client.query(SELECT_APPLIED, &[]).await?;
    rows.iter()
        .map(|row| {
            let version: i32 = row.get(0);
            let version =
                u32::try_from(version).map_err(|_| MigrateError::InvalidVersion(version))?;
            Ok((version, row.get(1)))
        })
        .collect()
}

/// Like `applied`, creating the table when missing; only under the lock, so
/// two runs cannot both try to create it.
async fn applied_locked(tx: &Transaction<'_>) -> Result<Vec<(u32, Vec<u8>)>, MigrateError> {
    let exists: bool = tx.query_one(TABLE_EXISTS, &[]).await?.get(0);
    if !exists {
        tx.batch_execute(CREATE_TABLE).await?;
    }
    applied(tx).await
}

/// Refuses an edited migration or a version from a newer binary.
fn verify(applied: &[(u32, Vec<u8>)]) -> Result<(), MigrateError> {
    let mut unknown = Vec::new();
    for (version, checksum) in applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            Some(m) if m.checksum().as_slice() != checksum.as_slice() => {
                return Err(MigrateError::Modified {
                    version: m.version,
                    name: m.name,
                });
            }
            Some(_) => {}
            None => unknown.push(*version),
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::Unknown { versions: unknown })
    }
}

async fn apply(tx: &Transaction<'_>, m: &Migration) -> Result<(), MigrateError> {
    let failed = |source| MigrateError::Apply {
        version: m.version,
        name: m.name,
        source,
    };
    tx.batch_execute(m.sql).await.map_err(failed)?;
    let version = i32::try_from(m.version).expect("migration versions are small");
    tx.execute(
        INSERT_APPLIED,
        &[&version, &m.name, &m.checksum().as_slice()],
    )
    .await
    .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `sql/NNNN_name.sql` files, sorted: (version, name, contents).
    fn files_in_sql_dir() -> Vec<(u32, String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let stem = path.file_stem().unwrap().to_str().unwrap();
                let (number, name) = stem
                    .split_once('_')
                    .unwrap_or_else(|| panic!("{stem}.sql is not NNNN_name.sql"));
                assert_eq!(number.len(), 4, "{stem}.sql: the number has four digits");
                let version = number.parse().unwrap();
                let sql = std::fs::read_to_string(path).unwrap();
                (version, name.to_owned(), sql)
            })
            .collect()
    }

    #[test]
    fn the_embedded_list_is_exactly_the_files_in_sql_in_order() {
        let files = files_in_sql_dir();
        let embedded: Vec<_> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_owned(), m.sql.to_owned()))
            .collect();
        assert_eq!(embedded, files);
    }

    #[test]
    fn versions_run_from_one_without_a_gap() {
        let versions: Vec<u32> = known_versions().collect();
        let expected: Vec<u32> = (1..=versions.len() as u32).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn the_fingerprint_changes_when_any_migration_does() {
        let edited = Migration {
            sql: "-- edited\n",
            ..MIGRATIONS[0]
        };
        let renamed = Migration {
            name: "renamed",
            ..MIGRATIONS[0]
        };
        assert_eq!(fingerprint(), fingerprint_of(MIGRATIONS));
        assert_ne!(fingerprint(), fingerprint_of(&[edited]));
        assert_ne!(fingerprint(), fingerprint_of(&[renamed]));
    }

    #[test]
    fn an_edited_migration_is_refused_naming_its_version() {
        let err = verify(&[(1, vec![0; 32])]).unwrap_err();
        assert!(matches!(err, MigrateError::Modified { version: 1, .. }));
        assert!(err.to_string().contains("migration 1 (policy)"), "{err}");
    }

    #[test]
    fn a_version_from_a_newer_binary_is_refused() {
        let m = &MIGRATIONS[0];
        let applied = [(m.version, m.checksum().to_vec()), (9999, vec![0; 32])];
        let err = verify(&applied).unwrap_err();
        assert!(err.to_string().contains("[9999]"), "{err}");
    }

    #[test]
    fn a_schema_is_current_only_with_nothing_pending_or_unknown() {
        let status = |pending: Vec<u32>, unknown: Vec<u32>| SchemaStatus {
            applied: vec![1],
            pending,
            unknown,
        };
        assert!(status(vec![], vec![]).is_current());
        assert!(!status(vec![2], vec![]).is_current());
        assert!(!status(vec![], vec![3]).is_current());
    }
}
