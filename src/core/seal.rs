//! HMAC shared secrets encrypted at rest: sealed with XChaCha20-Poly1305
//! under the master key (`GATEKEEPER_MASTER_KEY`) before they reach
//! PostgreSQL, opened when the policy is loaded.
//!
//! A sealed secret is `0x01 ‖ 24-byte nonce ‖ ciphertext ‖ 16-byte tag`. The
//! client id is bound in as associated data, so a sealed value copied onto
//! another client's row does not open. Nothing here prints a key, a secret
//! or the text a key was parsed from.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::model::Secret;

/// The format version written as the first byte of every sealed secret.
const VERSION: u8 = 0x01;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Version byte, nonce and tag: the length of a sealed empty message.
const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// Prefix of the associated data; the client id follows it.
const AAD_PREFIX: &[u8] = b"gatekeeper hmac secret v1\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "the master key must be 32 bytes written as 64 hex characters or as base64 \
         (the value is not shown)"
    )]
    InvalidKey,
    #[error("an HMAC secret must not be empty")]
    EmptySecret,
    #[error("no random bytes for a nonce: {0}")]
    Random(String),
    #[error("encrypting the HMAC secret failed")]
    Encrypt,
    #[error("the sealed HMAC secret is too short to be one")]
    TooShort,
    #[error("the sealed HMAC secret has unknown format version {0}")]
    UnknownVersion(u8),
    #[error(
        "the sealed HMAC secret does not open: another master key, another client's \
         secret, or damaged bytes"
    )]
    Open,
}

/// The 32-byte key that seals HMAC secrets. Neither `Debug` nor anything
/// else prints it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// 64 hex characters, or standard or URL-safe base64 (padded or not) of
    /// exactly 32 bytes; surrounding whitespace (a file's newline) ignored.
    pub fn parse(s: &str) -> Result<MasterKey, SealError> {
        let s = s.trim();
        let mut key = [0u8; 32];
        if s.len() == 64 && hex::decode_to_slice(s, &mut key).is_ok() {
            return Ok(MasterKey(key));
        }
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(s).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .map(MasterKey)
            .ok_or(SealError::InvalidKey)
    }

    /// A key from raw bytes (tests, or a key read from a binary source).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

fn aad(client_id: &str) -> Vec<u8> {
    [AAD_PREFIX, client_id.as_bytes()].concat()
}

/// Seals `secret` for `client_id` under `key`, with a fresh random nonce.
pub fn seal(key: &MasterKey, client_id: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
    if secret.is_empty() {
        return Err(SealError::EmptySecret);
    }
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
    let aad = aad(client_id);
    let payload = Payload {
        msg: secret,
        aad: &aad,
    };
    let ciphertext = key
        .cipher()
        .encrypt(XNonce::from_slice(&nonce), payload)
        .map_err(|_| SealError::Encrypt)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a secret sealed for `client_id`; any mismatch is an error, never a
/// panic and never a wrong secret.
pub fn open(key: &MasterKey, client_id: &str, sealed: &[u8]) -> Result<Secret, SealError> {
    let (&version, rest) = sealed.split_first().ok_or(SealError::TooShort)?;
    if version != VERSION {
        return Err(SealError::UnknownVersion(version));
    }
    if sealed.len() < OVERHEAD {
        return Err(SealError::TooShort);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let aad = aad(client_id);
    let payload = Payload {
        msg: ciphertext,
        aad: &aad,
    };
    key.cipher()
        .decrypt(XNonce::from_slice(nonce), payload)
        .map(Secret::new)
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> MasterKey {
        MasterKey::parse(HEX).unwrap()
    }

    fn other_key() -> MasterKey {
        MasterKey::from_bytes([7; 32])
    }

    #[test]
    fn a_master_key_parses_from_hex_or_any_base64_of_32_bytes() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(key().0, bytes);
        assert_eq!(MasterKey::parse(&HEX.to_uppercase()).unwrap().0, bytes);
        assert_eq!(MasterKey::parse(&format!(" {HEX}\n")).unwrap().0, bytes);
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let text = format!("{}\n", engine.encode(bytes));
            assert_eq!(MasterKey::parse(&text).unwrap().0, bytes, "{text}");
        }
        let url_only = [0xfb; 32]; // encodes with `-`/`_` in URL-safe base64
        assert_eq!(
            MasterKey::parse(&URL_SAFE.encode(url_only)).unwrap().0,
            url_only
        );
    }

    #[test]
    fn a_master_key_of_the_wrong_size_or_form_is_refused_without_echoing_it() {
        for bad in [
            "",
            &HEX[..62],
            &format!("{HEX}00"),
            &HEX.replace('0', "g"),
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
            "not-a-key-at-all-hunter2",
        ] {
            let err = MasterKey::parse(bad).unwrap_err();
            assert_eq!(err, SealError::InvalidKey);
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn a_master_key_does_not_print() {
        let text = format!("{:?}", key());
        assert_eq!(text, "MasterKey(<redacted>)");
    }

    #[test]
    fn a_sealed_secret_opens_for_its_client_under_its_key() {
        let sealed = seal(&key(), "team-a", b"s3cret").unwrap();
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), OVERHEAD + 6);
        let opened = open(&key(), "team-a", &sealed).unwrap();
        assert_eq!(opened.expose(), b"s3cret");
    }

    #[test]
    fn sealing_twice_gives_different_bytes_and_never_the_plain_text() {
        let a = seal(&key(), "team-a", b"s3cret-value").unwrap();
        let b = seal(&key(), "team-a", b"s3cret-value").unwrap();
        assert_ne!(a, b);
        assert!(!a.windows(12).any(|w| w == b"s3cret-value"));
    }

    #[test]
    fn the_wrong_master_key_does_not_open_it() {
        let sealed = seal(&key(), "team-a", b"s3cret").unwrap();
        assert_eq!(open(&other_key(), "team-a", &sealed), Err(SealError::Open));
    }

    #[test]
    fn a_secret_moved_to_another_client_does_not_open() {
        let sealed = seal(&key(), "team-a", b"s3cret").unwrap();
        assert_eq!(open(&key(), "team-b", &sealed), Err(SealError::Open));
        assert_eq!(open(&key(), "team-a\0", &sealed), Err(SealError::Open));
    }

    #[test]
    fn any_tampered_byte_is_detected() {
        let sealed = seal(&key(), "team-a", b"s3cret").unwrap();
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&key(), "team-a", &bad), Err(SealError::Open), "{i}");
        }
        let truncated = &sealed[..sealed.len() - 1];
        assert_eq!(open(&key(), "team-a", truncated), Err(SealError::Open));
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut sealed = seal(&key(), "team-a", b"s3cret").unwrap();
        sealed[0] = 0x02;
        assert_eq!(
            open(&key(), "team-a", &sealed),
            Err(SealError::UnknownVersion(2))
        );
    }

    #[test]
    fn bytes_too_short_to_be_sealed_are_refused() {
        for len in [0, 1, 25, OVERHEAD - 1] {
            let mut bytes = vec![0u8; len];
            if let Some(first) = bytes.first_mut() {
                *first = VERSION;
            }
            assert_eq!(
                open(&key(), "team-a", &bytes),
                Err(SealError::TooShort),
                "{len}"
            );
        }
    }

    #[test]
    fn an_empty_secret_is_not_sealed() {
        assert_eq!(seal(&key(), "team-a", b""), Err(SealError::EmptySecret));
    }
}
