//! Basic credentials (DESIGN §4): the client's bcrypt hash, verified off
//! the async workers and cached by what was presented (`state::bcrypt`).

use std::sync::Arc;

use crate::clock::Clock;
use crate::core::decision::Reason;
use crate::core::model::{ClientId, Secret};
use crate::core::policy::{Policy, Verified};
use crate::core::request::AuthRequest;
use crate::state::bcrypt::BasicVerifier;

use super::{checked, Stop, Verifier};

pub struct Basic {
    bcrypt: BasicVerifier,
    clock: Arc<dyn Clock>,
}

impl Basic {
    pub fn new(bcrypt: BasicVerifier, clock: Arc<dyn Clock>) -> Basic {
        Basic { bcrypt, clock }
    }

    pub fn forget(&self) {
        self.bcrypt.clear();
    }

    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt.bcrypt_runs()
    }
}

impl Verifier for Basic {
    type Credential<'c> = (&'c ClientId, &'c Secret);

    async fn verify<'p>(
        &self,
        policy: &'p Policy,
        (client_id, secret): Self::Credential<'_>,
        _req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Stop> {
        let client = policy.client(client_id).ok_or(Reason::InvalidCredentials)?;
        let hash = client
            .client
            .secret_hash
            .as_ref()
            .ok_or(Reason::InvalidCredentials)?;
        checked("basic");
        let now = self.clock.mono_nanos();
        match self.bcrypt.verify(client_id, secret, hash, now).await? {
            true => Ok(Verified { client, key: None }),
            false => Err(Reason::InvalidCredentials.into()),
        }
    }
}
