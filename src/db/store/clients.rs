//! Clients and their secrets (`gk_clients`, `gk_client_secrets`). Secrets
//! go in as a bcrypt hash or sealed bytes and never come back out here: the
//! rows only say whether a client has one.

use serde::Serialize;
use tokio_postgres::{GenericClient, Row};

use super::{limit_text, StoreError, Subject};
use crate::core::model::ClientStatus;

/// A client to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewClient {
    pub id: String,
    pub name: String,
    pub status: ClientStatus,
    /// A JSON object.
    pub metadata: serde_json::Value,
}

/// A client as `client list` / `client show --json` print it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub status: String,
    /// The client-wide limit, `600/60s`.
    pub limit: Option<String>,
    pub burst: Option<i32>,
    pub has_basic_secret: bool,
    pub has_hmac_secret: bool,
    pub key_count: i64,
    pub metadata: serde_json::Value,
}

pub(super) const INSERT_CLIENT: &str = "
INSERT INTO gk_clients (id, name, status, metadata)
VALUES ($1::text, $2, $3, $4::text::jsonb)";

pub(super) const SET_CLIENT_STATUS: &str =
    "UPDATE gk_clients SET status = $2, updated_at = now() WHERE id = $1";

pub(super) const RENAME_CLIENT: &str =
    "UPDATE gk_clients SET name = $2, updated_at = now() WHERE id = $1";

pub(super) const DELETE_CLIENT: &str = "DELETE FROM gk_clients WHERE id = $1";

pub(super) const SET_BASIC_SECRET: &str = "
INSERT INTO gk_client_secrets (client_id, bcrypt_hash)
VALUES ($1::text, $2)
ON CONFLICT (client_id)
DO UPDATE SET bcrypt_hash = EXCLUDED.bcrypt_hash, updated_at = now()";

pub(super) const SET_HMAC_SECRET: &str = "
INSERT INTO gk_client_secrets (client_id, hmac_secret_sealed)
VALUES ($1::text, $2)
ON CONFLICT (client_id)
DO UPDATE SET hmac_secret_sealed = EXCLUDED.hmac_secret_sealed, updated_at = now()";

// One statement: the DELETE runs to completion even though the SELECT does
// not read it, and the SELECT says whether the client exists at all.
pub(super) const CLEAR_SECRETS: &str = "
WITH gone AS (DELETE FROM gk_client_secrets WHERE client_id = $1::text RETURNING client_id)
SELECT EXISTS (SELECT 1 FROM gk_clients WHERE id = $1::text), (SELECT count(*) FROM gone)";

pub(super) const SELECT_CLIENT_ROWS: &str = r#"
SELECT c.id, c.name, c.status, l.count, l.window_secs, l.burst,
       s.bcrypt_hash IS NOT NULL, s.hmac_secret_sealed IS NOT NULL,
       (SELECT count(*) FROM gk_api_keys k WHERE k.client_id = c.id),
       c.metadata::text
  FROM gk_clients c
  LEFT JOIN gk_limits l ON l.client_id = c.id AND l.route_id IS NULL
  LEFT JOIN gk_client_secrets s ON s.client_id = c.id
 WHERE $1::text IS NULL OR c.id = $1
 ORDER BY c.id COLLATE "C""#;

pub async fn create_client(c: &impl GenericClient, new: &NewClient) -> Result<(), StoreError> {
    let at = Subject::new("gk_clients", &new.id).client(&new.id);
    if !new.metadata.is_object() {
        return Err(at.invalid("metadata must be a JSON object"));
    }
    let metadata = new.metadata.to_string();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&new.id, &new.name, &new.status.as_str(), &metadata];
    c.execute(INSERT_CLIENT, &params)
        .await
        .map_err(|e| at.error(e))?;
    Ok(())
}

pub async fn set_client_status(
    c: &impl GenericClient,
    id: &str,
    status: ClientStatus,
) -> Result<(), StoreError> {
    update_client(c, SET_CLIENT_STATUS, id, status.as_str()).await
}

pub async fn rename_client(c: &impl GenericClient, id: &str, name: &str) -> Result<(), StoreError> {
    update_client(c, RENAME_CLIENT, id, name).await
}

async fn update_client(
    c: &impl GenericClient,
    sql: &str,
    id: &str,
    value: &str,
) -> Result<(), StoreError> {
    let at = Subject::new("gk_clients", id).client(id);
    match c
        .execute(sql, &[&id, &value])
        .await
        .map_err(|e| at.error(e))?
    {
        0 => Err(at.not_found("client")),
        _ => Ok(()),
    }
}

/// Deletes the client; its keys, secrets, grants and limits go with it.
pub async fn delete_client(c: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    match c.execute(DELETE_CLIENT, &[&id]).await? {
        0 => Err(Subject::new("gk_clients", id).not_found("client")),
        _ => Ok(()),
    }
}

/// Sets (or replaces) the bcrypt hash of the client's Basic secret.
pub async fn set_basic_secret(
    c: &impl GenericClient,
    client_id: &str,
    bcrypt_hash: &str,
) -> Result<(), StoreError> {
    let at = Subject::new("gk_client_secrets", client_id).client(client_id);
    c.execute(SET_BASIC_SECRET, &[&client_id, &bcrypt_hash])
        .await
        .map_err(|e| at.error(e))?;
    Ok(())
}

/// Sets (or replaces) the client's HMAC secret, already sealed
/// (`seal::seal`) for this client.
pub async fn set_hmac_secret(
    c: &impl GenericClient,
    client_id: &str,
    sealed: &[u8],
) -> Result<(), StoreError> {
    let at = Subject::new("gk_client_secrets", client_id).client(client_id);
    c.execute(SET_HMAC_SECRET, &[&client_id, &sealed])
        .await
        .map_err(|e| at.error(e))?;
    Ok(())
}

/// Removes both secrets of an existing client; `true` when it had any.
pub async fn clear_secrets(c: &impl GenericClient, client_id: &str) -> Result<bool, StoreError> {
    let row = c.query_one(CLEAR_SECRETS, &[&client_id]).await?;
    let (exists, cleared): (bool, i64) = (row.try_get(0)?, row.try_get(1)?);
    match exists {
        true => Ok(cleared > 0),
        false => Err(Subject::new("gk_clients", client_id).not_found("client")),
    }
}

/// Every client, by id.
pub async fn list_clients(c: &impl GenericClient) -> Result<Vec<ClientRow>, StoreError> {
    let rows = c.query(SELECT_CLIENT_ROWS, &[&None::<&str>]).await?;
    rows.iter().map(client_row).collect()
}

pub async fn get_client(c: &impl GenericClient, id: &str) -> Result<ClientRow, StoreError> {
    match c.query_opt(SELECT_CLIENT_ROWS, &[&id]).await? {
        Some(row) => client_row(&row),
        None => Err(Subject::new("gk_clients", id).not_found("client")),
    }
}

fn client_row(row: &Row) -> Result<ClientRow, StoreError> {
    let id: String = row.try_get(0)?;
    let count: Option<i32> = row.try_get(3)?;
    let window: Option<i32> = row.try_get(4)?;
    let metadata: String = row.try_get(9)?;
    let metadata = serde_json::from_str(&metadata).map_err(|e| {
        Subject::new("gk_clients", &id).invalid(format!("metadata is not JSON: {e}"))
    })?;
    Ok(ClientRow {
        name: row.try_get(1)?,
        status: row.try_get(2)?,
        limit: count.zip(window).map(|(n, w)| limit_text(n, w)),
        burst: row.try_get(5)?,
        has_basic_secret: row.try_get(6)?,
        has_hmac_secret: row.try_get(7)?,
        key_count: row.try_get(8)?,
        metadata,
        id,
    })
}
