//! Host parsing (`core::host::parse_host`). The input is a raw
//! `X-Original-Host`. For every input:
//! - the answer is the same in upper and lower case;
//! - one trailing dot on a name (before any port) changes nothing, a second
//!   one is refused;
//! - an accepted host is what routes may compare: a lower-case DNS name
//!   (`model::is_dns_name`) or a bracketed IPv6 literal, and it is the
//!   input's own host, lower-cased, with at most one trailing dot and a
//!   `:port` of 1 to 5 digits removed — nothing else is ever accepted;
//! - an accepted host parses to itself, with or without a port added.

use std::net::Ipv6Addr;

use gatekeeper::core::host::{parse_host, HostError};
use gatekeeper::core::model::is_dns_name;

pub fn check(data: &[u8]) {
    let got = parse_host(Some(data));
    let shown = data.escape_ascii().to_string();
    assert_eq!(parse_host(Some(data)), got, "not deterministic: {shown}");
    let upper = parse_host(Some(&data.to_ascii_uppercase()));
    assert_eq!(upper, got, "{shown} in upper case");
    let lower = parse_host(Some(&data.to_ascii_lowercase()));
    assert_eq!(lower, got, "{shown} in lower case");
    check_trailing_dot(data, &got, &shown);
    match got {
        Ok(None) => assert!(data.is_empty(), "{shown} read as no host"),
        Ok(Some(host)) => check_accepted(data, &host, &shown),
        Err(HostError) => {}
    }
}

/// A name (not a bracketed literal) split at its first `:`.
fn name_and_port(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.first() == Some(&b'[') {
        return None;
    }
    let colon = data.iter().position(|&b| b == b':').unwrap_or(data.len());
    let (name, port) = data.split_at(colon);
    (!name.is_empty()).then_some((name, port))
}

fn check_trailing_dot(data: &[u8], got: &Result<Option<String>, HostError>, shown: &str) {
    let Some((name, port)) = name_and_port(data) else {
        return;
    };
    let dotted = [name, b".", port].concat();
    let with_dot = parse_host(Some(&dotted));
    if name.ends_with(b".") {
        assert_eq!(
            with_dot,
            Err(HostError),
            "{shown} with a second trailing dot"
        );
    } else {
        assert_eq!(&with_dot, got, "{shown} with a trailing dot");
    }
}

fn check_accepted(data: &[u8], host: &str, shown: &str) {
    let lower = data.to_ascii_lowercase();
    let rest = lower.strip_prefix(host.as_bytes());
    let rest = rest.unwrap_or_else(|| panic!("{shown} accepted as {host:?}, not its own host"));
    match host.strip_prefix('[') {
        Some(literal) => {
            let addr = literal
                .strip_suffix(']')
                .unwrap_or_else(|| panic!("{host:?}"));
            assert!(
                addr.parse::<Ipv6Addr>().is_ok(),
                "{shown} accepted as {host:?}"
            );
            assert!(is_port_suffix(rest), "{shown}: {host:?} then {rest:?}");
        }
        None => {
            assert!(is_dns_name(host), "{shown} accepted as {host:?}");
            let rest = rest.strip_prefix(b".").unwrap_or(rest);
            assert!(is_port_suffix(rest), "{shown}: {host:?} then {rest:?}");
        }
    }
    assert_eq!(parse_host(Some(host.as_bytes())), Ok(Some(host.to_owned())));
    let with_port = format!("{host}:8443");
    let again = parse_host(Some(with_port.as_bytes()));
    assert_eq!(again, Ok(Some(host.to_owned())), "{with_port:?}");
}

/// Nothing, or `:` and 1 to 5 digits.
fn is_port_suffix(rest: &[u8]) -> bool {
    match rest.strip_prefix(b":") {
        Some(port) => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
        None => rest.is_empty(),
    }
}
