//! The API Gatekeeper HMAC scheme (DESIGN §5): what is signed, the time
//! window, and a constant-time check of the signature. Pure; the nonce store
//! and the secret look-up live at the edges.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `METHOD\npath\ntimestamp\nnonce\nbody`, keyed with the shared secret.
/// `None` only if the key were refused, which HMAC never does (any length
/// is a valid key); callers treat it as a failed verification.
fn mac(
    secret: &[u8],
    method: &str,
    raw_path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    for part in [
        method.as_bytes(),
        raw_path.as_bytes(),
        timestamp.to_string().as_bytes(),
        nonce.as_bytes(),
    ] {
        mac.update(part);
        mac.update(b"\n");
    }
    mac.update(body);
    Some(mac)
}

/// The signature a client computes, as lower-case hex (the CLI signer).
pub fn sign(
    secret: &[u8],
    method: &str,
    raw_path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    mac(secret, method, raw_path, timestamp, nonce, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Constant-time comparison of the presented signature.
pub fn verify(
    secret: &[u8],
    signature: &[u8; 32],
    method: &str,
    raw_path: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> bool {
    mac(secret, method, raw_path, timestamp, nonce, body)
        .is_some_and(|m| m.verify_slice(signature).is_ok())
}

/// Which timestamps are fresh: at most `behind` seconds before the clock
/// (`GATEKEEPER_HMAC_WINDOW`), at most `ahead` seconds after it
/// (`GATEKEEPER_HMAC_MAX_AHEAD`, never more than `behind`).
///
/// `ahead` is kept short because of what a nonce store that lost its
/// memory (a restart without Redis, Redis losing its data) must refuse:
/// every signature an earlier memory might have accepted. While the clock
/// read up to second `began`, timestamps up to `began + ahead` were fresh,
/// so those are refused ([`Window::could_predate`]) — for about `ahead`
/// seconds after `began`, fresh requests too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    behind: u64,
    ahead: u64,
}

impl Window {
    pub fn new(behind_secs: u64, ahead_secs: u64) -> Window {
        Window {
            behind: behind_secs,
            ahead: ahead_secs.min(behind_secs),
        }
    }

    /// now − behind ≤ timestamp ≤ now + ahead.
    pub fn admits(&self, timestamp: i64, now: i64) -> bool {
        let limit = if timestamp <= now {
            self.behind
        } else {
            self.ahead
        };
        now.abs_diff(timestamp) <= limit
    }

    /// The last Unix second at which `timestamp` is still fresh: its nonce
    /// must be remembered until then.
    pub fn fresh_until(&self, timestamp: i64) -> i64 {
        timestamp.saturating_add(i64::try_from(self.behind).unwrap_or(i64::MAX))
    }

    /// Whether a signature of `timestamp` could have been accepted while
    /// the clock read `began` or earlier (by a memory that began later, it
    /// is not remembered).
    pub fn could_predate(&self, timestamp: i64, began: i64) -> bool {
        timestamp <= began.saturating_add(i64::try_from(self.ahead).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let s = sign(b"secret", "POST", "/v1/chat", 1_700_000_000, "n1", b"{}");
        let mut sig = [0u8; 32];
        hex::decode_to_slice(&s, &mut sig).unwrap();
        assert!(verify(
            b"secret",
            &sig,
            "POST",
            "/v1/chat",
            1_700_000_000,
            "n1",
            b"{}"
        ));
        assert!(!verify(
            b"secret",
            &sig,
            "POST",
            "/v1/chat",
            1_700_000_000,
            "n1",
            b"{ }"
        ));
        assert!(!verify(
            b"secreT",
            &sig,
            "POST",
            "/v1/chat",
            1_700_000_000,
            "n1",
            b"{}"
        ));
        assert!(!verify(
            b"secret",
            &sig,
            "GET",
            "/v1/chat",
            1_700_000_000,
            "n1",
            b"{}"
        ));
        assert!(!verify(
            b"secret",
            &sig,
            "POST",
            "/v1/chat",
            1_700_000_001,
            "n1",
            b"{}"
        ));
    }

    #[test]
    fn the_window_is_inclusive_and_shorter_ahead() {
        let w = Window::new(300, 5);
        assert!(w.admits(1000, 1300));
        assert!(!w.admits(1000, 1301));
        assert!(w.admits(1005, 1000));
        assert!(!w.admits(1006, 1000));
        assert!(!w.admits(i64::MIN, i64::MAX));
        assert!(!w.admits(i64::MAX, i64::MIN));
        assert_eq!(Window::new(10, 60), Window::new(10, 10));
        assert_eq!(w.fresh_until(1000), 1300);
    }

    /// A memory that began at second 1000 cannot vouch for any timestamp
    /// the clock admitted up to then: 1000 + ahead at the latest.
    #[test]
    fn a_timestamp_an_earlier_memory_could_have_accepted_predates_it() {
        let w = Window::new(300, 5);
        let began = 1000;
        for accepted_at in [700, 999, 1000] {
            let latest = (accepted_at..=accepted_at + 10)
                .filter(|t| w.admits(*t, accepted_at))
                .max()
                .unwrap();
            assert!(w.could_predate(latest, began), "{accepted_at}");
        }
        assert!(!w.could_predate(1006, began));
        assert!(w.could_predate(i64::MAX, i64::MAX));
    }

    /// Computed independently, once, with Python's standard library:
    ///
    /// ```text
    /// python3 -c 'import hmac, hashlib
    /// for m,p,t,n,b in [("GET","/api/tags",1700000000,"nonce-get-1",b""),
    ///   ("POST","/v1/chat/completions",1700000300,"9f2c1e7a",
    ///    b"{\"model\":\"llama3:8b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}")]:
    ///   print(hmac.new(b"team-a-shared-secret",
    ///     f"{m}\n{p}\n{t}\n{n}\n".encode()+b, hashlib.sha256).hexdigest())'
    /// ```
    #[test]
    fn signatures_match_vectors_computed_independently_in_python() {
        let secret = b"team-a-shared-secret";
        let get = sign(
            secret,
            "GET",
            "/api/tags",
            1_700_000_000,
            "nonce-get-1",
            b"",
        );
        assert_eq!(
            get,
            "77b806a2d64cb55ec057d539e15565dfcf3a54a5fea8773b8526579d6b215f35"
        );
        let body = br#"{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}]}"#;
        let post = sign(
            secret,
            "POST",
            "/v1/chat/completions",
            1_700_000_300,
            "9f2c1e7a",
            body,
        );
        assert_eq!(
            post,
            "899a4418f8f735ba592be76e1f998605e664edffdb9214d9fe14c064d240a3ae"
        );
    }
}
