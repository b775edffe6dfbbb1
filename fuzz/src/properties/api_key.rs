//! API key parsing (`core::apikey::classify`). Two properties per input:
//! - the input itself (when UTF-8) is classified as the format says: empty,
//!   too long, a character outside visible ASCII, a whole `gk_` key whose
//!   checksum — recomputed here independently, a base62 CRC32 — matches, or
//!   else a legacy key only when it does not start with `gk_`;
//! - a gatekeeper key built from the input's bytes (public id, secret, and
//!   the checksum computed here) round-trips to its public id, and any
//!   one-character change, insertion or deletion is refused — or, in the
//!   `gk_` prefix, becomes a legacy key, never a gatekeeper one.

use gatekeeper::core::apikey::{classify, InvalidKey, KeyForm, MAX_KEY_LEN, PREFIX};

use super::Variants;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// `gk_` + 12-character id + `_` + 32-character secret + 6-digit checksum.
const KEY_LEN: usize = 54;
const BODY_LEN: usize = KEY_LEN - 6;

/// CRC32 (IEEE) of `body` as six base62 digits, most significant first.
fn checksum(body: &[u8]) -> String {
    let mut n = u64::from(crc32fast::hash(body));
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("ASCII")
}

pub fn check(data: &[u8]) {
    if let Ok(key) = std::str::from_utf8(data) {
        check_classified(key);
    }
    check_built(data);
}

fn check_classified(key: &str) {
    let got = classify(key);
    let shown = key.escape_debug();
    match &got {
        Err(InvalidKey::Empty) => assert!(key.is_empty(), "{shown}"),
        Err(InvalidKey::TooLong) => assert!(key.len() > MAX_KEY_LEN, "{shown}"),
        Err(InvalidKey::BadCharacter) => {
            assert!(!key.bytes().all(|b| b.is_ascii_graphic()), "{shown}")
        }
        Err(InvalidKey::Malformed | InvalidKey::BadChecksum) => {
            assert!(key.starts_with(PREFIX), "{shown} refused as {got:?}")
        }
        Ok(KeyForm::Legacy) => assert!(!key.starts_with(PREFIX), "{shown} is legacy"),
        Ok(KeyForm::Gatekeeper { public_id }) => {
            assert_eq!(key.len(), KEY_LEN, "{shown}");
            assert_eq!(*public_id, &key[3..15], "{shown}");
            let (body, sum) = key.split_at(BODY_LEN);
            assert_eq!(checksum(body.as_bytes()), sum, "{shown} accepted");
        }
    }
    if got.is_ok() {
        assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN, "{shown}");
        assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{shown}");
    }
}

/// The key whose id and secret are drawn from `data` (cycled; a fixed key
/// for empty input).
fn built_key(data: &[u8]) -> (String, String) {
    let byte = |i: usize| match data {
        [] => i as u8,
        _ => data[i % data.len()].wrapping_add((i / data.len()) as u8),
    };
    let id: String = (0..12)
        .map(|i| char::from(ID_ALPHABET[usize::from(byte(i)) % ID_ALPHABET.len()]))
        .collect();
    let secret: String = (12..44)
        .map(|i| char::from(BASE62[usize::from(byte(i)) % BASE62.len()]))
        .collect();
    let body = format!("{PREFIX}{id}_{secret}");
    let key = format!("{body}{}", checksum(body.as_bytes()));
    (key, id)
}

fn check_built(data: &[u8]) {
    let (key, id) = built_key(data);
    let want = Ok(KeyForm::Gatekeeper { public_id: &id });
    assert_eq!(classify(&key), want, "built key {key}");
    let mut variants = Variants::of(data);
    let chosen = data.first().map(|b| usize::from(*b) % KEY_LEN);
    let mut positions: Vec<usize> = chosen.into_iter().collect();
    positions.extend((0..8).map(|_| variants.below(KEY_LEN)));
    for pos in positions {
        let original = key.as_bytes()[pos];
        let replacement = 0x21 + ((original - 0x21) as usize + 1 + variants.below(93)) % 94;
        let mut typo = key.clone().into_bytes();
        typo[pos] = replacement as u8;
        check_changed(&typo, pos, &key);
        let mut inserted = key.clone().into_bytes();
        inserted.insert(pos, replacement as u8);
        check_changed(&inserted, pos, &key);
        let mut deleted = key.clone().into_bytes();
        deleted.remove(pos);
        check_changed(&deleted, pos, &key);
    }
}

fn check_changed(changed: &[u8], pos: usize, key: &str) {
    let changed = std::str::from_utf8(changed).expect("ASCII");
    let got = classify(changed);
    if changed.starts_with(PREFIX) {
        assert!(
            got.is_err(),
            "{key} changed at {pos} to {changed} accepted as {got:?}"
        );
    } else {
        assert!(pos < PREFIX.len(), "{key} changed at {pos} to {changed}");
        assert_eq!(got, Ok(KeyForm::Legacy), "{changed}");
    }
}
