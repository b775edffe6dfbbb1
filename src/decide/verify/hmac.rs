//! HMAC signatures (DESIGN §11), in this order: body → timestamp window →
//! secret and signature → replay. A nonce is remembered only after a valid
//! signature, so a forger cannot burn a client's nonces.

use std::sync::Arc;

use crate::clock::Clock;
use crate::core::credential::HmacParams;
use crate::core::decision::Reason;
use crate::core::policy::{Policy, Verified};
use crate::core::request::{AuthRequest, Body};
use crate::core::signature;
use crate::state::Nonces;

use super::{checked, Stop, Verifier};

pub struct Hmac {
    nonces: Box<dyn Nonces>,
    window_secs: u64,
    clock: Arc<dyn Clock>,
}

impl Hmac {
    pub fn new(nonces: Box<dyn Nonces>, window_secs: u64, clock: Arc<dyn Clock>) -> Hmac {
        Hmac {
            nonces,
            window_secs,
            clock,
        }
    }
}

impl Verifier for Hmac {
    type Credential<'c> = &'c HmacParams;

    async fn verify<'p>(
        &self,
        policy: &'p Policy,
        p: Self::Credential<'_>,
        req: &AuthRequest<'_>,
    ) -> Result<Verified<'p>, Stop> {
        let body: &[u8] = match req.body {
            Body::Forwarded(bytes) => bytes,
            Body::NotForwarded { announced: true } => return Err(Reason::BodyRequired.into()),
            Body::NotForwarded { announced: false } => b"",
        };
        let now = self.clock.unix_secs();
        if !signature::within_window(p.timestamp, now, self.window_secs) {
            return Err(Reason::StaleSignature.into());
        }
        let client = policy
            .client(&p.client_id)
            .ok_or(Reason::InvalidCredentials)?;
        let secret = client
            .client
            .hmac_secret
            .as_ref()
            .ok_or(Reason::InvalidCredentials)?;
        checked("hmac");
        let signed = signature::verify(
            secret.expose(),
            &p.signature,
            req.method.as_str(),
            &req.uri.raw_path,
            p.timestamp,
            &p.nonce,
            body,
        );
        if !signed {
            return Err(Reason::InvalidCredentials.into());
        }
        // Remembered until the timestamp can no longer be fresh.
        let window = i64::try_from(self.window_secs).unwrap_or(i64::MAX);
        let until = p.timestamp.saturating_add(window);
        match self
            .nonces
            .insert_once(&p.client_id, &p.nonce, now, until)
            .await?
        {
            true => Ok(Verified { client, key: None }),
            false => Err(Reason::ReplayedRequest.into()),
        }
    }
}
