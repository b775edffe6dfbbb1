//! Carrying out one `Op` inside the apply transaction, through the typed
//! store where it has the write, and otherwise through the few statements
//! below (which the store has no function for).

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use super::diff::{Op, SecretColumn};
use super::ApplyError;
use crate::core::model::Client;
use crate::core::seal::{self, MasterKey};
use crate::db::store::{self, NewClient, StoreError};

/// A key's new owner or digest, in one statement.
pub const MOVE_KEY: &str = "UPDATE gk_api_keys SET client_id = $2::text, digest = $3 WHERE id = $1";

pub const NULL_BASIC: &str =
    "UPDATE gk_client_secrets SET bcrypt_hash = NULL, updated_at = now() WHERE client_id = $1";

pub const NULL_HMAC: &str =
    "UPDATE gk_client_secrets SET hmac_secret_sealed = NULL, updated_at = now() WHERE client_id = $1";

pub async fn run(
    c: &mut impl GenericClient,
    op: &Op,
    key: Option<&MasterKey>,
) -> Result<(), ApplyError> {
    match op {
        Op::DeleteGrant(client, route) => store::delete_grant(c, client, route).await?,
        Op::DeleteKey(id) => store::delete_key(c, id).await?,
        Op::DeleteClient(id) => store::delete_client(c, id).await?,
        Op::DeleteRoute(id) => store::delete_route(c, id).await?,
        Op::UpdateRoute(route) => store::update_route(c, route).await?,
        Op::CreateRoute(route) => store::create_route(c, route).await?,
        Op::CreateClient(client) => store::create_client(c, &new_client(client)).await?,
        Op::RenameClient(id, name) => store::rename_client(c, id, name).await?,
        Op::SetClientStatus(id, status) => store::set_client_status(c, id, *status).await?,
        Op::SetLimit(client, route, Some(limit)) => {
            store::set_limit(c, client, route.as_deref(), *limit).await?
        }
        Op::SetLimit(client, route, None) => {
            store::delete_limit(c, client, route.as_deref()).await?
        }
        Op::SetBasic(id, hash) => store::set_basic_secret(c, id, hash).await?,
        Op::SetHmac(id, secret) => {
            let key = key.ok_or_else(|| ApplyError::MasterKeyMissing {
                client: id.to_string(),
            })?;
            let sealed =
                seal::seal(key, id, secret.expose()).map_err(|source| ApplyError::Seal {
                    client: id.to_string(),
                    source,
                })?;
            store::set_hmac_secret(c, id, &sealed).await?
        }
        Op::NullSecret(id, column) => {
            let sql = match column {
                SecretColumn::Basic => NULL_BASIC,
                SecretColumn::Hmac => NULL_HMAC,
            };
            c.execute(sql, &[&&**id]).await.map_err(StoreError::from)?;
        }
        Op::ClearSecrets(id) => drop(store::clear_secrets(c, id).await?),
        Op::MoveKey(k) => {
            let params: [&(dyn ToSql + Sync); 3] = [&&*k.id, &&*k.client_id, &&k.digest.0[..]];
            c.execute(MOVE_KEY, &params).await.map_err(|e| {
                match e.as_db_error().and_then(|d| d.constraint()) {
                    Some("gk_api_keys_digest_key") => StoreError::Duplicate {
                        what: "a key with the digest given for",
                        id: k.id.to_string(),
                    },
                    Some("gk_api_keys_client_id_fkey") => StoreError::UnknownReference {
                        what: "client",
                        id: k.client_id.to_string(),
                    },
                    _ => StoreError::from(e),
                }
            })?;
        }
        Op::SetKeyStatus(id, status) => store::set_key_status(c, id, *status).await?,
        Op::SetKeyExpiry(id, at) => store::set_key_expiry(c, id, *at).await?,
        Op::CreateKey(k) => store::create_key(c, k, None).await?,
        Op::UpdateGrant(grant) => store::update_grant(c, grant).await?,
        Op::CreateGrant(grant) => store::create_grant(c, grant).await?,
    }
    Ok(())
}

fn new_client(c: &Client) -> NewClient {
    NewClient {
        id: c.id.to_string(),
        name: c.name.to_string(),
        status: c.status,
        metadata: serde_json::json!({}),
    }
}
