//! Step 3 of the pipeline: the presented credential, of a type the route's
//! method accepts, verified — by one `Verifier` per credential type.
//!
//! A new credential type is one new file here with its `Verifier`, and one
//! line in [`Verifiers::verify`].

mod api_key;
mod basic;
mod hmac;

use std::sync::Arc;

use crate::clock::Clock;
use crate::core::credential::Presented;
use crate::core::decision::Reason;
use crate::core::model::CredentialSet;
use crate::core::policy::{check_presented, Policy, Verified};
use crate::core::request::AuthRequest;
use crate::core::signature::Window;
use crate::error::Outage;
use crate::state::bcrypt::BasicVerifier;
use crate::state::{KeyStore, Nonces};

pub use api_key::ApiKeys;
pub use basic::Basic;
pub use hmac::Hmac;

/// Why a step stopped the pipeline before an allow.
#[derive(Debug)]
pub enum Stop {
    /// A deny: the request itself is refused.
    Refused(Reason),
    /// A dependency failed.
    Outage(Outage),
    /// A key the store knows belongs to a client the snapshot does not have
    /// yet: the reload its creation triggered has not landed. Neither a
    /// wrong credential nor an outage: refused as `store_unavailable` (so
    /// the client retries), not counted as either.
    SnapshotBehind,
}

impl From<Reason> for Stop {
    fn from(reason: Reason) -> Stop {
        Stop::Refused(reason)
    }
}

impl From<Outage> for Stop {
    fn from(outage: Outage) -> Stop {
        Stop::Outage(outage)
    }
}

/// One credential type's check: its presented form → who presented it.
pub trait Verifier {
    /// The credential as `core::credential::extract` found it.
    type Credential<'c>;

    async fn verify<'p>(
        &self,
        policy: &'p Policy,
        credential: Self::Credential<'_>,
        req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Stop>;
}

/// Every credential type gatekeeper verifies.
pub struct Verifiers {
    api_key: ApiKeys,
    basic: Basic,
    hmac: Hmac,
}

impl Verifiers {
    pub fn new(
        keys: Option<Arc<dyn KeyStore>>,
        bcrypt: BasicVerifier,
        nonces: Box<dyn Nonces>,
        hmac_window: Window,
        clock: Arc<dyn Clock>,
    ) -> Verifiers {
        Verifiers {
            api_key: ApiKeys::new(keys),
            basic: Basic::new(bcrypt, clock.clone()),
            hmac: Hmac::new(nonces, hmac_window, clock),
        }
    }

    /// The presented credential must be of a type `accepts` names; then its
    /// verifier says who it is.
    pub async fn verify<'p>(
        &self,
        policy: &'p Policy,
        accepts: CredentialSet,
        presented: &Presented<'_>,
        req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Stop> {
        check_presented(accepts, presented)?;
        match presented {
            Presented::ApiKey(key) => self.api_key.verify(policy, key, req).await,
            Presented::Basic { client_id, secret } => {
                self.basic.verify(policy, (client_id, secret), req).await
            }
            Presented::Hmac(params) => self.hmac.verify(policy, params, req).await,
            Presented::None | Presented::Invalid(_) => Err(Reason::InvalidCredentials.into()),
        }
    }

    /// Forgets every verified Basic secret (the policy changed).
    pub fn forget_verified_secrets(&self) {
        self.basic.forget();
    }

    pub fn bcrypt_runs(&self) -> u64 {
        self.basic.bcrypt_runs()
    }
}

/// Counts verification work done for a presented credential.
fn checked(credential: &'static str) {
    crate::metrics::credential_checked(credential);
}
