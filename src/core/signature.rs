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

/// |now − timestamp| ≤ window.
pub fn within_window(timestamp: i64, now: i64, window_secs: u64) -> bool {
    now.abs_diff(timestamp) <= window_secs
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
    fn the_window_is_inclusive() {
        assert!(within_window(1000, 1300, 300));
        assert!(within_window(1300, 1000, 300));
        assert!(!within_window(1000, 1301, 300));
        assert!(!within_window(i64::MIN, i64::MAX, 300));
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
