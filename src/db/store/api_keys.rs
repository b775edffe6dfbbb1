//! API keys (`gk_api_keys`): created with their digest, which never comes
//! back out in a row; status and expiry changes are announced to replicas,
//! `last_used_at` batches are not (the schema's trigger leaves them out).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use super::{StoreError, Subject};
use crate::core::model::{KeyId, KeyRecord, KeyStatus};

/// A key as `key list` / `key show --json` print it: never its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub client_id: String,
    pub label: Option<String>,
    pub status: String,
    /// RFC 3339, UTC, whole seconds.
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
}

pub(super) const INSERT_KEY: &str = "
INSERT INTO gk_api_keys (id, client_id, digest, label, status, expires_at)
VALUES ($1::text, $2::text, $3, $4, $5, to_timestamp($6::bigint))";

pub(super) const SET_KEY_STATUS: &str = "UPDATE gk_api_keys SET status = $2 WHERE id = $1";

pub(super) const SET_KEY_EXPIRY: &str =
    "UPDATE gk_api_keys SET expires_at = to_timestamp($2::bigint) WHERE id = $1";

pub(super) const DELETE_KEY: &str = "DELETE FROM gk_api_keys WHERE id = $1";

// Sets only last_used_at, so the notify trigger (UPDATE OF the other
// columns) stays quiet; a late batch never moves the time backwards.
pub(super) const TOUCH_KEYS: &str = "
UPDATE gk_api_keys AS k
   SET last_used_at = to_timestamp(u.used_at)
  FROM unnest($1::text[], $2::bigint[]) AS u (id, used_at)
 WHERE k.id = u.id
   AND (k.last_used_at IS NULL OR k.last_used_at < to_timestamp(u.used_at))";

// The two key readers differ only in their WHERE clause.
macro_rules! select_key_rows {
    ($rest:literal) => {
        concat!(
            r#"
SELECT id, client_id, label, status,
       to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
  FROM gk_api_keys
"#,
            $rest
        )
    };
}

pub(super) const SELECT_KEY_ROWS: &str =
    select_key_rows!(r#" WHERE $1::text IS NULL OR client_id = $1 ORDER BY id COLLATE "C""#);

pub(super) const SELECT_KEY_ROW: &str = select_key_rows!(" WHERE id = $1");

/// Stores a key by its digest. Only the digest is ever stored.
pub async fn create_key(
    c: &impl GenericClient,
    key: &KeyRecord,
    label: Option<&str>,
) -> Result<(), StoreError> {
    let at = Subject::new("gk_api_keys", &key.id).client(&key.client_id);
    let params: [&(dyn ToSql + Sync); 6] = [
        &&*key.id,
        &&*key.client_id,
        &&key.digest.0[..],
        &label,
        &key.status.as_str(),
        &key.expires_at,
    ];
    c.execute(INSERT_KEY, &params)
        .await
        .map_err(|e| at.error(e))?;
    Ok(())
}

pub async fn set_key_status(
    c: &impl GenericClient,
    id: &str,
    status: KeyStatus,
) -> Result<(), StoreError> {
    update_key(c, SET_KEY_STATUS, id, &status.as_str()).await
}

/// Sets (`Some` Unix seconds) or removes (`None`) the key's expiry.
pub async fn set_key_expiry(
    c: &impl GenericClient,
    id: &str,
    expires_at: Option<i64>,
) -> Result<(), StoreError> {
    update_key(c, SET_KEY_EXPIRY, id, &expires_at).await
}

async fn update_key(
    c: &impl GenericClient,
    sql: &str,
    id: &str,
    value: &(dyn ToSql + Sync),
) -> Result<(), StoreError> {
    let at = Subject::new("gk_api_keys", id);
    match c
        .execute(sql, &[&id, value])
        .await
        .map_err(|e| at.error(e))?
    {
        0 => Err(at.not_found("key")),
        _ => Ok(()),
    }
}

pub async fn delete_key(c: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    match c.execute(DELETE_KEY, &[&id]).await? {
        0 => Err(Subject::new("gk_api_keys", id).not_found("key")),
        _ => Ok(()),
    }
}

/// Records when keys were last used (Unix seconds), in one statement; a key
/// named twice keeps its latest time, an unknown key is skipped. Returns
/// how many keys changed. Replicas are not notified.
pub async fn touch_keys_last_used(
    c: &impl GenericClient,
    used: &[(KeyId, i64)],
) -> Result<u64, StoreError> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, at) in used {
        let entry = latest.entry(id).or_insert(*at);
        *entry = (*entry).max(*at);
    }
    if latest.is_empty() {
        return Ok(0);
    }
    let (ids, times): (Vec<&str>, Vec<i64>) = latest.into_iter().unzip();
    Ok(c.execute(TOUCH_KEYS, &[&ids, &times]).await?)
}

/// Every key, or the keys of one client, by id.
pub async fn list_keys(
    c: &impl GenericClient,
    client: Option<&str>,
) -> Result<Vec<KeyRow>, StoreError> {
    let rows = c.query(SELECT_KEY_ROWS, &[&client]).await?;
    rows.iter().map(key_row).collect()
}

pub async fn get_key(c: &impl GenericClient, id: &str) -> Result<KeyRow, StoreError> {
    match c.query_opt(SELECT_KEY_ROW, &[&id]).await? {
        Some(row) => key_row(&row),
        None => Err(Subject::new("gk_api_keys", id).not_found("key")),
    }
}

fn key_row(row: &Row) -> Result<KeyRow, StoreError> {
    Ok(KeyRow {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        label: row.try_get(2)?,
        status: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        last_used_at: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}
