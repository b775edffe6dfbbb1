//! Query-string (form) decoding, as Flask's `request.args` and the Python
//! servers read parameters: `%XX` escapes and `+` for a space. Shared by the
//! query key (`api_key`) and the model check (`model`).

use std::borrow::Cow;

/// Percent- and `+`-decodes; `None` on a bad escape or a non-UTF-8 result.
pub fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => hex_pair(bytes.next()?, bytes.next()?)?,
            b'+' => b' ',
            other => other,
        });
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    let value = digit(hi)? * 16 + digit(lo)?;
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_and_plus_are_decoded_bad_escapes_are_none() {
        assert_eq!(decode("mod%65l").as_deref(), Some("model"));
        assert_eq!(decode("a+b%2Bc").as_deref(), Some("a b+c"));
        assert_eq!(decode("plain").as_deref(), Some("plain"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%6"), None);
        assert_eq!(decode("%ff"), None);
    }
}
