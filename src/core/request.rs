//! What nginx sent to `/authz`, parsed and normalised once: the method, the
//! host, the normalised path, the credential headers and whether the body
//! came along. Invalid or ambiguous input becomes a deny here, before any
//! route or credential is looked at.

use super::credential::CredentialHeaders;
use super::decision::Reason;
use super::host::parse_host;
use super::model::Method;
use super::path::{normalise, NormalisedUri, PathError};

/// The raw header values `/authz` reads, as bytes (they may hold anything).
#[derive(Clone, Copy, Default)]
pub struct RawRequest<'a> {
    pub method: Option<&'a [u8]>,
    pub uri: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    pub content_length: Option<&'a [u8]>,
    /// `X-Original-Body: present`, and the body of the `/authz` request.
    pub body_marker: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub x_api_key: Option<&'a [u8]>,
    /// `X-Provider-Token`: only whether it is there matters (never read).
    pub provider_token: Option<&'a [u8]>,
}

/// Whether the original request's body reached gatekeeper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Forwarded(&'a [u8]),
    /// `announced`: the original request has a body (a positive
    /// `Content-Length`, or `chunked`) that was not forwarded.
    NotForwarded {
        announced: bool,
    },
}

/// No `Debug`: it borrows the raw credential headers.
pub struct AuthRequest<'a> {
    /// Where the request came from (`X-Real-IP` from a trusted proxy, else
    /// the peer), set by the HTTP edge: the key of failed-credential
    /// throttling. `None` when unknown: not throttled.
    pub source: Option<std::net::IpAddr>,
    pub method: Method,
    pub host: Option<String>,
    pub uri: NormalisedUri,
    pub credentials: CredentialHeaders<'a>,
    pub body: Body<'a>,
    /// The client sent a non-empty `X-Provider-Token`.
    pub has_provider_token: bool,
}

impl<'a> AuthRequest<'a> {
    pub fn parse(raw: &RawRequest<'a>) -> Result<AuthRequest<'a>, Reason> {
        let method = raw
            .method
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(Method::parse)
            .ok_or(Reason::BadRequest)?;
        let uri_bytes = raw
            .uri
            .filter(|u| !u.is_empty())
            .ok_or(Reason::BadRequest)?;
        let uri = normalise(uri_bytes, raw.path).map_err(|e| match e {
            PathError::Malformed => Reason::BadRequest,
            PathError::Ambiguous => Reason::AmbiguousPath,
        })?;
        let host = parse_host(raw.host).map_err(|_| Reason::BadRequest)?;
        let credentials = CredentialHeaders {
            authorization: raw.authorization,
            x_api_key: raw.x_api_key,
            query: uri_query(raw.uri),
        };
        Ok(AuthRequest {
            source: None,
            method,
            host,
            uri,
            credentials,
            body: body_state(raw)?,
            has_provider_token: raw
                .provider_token
                .is_some_and(|t| !t.trim_ascii().is_empty()),
        })
    }
}

/// The raw query string, borrowed from the header (the normalised copy is
/// owned by `NormalisedUri`, and credentials borrow for the request's life).
fn uri_query(uri: Option<&[u8]>) -> Option<&str> {
    let uri = std::str::from_utf8(uri?).ok()?;
    uri.split_once('?').map(|(_, q)| q)
}

/// Whether `X-Original-Body` says the original body came along (the njs
/// bridge sends `present`). The edge reads the body only then.
pub fn body_forwarded(marker: Option<&[u8]>) -> bool {
    marker.is_some_and(|m| m.eq_ignore_ascii_case(b"present"))
}

fn body_state<'a>(raw: &RawRequest<'a>) -> Result<Body<'a>, Reason> {
    if body_forwarded(raw.body_marker) {
        return Ok(Body::Forwarded(raw.body.unwrap_or_default()));
    }
    Ok(Body::NotForwarded {
        announced: announced_body(raw.content_length)?,
    })
}

/// `X-Original-Content-Length` is `$http_content_length`, or `chunked`.
/// nginx accepts any run of digits whose value fits (leading zeros
/// included: `0000000000000000000000017` is 17), so the value is judged by
/// its digits, never by its length: a body is announced when one of them is
/// not `0`.
fn announced_body(value: Option<&[u8]>) -> Result<bool, Reason> {
    let Some(value) = value.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    if value.eq_ignore_ascii_case(b"chunked") {
        return Ok(true);
    }
    if !value.iter().all(u8::is_ascii_digit) {
        return Err(Reason::BadRequest);
    }
    Ok(value.iter().any(|&d| d != b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(method: &'a str, uri: &'a str) -> RawRequest<'a> {
        RawRequest {
            method: Some(method.as_bytes()),
            uri: Some(uri.as_bytes()),
            ..RawRequest::default()
        }
    }

    #[test]
    fn missing_or_invalid_method_and_uri_are_bad_requests() {
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: [Case; 5] = [
            (None, Some(b"/x")),
            (Some(b"GET"), None),
            (Some(b"GET"), Some(b"")),
            (Some(b"get"), Some(b"/x")),
            (Some(b"G\xffT"), Some(b"/x")),
        ];
        for (method, uri) in cases {
            let r = RawRequest {
                method,
                uri,
                ..RawRequest::default()
            };
            assert_eq!(AuthRequest::parse(&r).err(), Some(Reason::BadRequest));
        }
    }

    #[test]
    fn the_body_is_forwarded_only_when_marked() {
        let mut r = raw("POST", "/v1/chat");
        r.content_length = Some(b"42");
        assert_eq!(
            AuthRequest::parse(&r).unwrap().body,
            Body::NotForwarded { announced: true }
        );
        r.content_length = Some(b"chunked");
        assert_eq!(
            AuthRequest::parse(&r).unwrap().body,
            Body::NotForwarded { announced: true }
        );
        r.content_length = Some(b"0");
        assert_eq!(
            AuthRequest::parse(&r).unwrap().body,
            Body::NotForwarded { announced: false }
        );
        r.content_length = Some(b"12x");
        assert_eq!(AuthRequest::parse(&r).err(), Some(Reason::BadRequest));
        r.body_marker = Some(b"present");
        r.body = Some(b"{}");
        assert_eq!(AuthRequest::parse(&r).unwrap().body, Body::Forwarded(b"{}"));
    }

    #[test]
    fn any_content_length_nginx_accepts_is_read_by_its_digits() {
        let announced = |value: &'static [u8]| {
            let mut r = raw("POST", "/v1/chat");
            r.content_length = Some(value);
            AuthRequest::parse(&r).map(|req| req.body)
        };
        let yes = Ok(Body::NotForwarded { announced: true });
        let no = Ok(Body::NotForwarded { announced: false });
        assert_eq!(announced(b"0000000000000000000000017"), yes);
        assert_eq!(announced(b"00000000000000000000000000000000000"), no);
        assert_eq!(announced(b"9223372036854775807"), yes);
        assert_eq!(
            announced(b"000000000000000000000000009223372036854775807"),
            yes
        );
        assert_eq!(announced(b" 17 "), yes);
        for bad in [&b"-1"[..], b"+1", b"1e3", b"0x10", b"1 2", b"\xff"] {
            let mut r = raw("POST", "/v1/chat");
            r.content_length = Some(bad);
            assert_eq!(
                AuthRequest::parse(&r).err(),
                Some(Reason::BadRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_query_is_kept_for_credentials_but_not_matched() {
        let r = raw("GET", "/a/../b?api_key=x%20y");
        let req = AuthRequest::parse(&r).unwrap();
        assert_eq!(req.uri.path, "/b");
        assert_eq!(req.credentials.query, Some("api_key=x%20y"));
    }
}
