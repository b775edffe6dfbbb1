//! The `X-Original-Host` value as routes compare it (DESIGN §10, §11
//! "Hosts"): lower-cased, its `:port` and one trailing dot removed, and then
//! a DNS name or a bracketed IPv6 literal.
//!
//! This module owns only that parsing. It must not match routes (a bracketed
//! literal simply matches no named domain, only `*`), do I/O, or panic.

use std::net::Ipv6Addr;

use super::model::is_dns_name;

/// The host header cannot be understood: reason `bad_request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError;

/// Parses `X-Original-Host`. None or empty is `Ok(None)`: without a host only
/// `*` routes can match.
pub fn parse_host(raw: Option<&[u8]>) -> Result<Option<String>, HostError> {
    let raw = match raw {
        None | Some(b"") => return Ok(None),
        Some(raw) => raw,
    };
    // Non-ASCII has no place in a Host header (IDNs travel as punycode).
    let host = std::str::from_utf8(raw)
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or(HostError)?
        .to_ascii_lowercase();
    let host = match host.strip_prefix('[') {
        Some(literal) => ipv6_literal(literal)?,
        None => dns_name(&host)?,
    };
    Ok(Some(host))
}

/// `host[:port]` with one optional trailing dot on the host.
fn dns_name(host: &str) -> Result<String, HostError> {
    let name = match host.split_once(':') {
        Some((name, port)) => valid_port(port).then_some(name).ok_or(HostError)?,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    is_dns_name(name).then(|| name.to_owned()).ok_or(HostError)
}

/// The rest of `[v6]` or `[v6]:port`, after the `[`; the literal is kept with
/// its brackets so it can never be mistaken for a name.
fn ipv6_literal(after_bracket: &str) -> Result<String, HostError> {
    let (addr, rest) = after_bracket.split_once(']').ok_or(HostError)?;
    let port_ok = match rest.strip_prefix(':') {
        Some(port) => valid_port(port),
        None => rest.is_empty(),
    };
    if !port_ok || addr.parse::<Ipv6Addr>().is_err() {
        return Err(HostError);
    }
    Ok(format!("[{addr}]"))
}

/// A port is 1 to 5 ASCII digits; anything else after `:` is an error.
fn valid_port(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(X-Original-Host, expected host)`; `Ok(None)` means no host.
    const CASES: &[(&str, Result<Option<&str>, HostError>)] = &[
        ("", Ok(None)),
        ("api.example.com", Ok(Some("api.example.com"))),
        ("API.Example.COM", Ok(Some("api.example.com"))),
        ("api.example.com:8443", Ok(Some("api.example.com"))),
        ("api.example.com.", Ok(Some("api.example.com"))),
        ("Api.Example.com.:80", Ok(Some("api.example.com"))),
        ("localhost", Ok(Some("localhost"))),
        ("127.0.0.1:7843", Ok(Some("127.0.0.1"))),
        ("under_score.example", Ok(Some("under_score.example"))),
        ("[::1]", Ok(Some("[::1]"))),
        ("[::1]:8080", Ok(Some("[::1]"))),
        ("[2001:DB8::A]:443", Ok(Some("[2001:db8::a]"))),
        ("[::ffff:127.0.0.1]", Ok(Some("[::ffff:127.0.0.1]"))),
        ("api.example.com..", Err(HostError)),
        ("a..b", Err(HostError)),
        (".", Err(HostError)),
        (".example.com", Err(HostError)),
        ("host:", Err(HostError)),
        ("host:abc", Err(HostError)),
        ("host:123456", Err(HostError)),
        ("host:80:80", Err(HostError)),
        (":80", Err(HostError)),
        ("a b", Err(HostError)),
        (" host", Err(HostError)),
        ("*", Err(HostError)),
        ("*.example.com", Err(HostError)),
        ("exämple.com", Err(HostError)),
        ("user@host", Err(HostError)),
        ("host/path", Err(HostError)),
        ("[::1", Err(HostError)),
        ("[::1]x", Err(HostError)),
        ("[::1]:", Err(HostError)),
        ("[not-v6]", Err(HostError)),
        ("[127.0.0.1]", Err(HostError)),
        ("::1", Err(HostError)),
    ];

    #[test]
    fn hosts_parse_as_the_table_says() {
        for &(raw, expected) in CASES {
            let got = parse_host(Some(raw.as_bytes()));
            let got = got.as_ref().map(Option::as_deref).map_err(|e| *e);
            assert_eq!(got, expected, "{raw:?}");
        }
    }

    #[test]
    fn a_missing_host_is_no_host() {
        assert_eq!(parse_host(None), Ok(None));
    }

    #[test]
    fn non_utf8_and_over_long_hosts_are_errors() {
        assert_eq!(parse_host(Some(b"h\xffst")), Err(HostError));
        assert_eq!(parse_host(Some(b"h\0st")), Err(HostError));
        let label = "a".repeat(63);
        let long = [label.as_str(); 5].join(".");
        assert_eq!(parse_host(Some(long.as_bytes())), Err(HostError));
        assert_eq!(parse_host(Some("a".repeat(64).as_bytes())), Err(HostError));
    }
}
