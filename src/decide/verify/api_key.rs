//! API keys (DESIGN §4): classified, hashed, found in the snapshot or — in
//! PostgreSQL mode, for a key created since the last reload — in the store.

use std::borrow::Cow;
use std::sync::Arc;

use crate::core::apikey::classify;
use crate::core::decision::Reason;
use crate::core::model::Digest;
use crate::core::policy::{Policy, Verified};
use crate::core::request::AuthRequest;
use crate::state::KeyStore;

use super::{checked, Stop, Verifier};

pub struct ApiKeys {
    /// PostgreSQL mode's key look-up; none in DB-less mode.
    store: Option<Arc<dyn KeyStore>>,
}

impl ApiKeys {
    pub fn new(store: Option<Arc<dyn KeyStore>>) -> ApiKeys {
        ApiKeys { store }
    }
}

impl Verifier for ApiKeys {
    type Credential<'c> = &'c str;

    async fn verify<'p>(
        &self,
        policy: &'p Policy,
        key: Self::Credential<'_>,
        _req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Stop> {
        classify(key).map_err(|_| Reason::InvalidCredentials)?;
        checked("api_key");
        let digest = Digest::of(key.as_bytes());
        if let Some(found) = policy.key(&digest) {
            return Ok(found);
        }
        let store = self.store.as_ref().ok_or(Reason::InvalidCredentials)?;
        let record = store
            .find_key(digest)
            .await?
            .ok_or(Reason::InvalidCredentials)?;
        let client = policy
            .client(&record.client_id)
            .ok_or(Stop::SnapshotBehind)?;
        Ok(Verified {
            client,
            key: Some(Cow::Owned(record)),
        })
    }
}
