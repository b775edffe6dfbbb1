//! API keys as strings: generating gatekeeper keys and classifying a
//! presented key before any look-up.
//!
//! A generated key reads `gk_<public id>_<secret><checksum>`: a 12-character
//! public id (`[a-z0-9]`), a 32-character base62 secret (≈190 bits) and a
//! 6-character base62 CRC32 of everything before it. The checksum lets typos
//! and garbage be refused without touching a cache or a store, and gives
//! secret scanners a pattern to look for. Any other string is a legacy key,
//! found by its digest alone.
//!
//! This module owns the key format only. It must not look keys up, log them,
//! or put key bytes in any `Debug` or error text; only the SHA-256 digest of a
//! key (`Digest::of(key.as_bytes())`) leaves it.

use std::fmt;

use super::model::Digest;

/// The prefix that marks a gatekeeper key.
pub const PREFIX: &str = "gk_";
/// Longer presented keys are refused before hashing.
pub const MAX_KEY_LEN: usize = 512;

const PUBLIC_ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// `gk_` + id + `_` + secret + checksum.
const KEY_LEN: usize = PREFIX.len() + PUBLIC_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PUBLIC_ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A full key string. It is shown once, at creation; its `Debug` is redacted
/// and it has no `Display`, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyString(String);

impl KeyString {
    /// The key itself, for the one place that shows it to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyString(<redacted>)")
    }
}

/// A freshly generated key: the key (shown once), its public id (the key
/// record's id) and the digest that is stored.
#[derive(Clone, Debug)]
pub struct GeneratedKey {
    pub key: KeyString,
    pub public_id: String,
    pub digest: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyGenError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// Generates a new gatekeeper key from the operating system's CSPRNG.
pub fn generate() -> Result<GeneratedKey, KeyGenError> {
    let public_id = random_string(PUBLIC_ID_ALPHABET, PUBLIC_ID_LEN)?;
    let secret = random_string(BASE62, SECRET_LEN)?;
    let mut key = format!("{PREFIX}{public_id}_{secret}");
    key.push_str(&checksum(&key));
    Ok(GeneratedKey {
        digest: Digest::of(key.as_bytes()),
        key: KeyString(key),
        public_id,
    })
}

/// `len` characters drawn uniformly from `alphabet`. Bytes at or above the
/// largest multiple of the alphabet's size are thrown away (rejection
/// sampling) so that `byte % size` carries no bias.
fn random_string(alphabet: &[u8], len: usize) -> Result<String, KeyGenError> {
    let size = alphabet.len();
    let limit = 256 - 256 % size;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf).map_err(KeyGenError::Random)?;
        let accepted = buf.iter().map(|b| usize::from(*b)).filter(|b| *b < limit);
        for b in accepted.take(len - out.len()) {
            out.push(char::from(alphabet[b % size]));
        }
    }
    Ok(out)
}

/// CRC32 of `data` as exactly six base62 digits, most significant first,
/// left-padded with `0` (62^6 > 2^32, so six always suffice).
fn checksum(data: &str) -> String {
    let mut n = crc32fast::hash(data.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    digits.iter().copied().map(char::from).collect()
}

/// What a syntactically acceptable key is.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyForm<'a> {
    /// A well-formed gatekeeper key with a valid checksum.
    Gatekeeper { public_id: &'a str },
    /// Any other string: an imported key, looked up by digest alone.
    Legacy,
}

/// Why a presented key was refused without a look-up. The messages never
/// carry key bytes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("the API key is empty")]
    Empty,
    #[error("the API key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    #[error("the API key contains a character outside visible ASCII")]
    BadCharacter,
    #[error("the API key starts with `gk_` but does not have a gatekeeper key's shape")]
    Malformed,
    #[error("the API key's checksum does not match")]
    BadChecksum,
}

/// Classifies a presented key. A key that starts with `gk_` must be a whole,
/// valid gatekeeper key; anything else that is visible ASCII is legacy.
pub fn classify(key: &str) -> Result<KeyForm<'_>, InvalidKey> {
    if key.is_empty() {
        return Err(InvalidKey::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(InvalidKey::TooLong);
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidKey::BadCharacter);
    }
    if key.starts_with(PREFIX) {
        classify_gatekeeper(key)
    } else {
        Ok(KeyForm::Legacy)
    }
}

/// Checks the exact shape, then the checksum. The checksum is not secret
/// (anyone holding the rest of the key can compute it), so an ordinary
/// comparison is fine.
fn classify_gatekeeper(key: &str) -> Result<KeyForm<'_>, InvalidKey> {
    if key.len() != KEY_LEN {
        return Err(InvalidKey::Malformed);
    }
    // All bytes are ASCII (checked by the caller), so these slices are on
    // character boundaries.
    let public_id = &key[PREFIX.len()..PREFIX.len() + PUBLIC_ID_LEN];
    let rest = &key[PREFIX.len() + PUBLIC_ID_LEN..];
    let tail = rest.strip_prefix('_').ok_or(InvalidKey::Malformed)?;
    let id_ok = public_id.bytes().all(|b| PUBLIC_ID_ALPHABET.contains(&b));
    if !id_ok || !tail.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InvalidKey::Malformed);
    }
    let (body, sum) = key.split_at(KEY_LEN - CHECKSUM_LEN);
    if checksum(body) != sum {
        return Err(InvalidKey::BadChecksum);
    }
    Ok(KeyForm::Gatekeeper { public_id })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn new_key() -> GeneratedKey {
        generate().expect("the OS RNG works in tests")
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let g = new_key();
        let key = g.key.expose();
        assert_eq!(key.len(), 54);
        assert!(key.starts_with("gk_"));
        assert_eq!(&key[3..15], g.public_id);
        assert!(g
            .public_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(&key[15..16], "_");
        assert_eq!(key[16..].len(), 38);
        assert!(key[16..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(g.digest, Digest::of(key.as_bytes()));
    }

    #[test]
    fn generated_keys_classify_as_gatekeeper_keys_with_their_public_id() {
        for _ in 0..100 {
            let g = new_key();
            assert_eq!(
                classify(g.key.expose()),
                Ok(KeyForm::Gatekeeper {
                    public_id: &g.public_id
                })
            );
        }
    }

    #[test]
    fn a_thousand_generated_keys_are_distinct() {
        let keys: Vec<GeneratedKey> = (0..1000).map(|_| new_key()).collect();
        let full: HashSet<&str> = keys.iter().map(|g| g.key.expose()).collect();
        let ids: HashSet<&str> = keys.iter().map(|g| g.public_id.as_str()).collect();
        assert_eq!(full.len(), 1000);
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn any_single_character_typo_is_refused() {
        let g = new_key();
        let key = g.key.expose();
        for pos in 0..key.len() {
            for c in (0x21u8..=0x7e).filter(|c| *c != key.as_bytes()[pos]) {
                let mut typo = key.as_bytes().to_vec();
                typo[pos] = c;
                let typo = String::from_utf8(typo).expect("ASCII");
                let got = classify(&typo);
                if pos < PREFIX.len() {
                    // No longer `gk_`: an (unknown) legacy key, never ours.
                    assert_eq!(got, Ok(KeyForm::Legacy), "{pos} {c}");
                } else {
                    assert!(got.is_err(), "typo at {pos} ({}) accepted", char::from(c));
                }
            }
        }
    }

    #[test]
    fn a_typo_in_the_secret_fails_the_checksum() {
        let g = new_key();
        let mut typo = g.key.expose().as_bytes().to_vec();
        typo[20] = if typo[20] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).expect("ASCII");
        assert_eq!(classify(&typo), Err(InvalidKey::BadChecksum));
    }

    #[test]
    fn checksums_are_six_base62_digits_left_padded() {
        // CRC32("") = 0.
        assert_eq!(checksum(""), "000000");
        // CRC32("123456789") = 0xCBF43926 = 3421780262.
        assert_eq!(checksum("123456789"), "3jZRME");
        assert_eq!(checksum("gk_x").len(), 6);
    }

    #[test]
    fn gk_keys_of_the_wrong_length_are_malformed() {
        let g = new_key();
        let key = g.key.expose();
        let cases = [
            key[..key.len() - 1].to_owned(),
            format!("{key}0"),
            format!("gk_{}_{}", &key[3..14], &key[15..]),
            format!("gk_{}0_{}", &key[3..15], &key[16..]),
            "gk_".to_owned(),
            "gk_abc".to_owned(),
        ];
        for bad in cases {
            assert_eq!(
                classify(&bad),
                Err(InvalidKey::Malformed),
                "len {}",
                bad.len()
            );
        }
    }

    #[test]
    fn gk_keys_with_the_wrong_alphabet_are_malformed() {
        let key = new_key().key.expose().to_owned();
        let upper_id = format!("gk_{}{}", key[3..15].to_uppercase(), &key[15..]);
        let no_sep = key.replacen('_', "-", 2).replacen("gk-", "gk_", 1);
        if upper_id != key {
            assert_eq!(classify(&upper_id), Err(InvalidKey::Malformed));
        }
        assert_eq!(classify(&no_sep), Err(InvalidKey::Malformed));
    }

    #[test]
    fn other_strings_are_legacy_keys() {
        for legacy in [
            "x",
            "sk-legacy-0123456789",
            "GK_ABC",
            "gk-abc",
            "abc_gk_",
            "!\"#$%&'()*+,-./~",
            &"a".repeat(512),
        ] {
            assert_eq!(classify(legacy), Ok(KeyForm::Legacy), "{legacy}");
        }
    }

    #[test]
    fn empty_long_and_non_visible_keys_are_invalid() {
        assert_eq!(classify(""), Err(InvalidKey::Empty));
        assert_eq!(classify(&"a".repeat(513)), Err(InvalidKey::TooLong));
        for bad in ["a b", "a\tb", "a\0", "\x7f", "clé", " lead", "trail\n"] {
            assert_eq!(classify(bad), Err(InvalidKey::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_contains_no_key_material() {
        let g = new_key();
        let secret = &g.key.expose()[16..];
        for text in [format!("{g:?}"), format!("{:?}", g.key), format!("{g:#?}")] {
            assert!(!text.contains(secret), "{text}");
            assert!(!text.contains(&secret[..8]), "{text}");
        }
    }

    #[test]
    fn error_messages_contain_no_key_material() {
        let long = "s3cr3t".repeat(100);
        for key in ["gk_s3cr3t", long.as_str(), "s3cr3t\u{1}"] {
            let err = classify(key).expect_err("invalid");
            assert!(!err.to_string().contains("s3cr3t"));
            assert!(!format!("{err:?}").contains("s3cr3t"));
        }
    }
}
