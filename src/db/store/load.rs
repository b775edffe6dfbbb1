//! Reading the policy: every table into a `Document` (what a replica loads
//! and reloads), and the two look-ups the request path makes on a cache
//! miss. A value the model refuses is an error naming its row, never
//! skipped: a replica keeps its last good policy rather than serve part of
//! a new one.

use std::sync::Arc;

use tokio_postgres::{Client, GenericClient, IsolationLevel, Row};

use super::grants::{grant_limit, SELECT_GRANTS};
use super::routes::select_routes;
use super::{id_column, limit_from_columns, StoreError, Subject};
use crate::core::model::{
    Client as PolicyClient, ClientStatus, Digest, Document, KeyRecord, KeyStatus, Secret,
};
use crate::core::seal::{self, MasterKey};

pub(super) const SELECT_CLIENTS: &str = r#"
SELECT c.id, c.name, c.status, l.count, l.window_secs, l.burst,
       s.bcrypt_hash, s.hmac_secret_sealed
  FROM gk_clients c
  LEFT JOIN gk_limits l ON l.client_id = c.id AND l.route_id IS NULL
  LEFT JOIN gk_client_secrets s ON s.client_id = c.id
 ORDER BY c.id COLLATE "C""#;

pub(super) const SELECT_KEYS: &str = r#"
SELECT id, client_id, digest, status, floor(extract(epoch FROM expires_at))::bigint
  FROM gk_api_keys
 ORDER BY id COLLATE "C""#;

// The same columns as SELECT_KEYS, through the unique index on digest.
pub const FIND_KEY: &str = "
SELECT id, client_id, digest, status, floor(extract(epoch FROM expires_at))::bigint
  FROM gk_api_keys
 WHERE digest = $1";

pub(super) const SELECT_CLIENT_SECRETS: &str =
    "SELECT bcrypt_hash, hmac_secret_sealed FROM gk_client_secrets WHERE client_id = $1";

/// Every route, client, key and grant, each kind ordered by id. HMAC
/// secrets are opened with `key`; a sealed secret without a key is
/// `MasterKeyMissing`. Pass a transaction (or use `load_snapshot`) for one
/// consistent view of all four tables.
pub async fn load_document(
    c: &impl GenericClient,
    key: Option<&MasterKey>,
) -> Result<Document, StoreError> {
    load(c, key, Keys::Included).await
}

/// Whether a load reads `gk_api_keys`.
enum Keys {
    Included,
    /// A serving replica looks keys up per request instead (`state::keys`).
    Excluded,
}

async fn load(
    c: &impl GenericClient,
    key: Option<&MasterKey>,
    keys: Keys,
) -> Result<Document, StoreError> {
    let routes = select_routes(c, None)
        .await?
        .iter()
        .map(|row| row.to_route())
        .collect::<Result<_, _>>()?;
    let clients = c
        .query(SELECT_CLIENTS, &[])
        .await?
        .iter()
        .map(|row| client(row, key))
        .collect::<Result<_, _>>()?;
    let keys = match keys {
        Keys::Included => c
            .query(SELECT_KEYS, &[])
            .await?
            .iter()
            .map(key_record)
            .collect::<Result<_, _>>()?,
        Keys::Excluded => Vec::new(),
    };
    let grants = c
        .query(SELECT_GRANTS, &[&None::<&str>])
        .await?
        .iter()
        .map(|row| super::grants::grant_row(row)?.to_grant(grant_limit(row)?))
        .collect::<Result<_, _>>()?;
    Ok(Document {
        routes,
        clients,
        keys,
        grants,
    })
}

/// `load_document` inside a read-only REPEATABLE READ transaction: every
/// table as of one instant, even while the CLI writes.
pub async fn load_snapshot(
    c: &mut Client,
    key: Option<&MasterKey>,
) -> Result<Document, StoreError> {
    snapshot(c, key, Keys::Included).await
}

/// `load_snapshot` without the keys: what a serving replica holds.
pub async fn load_serving_snapshot(
    c: &mut Client,
    key: Option<&MasterKey>,
) -> Result<Document, StoreError> {
    snapshot(c, key, Keys::Excluded).await
}

async fn snapshot(
    c: &mut Client,
    key: Option<&MasterKey>,
    keys: Keys,
) -> Result<Document, StoreError> {
    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let doc = load(&tx, key, keys).await?;
    tx.commit().await?;
    Ok(doc)
}

/// The key with this digest: one look-up through the unique index.
pub async fn find_key(
    c: &impl GenericClient,
    digest: &Digest,
) -> Result<Option<KeyRecord>, StoreError> {
    find_key_with(c, FIND_KEY, digest).await
}

/// `find_key` with the statement given: the request path passes the
/// connection's cached prepared statement (one round trip, not two).
pub async fn find_key_with<S>(
    c: &impl GenericClient,
    statement: &S,
    digest: &Digest,
) -> Result<Option<KeyRecord>, StoreError>
where
    S: ?Sized + tokio_postgres::ToStatement + Sync + Send,
{
    let row = c.query_opt(statement, &[&&digest.0[..]]).await?;
    row.as_ref().map(key_record).transpose()
}

/// The client's bcrypt hash and opened HMAC secret; both `None` for a
/// client without secrets (or no such client).
pub async fn client_secrets(
    c: &impl GenericClient,
    client_id: &str,
    key: Option<&MasterKey>,
) -> Result<(Option<Arc<str>>, Option<Secret>), StoreError> {
    let Some(row) = c.query_opt(SELECT_CLIENT_SECRETS, &[&client_id]).await? else {
        return Ok((None, None));
    };
    let bcrypt: Option<String> = row.try_get(0)?;
    let sealed: Option<Vec<u8>> = row.try_get(1)?;
    let secret = open_secret(client_id, sealed.as_deref(), key)?;
    Ok((bcrypt.map(Arc::from), secret))
}

fn open_secret(
    client_id: &str,
    sealed: Option<&[u8]>,
    key: Option<&MasterKey>,
) -> Result<Option<Secret>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let key = key.ok_or_else(|| StoreError::MasterKeyMissing {
        client: client_id.to_owned(),
    })?;
    seal::open(key, client_id, sealed)
        .map(Some)
        .map_err(|source| StoreError::Unseal {
            client: client_id.to_owned(),
            source,
        })
}

fn client(row: &Row, key: Option<&MasterKey>) -> Result<PolicyClient, StoreError> {
    let id: String = row.try_get(0)?;
    let at = Subject::new("gk_clients", &id);
    let name: String = row.try_get(1)?;
    if name.trim().is_empty() {
        return Err(at.invalid("the name is blank"));
    }
    let status: String = row.try_get(2)?;
    let status = ClientStatus::parse(&status)
        .ok_or_else(|| at.invalid(format!("unknown status `{}`", status.escape_debug())))?;
    let columns: (Option<i32>, Option<i32>, Option<i32>) =
        (row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
    let limit = match columns {
        (Some(n), Some(w), Some(b)) => Some(
            limit_from_columns(n, w, b).map_err(|p| Subject::new("gk_limits", &id).invalid(p))?,
        ),
        _ => None,
    };
    let bcrypt: Option<String> = row.try_get(6)?;
    let sealed: Option<Vec<u8>> = row.try_get(7)?;
    Ok(PolicyClient {
        hmac_secret: open_secret(&id, sealed.as_deref(), key)?,
        id: id_column(&at, "id", &id)?,
        name: Arc::from(name),
        status,
        limit,
        secret_hash: bcrypt.map(Arc::from),
    })
}

fn key_record(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get(0)?;
    let at = Subject::new("gk_api_keys", &id);
    let client_id: String = row.try_get(1)?;
    let digest: Vec<u8> = row.try_get(2)?;
    let digest = <[u8; 32]>::try_from(digest.as_slice())
        .map_err(|_| at.invalid(format!("the digest is {} bytes, not 32", digest.len())))?;
    let status: String = row.try_get(3)?;
    let status = KeyStatus::parse(&status)
        .ok_or_else(|| at.invalid(format!("unknown status `{}`", status.escape_debug())))?;
    Ok(KeyRecord {
        client_id: id_column(&at, "client_id", &client_id)?,
        digest: Digest(digest),
        status,
        expires_at: row.try_get(4)?,
        id: id_column(&at, "id", &id)?,
    })
}
