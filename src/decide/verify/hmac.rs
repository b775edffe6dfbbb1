//! HMAC signatures (DESIGN §11), in this order: body → timestamp window →
//! secret and signature → replay. A nonce is remembered only after a valid
//! signature, so a forger cannot burn a client's nonces.
//!
//! Replay also covers what the nonce store may have forgotten: a store
//! whose memory began at second `began` (a restart without Redis, Redis
//! after losing its data) cannot tell whether a signature fresh by then was
//! already accepted, so one whose timestamp is at most `began + ahead` is
//! refused as `stale_signature` — the client signs again with the current
//! time, which works once the clock is past that (`core::signature::Window`).

use std::sync::Arc;

use crate::clock::Clock;
use crate::core::credential::HmacParams;
use crate::core::decision::Reason;
use crate::core::policy::{Policy, Verified};
use crate::core::request::{AuthRequest, Body};
use crate::core::signature::{self, Window};
use crate::state::Nonces;

use super::{checked, Stop, Verifier};

pub struct Hmac {
    nonces: Box<dyn Nonces>,
    window: Window,
    clock: Arc<dyn Clock>,
}

impl Hmac {
    pub fn new(nonces: Box<dyn Nonces>, window: Window, clock: Arc<dyn Clock>) -> Hmac {
        Hmac {
            nonces,
            window,
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
        if !self.window.admits(p.timestamp, now) {
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
        let until = self.window.fresh_until(p.timestamp);
        let seen = self
            .nonces
            .insert_once(&p.client_id, &p.nonce, now, until)
            .await?;
        if !seen.fresh {
            return Err(Reason::ReplayedRequest.into());
        }
        if self.window.could_predate(p.timestamp, seen.began) {
            return Err(Reason::StaleSignature.into());
        }
        Ok(Verified { client, key: None })
    }
}
