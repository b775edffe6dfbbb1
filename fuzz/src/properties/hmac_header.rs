//! The HMAC header parser (`core::credential::parse_hmac`). The input is the
//! parameters of `Authorization: HMAC <params>`.
//! - What parses is well-formed: a valid client id, a non-negative
//!   timestamp, a nonce of 1 to 128 visible characters without `"` or `,`;
//!   and the whole header (`HMAC ` + input) extracts to the same fields.
//! - A parsed header, written back (any field order, quoted or not, with or
//!   without blanks after the commas), parses to the same fields.
//! - Fields built from the input's bytes, written as a header, parse back to
//!   themselves, and a signature made for them verifies, and fails for any
//!   other timestamp.

use gatekeeper::core::credential::{extract, parse_hmac, CredentialHeaders, HmacParams, Presented};
use gatekeeper::core::model::{valid_id, CredentialType};
use gatekeeper::core::signature::{sign, verify};

use super::Variants;

/// The four fields, in the order given by `order` (0..24), quoted or not,
/// with `gap` after each comma.
pub fn serialise(p: &HmacParams, order: usize, quoted: bool, gap: &str) -> String {
    let q = if quoted { "\"" } else { "" };
    let mut fields = vec![
        format!("client_id={q}{}{q}", p.client_id),
        format!("timestamp={q}{}{q}", p.timestamp),
        format!("nonce={q}{}{q}", p.nonce),
        format!("signature={q}{}{q}", hex::encode(p.signature)),
    ];
    let mut ordered = Vec::with_capacity(4);
    let mut k = order;
    for left in (1..=4).rev() {
        ordered.push(fields.remove(k % left));
        k /= left;
    }
    ordered.join(&format!(",{gap}"))
}

pub fn check(data: &[u8]) {
    let shown = data.escape_ascii().to_string();
    if let Ok(params) = std::str::from_utf8(data) {
        let got = parse_hmac(params);
        assert_eq!(parse_hmac(params), got, "not deterministic: {shown}");
        check_whole_header(data, got.as_ref(), &shown);
        if let Some(p) = got {
            check_well_formed(&p, &shown);
            check_round_trips(data, &p, &shown);
        }
    }
    let built = built_from(data);
    check_round_trips(data, &built, &format!("{built:?}"));
    check_signature(&built);
}

/// `HMAC <input>` as an `Authorization` header extracts to what
/// `parse_hmac` reads from the input (blanks around it aside), and is an
/// invalid HMAC credential otherwise.
fn check_whole_header(data: &[u8], parsed: Option<&HmacParams>, shown: &str) {
    let printable = data
        .iter()
        .all(|b| (0x20..=0x7e).contains(b) || *b == b'\t');
    if !printable {
        assert!(parsed.is_none(), "non-printable header parsed: {shown}");
        return;
    }
    let header = [b"HMAC ".as_slice(), data].concat();
    let h = CredentialHeaders {
        authorization: Some(&header),
        ..CredentialHeaders::default()
    };
    match (extract(&h, false), parsed) {
        (Presented::Hmac(got), Some(want)) => assert_eq!(&got, want, "{shown}"),
        (Presented::Invalid(Some(CredentialType::Hmac)), None) => {}
        (other, want) => panic!("HMAC {shown} extracted as {other:?}, parse_hmac: {want:?}"),
    }
}

fn check_well_formed(p: &HmacParams, shown: &str) {
    assert!(
        valid_id(&p.client_id),
        "client id {:?} from {shown}",
        p.client_id
    );
    assert!(p.timestamp >= 0, "timestamp {} from {shown}", p.timestamp);
    let nonce_ok = (1..=128).contains(&p.nonce.len())
        && p.nonce
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b',');
    assert!(nonce_ok, "nonce {:?} from {shown}", p.nonce);
}

fn check_round_trips(data: &[u8], p: &HmacParams, shown: &str) {
    let mut variants = Variants::of(data);
    for (quoted, gap) in [(true, ""), (false, " "), (true, "\t "), (false, "")] {
        let text = serialise(p, variants.below(24), quoted, gap);
        assert_eq!(
            parse_hmac(&text).as_ref(),
            Some(p),
            "{shown} written as {text}"
        );
    }
}

/// Valid fields made from the input's bytes: whatever the input, a header
/// that must parse.
fn built_from(data: &[u8]) -> HmacParams {
    const ID: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    let byte = |i: usize| data.get(i).copied().unwrap_or(i as u8);
    let id_len = 1 + usize::from(byte(0)) % 64;
    let client_id = (0..id_len).map(|i| ID[usize::from(byte(1 + i)) % ID.len()]);
    let nonce_len = 1 + usize::from(byte(1)) % 128;
    let nonce = (0..nonce_len).map(|i| match byte(65 + i) % 94 + 0x21 {
        b'"' | b',' => b'x',
        b => b,
    });
    let mut timestamp = [0u8; 8];
    let mut signature = [0u8; 32];
    timestamp
        .iter_mut()
        .enumerate()
        .for_each(|(i, t)| *t = byte(200 + i));
    signature
        .iter_mut()
        .enumerate()
        .for_each(|(i, s)| *s = byte(208 + i));
    HmacParams {
        client_id: String::from_utf8(client_id.collect())
            .expect("ASCII")
            .parse()
            .expect("1 to 64 id characters"),
        timestamp: (u64::from_le_bytes(timestamp) >> 1) as i64,
        nonce: String::from_utf8(nonce.collect()).expect("ASCII"),
        signature,
    }
}

fn check_signature(p: &HmacParams) {
    let secret = p.nonce.as_bytes();
    let path = format!("/v1/{}", p.client_id);
    let hex_sig = sign(secret, "POST", &path, p.timestamp, &p.nonce, b"{}");
    let signed = HmacParams {
        signature: hex::decode(&hex_sig)
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
        ..p.clone()
    };
    let text = serialise(&signed, 0, true, " ");
    let read = parse_hmac(&text).expect("a signed header parses");
    let ok = verify(
        secret,
        &read.signature,
        "POST",
        &path,
        read.timestamp,
        &read.nonce,
        b"{}",
    );
    assert!(ok, "{text} does not verify");
    let later = read.timestamp.wrapping_add(1);
    let bad = verify(
        secret,
        &read.signature,
        "POST",
        &path,
        later,
        &read.nonce,
        b"{}",
    );
    assert!(!bad, "{text} verifies for another timestamp");
}
