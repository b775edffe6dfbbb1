//! The data model shared by both sources of truth (the declarative file and,
//! later, PostgreSQL): routes, clients, keys, grants and limits, as parsed,
//! validated values. Constructors here reject invalid states; nothing here
//! does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::glob::Glob;

// The ids the model's values carry, beside them (`ids` owns the rule).
pub use super::ids::{valid_id, ClientId, InvalidId, KeyId, RouteId};

/// An HTTP method token (`GET`, `POST`, ...). Methods are case-sensitive, as
/// in HTTP; nginx only forwards upper-case ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(Arc<str>);

/// A value the policy refuses, and why: the message names the value's
/// problem (never a secret), for the caller to place (a file line, a row,
/// a flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid(message)
    }
}

impl From<Invalid> for String {
    fn from(invalid: Invalid) -> String {
        invalid.0
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Invalid {
        Invalid(message.to_owned())
    }
}

impl Method {
    pub const MAX_LEN: usize = 32;

    pub fn parse(s: &str) -> Option<Method> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
        ok.then(|| Method(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Methods whose requests carry a body that the model check reads.
    pub fn carries_body(&self) -> bool {
        matches!(self.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A credential type a method may accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialType {
    ApiKey,
    Basic,
    Hmac,
}

impl CredentialType {
    pub const ALL: [CredentialType; 3] = [
        CredentialType::ApiKey,
        CredentialType::Basic,
        CredentialType::Hmac,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialType::ApiKey => "api_key",
            CredentialType::Basic => "basic",
            CredentialType::Hmac => "hmac",
        }
    }

    pub fn parse(s: &str) -> Option<CredentialType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    const fn bit(self) -> u8 {
        match self {
            CredentialType::ApiKey => 1,
            CredentialType::Basic => 2,
            CredentialType::Hmac => 4,
        }
    }

    /// The `WWW-Authenticate` challenge naming this scheme.
    pub const fn challenge(self) -> &'static str {
        match self {
            CredentialType::ApiKey => "Bearer realm=\"gatekeeper\"",
            CredentialType::Basic => "Basic realm=\"gatekeeper\"",
            CredentialType::Hmac => "HMAC realm=\"gatekeeper\"",
        }
    }
}

/// A small set of credential types, and whether the method lets a client
/// bring its own upstream token (`provider_token`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CredentialSet(u8);

/// The set's bit for `provider_token`, apart from the credential types.
const PROVIDER_TOKEN_BIT: u8 = 0x80;

impl CredentialSet {
    pub const EMPTY: CredentialSet = CredentialSet(0);

    /// Bring-your-own-token: when the client (authenticated by one of the
    /// credential types) also sends `X-Provider-Token`, the allow says so
    /// (`X-Auth-Provider-Token: forward`) and nginx sends that token
    /// upstream instead of the operator's. It never authenticates anyone.
    pub fn with_provider_token(self) -> CredentialSet {
        CredentialSet(self.0 | PROVIDER_TOKEN_BIT)
    }

    pub fn forwards_provider_token(self) -> bool {
        self.0 & PROVIDER_TOKEN_BIT != 0
    }

    pub fn with(self, t: CredentialType) -> CredentialSet {
        CredentialSet(self.0 | t.bit())
    }

    pub fn contains(self, t: CredentialType) -> bool {
        self.0 & t.bit() != 0
    }

    /// No credential type (the provider-token flag is not one).
    pub fn is_empty(self) -> bool {
        self.0 & !PROVIDER_TOKEN_BIT == 0
    }

    pub fn iter(self) -> impl Iterator<Item = CredentialType> {
        CredentialType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl FromIterator<CredentialType> for CredentialSet {
    fn from_iter<I: IntoIterator<Item = CredentialType>>(iter: I) -> Self {
        iter.into_iter()
            .fold(CredentialSet::EMPTY, CredentialSet::with)
    }
}

/// What a method of a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodRule {
    /// No credential is looked at.
    Public,
    /// One of these credential types (never empty).
    Credentials(CredentialSet),
}

/// The word, in a method's list, for bring-your-own-token.
pub const PROVIDER_TOKEN: &str = "provider_token";

impl MethodRule {
    /// A method's list as the file, the database and the CLI write it:
    /// `["public"]` alone, or credential types, each once, optionally with
    /// `provider_token` beside at least one of them.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<MethodRule, Invalid> {
        let names: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
        if names.is_empty() {
            return Err("an empty list accepts nothing; leave the method out instead".into());
        }
        if names.contains(&"public") {
            return match names.len() {
                1 => Ok(MethodRule::Public),
                _ => Err("`public` must be the only entry".into()),
            };
        }
        let mut set = CredentialSet::EMPTY;
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(format!("`{}` is listed twice", name.escape_debug()).into());
            }
            set = match (*name, CredentialType::parse(name)) {
                (_, Some(t)) => set.with(t),
                (PROVIDER_TOKEN, None) => set.with_provider_token(),
                (_, None) => {
                    return Err(format!(
                        "unknown credential type `{}` (expected public, api_key, basic, hmac or provider_token)",
                        name.escape_debug()
                    ).into())
                }
            };
        }
        if set.is_empty() {
            return Err(
                "`provider_token` needs a credential that identifies the client beside it (api_key, basic or hmac)"
                    .into(),
            );
        }
        Ok(MethodRule::Credentials(set))
    }

    /// The list `parse` reads back to this rule.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            MethodRule::Public => vec!["public"],
            MethodRule::Credentials(set) => {
                let mut names: Vec<&str> = set.iter().map(CredentialType::as_str).collect();
                if set.forwards_provider_token() {
                    names.push(PROVIDER_TOKEN);
                }
                names
            }
        }
    }

    /// `names`, comma-joined (the database column and plans).
    pub fn text(self) -> String {
        self.names().join(",")
    }
}

/// The host part of a route: exact, any subdomain of a suffix, or any host.
/// Stored lower-case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    Exact(String),
    /// `*.example.com` is stored as `example.com`; it never matches the apex.
    Suffix(String),
    Any,
}

/// The path part of a route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathPattern {
    Exact(String),
    /// `/api/*` is stored as `/api`; `/*` as the empty string. Matches the
    /// stem itself and everything below it on a segment boundary.
    Prefix(String),
}

impl PathPattern {
    /// Whether a request to the normalised `path` falls under this pattern.
    pub fn covers(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => exact == path,
            PathPattern::Prefix(stem) => path
                .strip_prefix(stem.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// A DNS host name as gatekeeper compares them: lower-case labels of
/// `[a-z0-9_-]`, 1 to 63 bytes each, at most 253 bytes in all, no empty label.
pub fn is_dns_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("a domain is `host.example.com`, `*.example.com` or `*`")]
    BadDomain,
    #[error("a path starts with `/`, has no empty, `.` or `..` segment, no `%`, `\\`, `;`, `?`, `#`, space or control character, and `*` only as a final `/*`")]
    BadPath,
}

impl DomainPattern {
    /// Parses a route's domain; case-insensitive, one trailing dot allowed.
    pub fn parse(s: &str) -> Result<DomainPattern, PatternError> {
        if s == "*" {
            return Ok(DomainPattern::Any);
        }
        let lower = s.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        if !is_dns_name(name) {
            return Err(PatternError::BadDomain);
        }
        Ok(match suffix {
            true => DomainPattern::Suffix(name.to_owned()),
            false => DomainPattern::Exact(name.to_owned()),
        })
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(host) => f.write_str(host),
            DomainPattern::Suffix(suffix) => write!(f, "*.{suffix}"),
            DomainPattern::Any => f.write_str("*"),
        }
    }
}

impl PathPattern {
    /// Parses a route's path: an exact normalised path, or a prefix `/x/*`.
    pub fn parse(s: &str) -> Result<PathPattern, PatternError> {
        let (stem, prefix) = match s.strip_suffix("/*") {
            Some(stem) => (stem, true),
            None => (s, false),
        };
        let full = if prefix {
            format!("{stem}/")
        } else {
            stem.to_owned()
        };
        if !full.starts_with('/') || !is_normal_path(&full) {
            return Err(PatternError::BadPath);
        }
        Ok(match prefix {
            true => PathPattern::Prefix(stem.to_owned()),
            false => PathPattern::Exact(stem.to_owned()),
        })
    }
}

/// A path as the normaliser produces it and a route may name: no empty
/// (except a trailing one), `.` or `..` segment, nothing nginx would decode,
/// and no character that makes the match ambiguous.
fn is_normal_path(path: &str) -> bool {
    let bad_char = |c: char| c.is_control() || c.is_whitespace() || "%\\;?#*".contains(c);
    if path.chars().any(bad_char) {
        return false;
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .all(|(i, seg)| !matches!(*seg, "." | "..") && (!seg.is_empty() || i == last))
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(path) => f.write_str(path),
            PathPattern::Prefix(stem) => write!(f, "{stem}/*"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub id: RouteId,
    pub domain: DomainPattern,
    pub path: PathPattern,
    pub service: Arc<str>,
    pub priority: i32,
    /// Explicit per-method rules.
    pub methods: BTreeMap<Method, MethodRule>,
    /// The `"*"` rule: every method not listed.
    pub any_method: Option<MethodRule>,
}

impl Route {
    pub fn rule_for(&self, method: &Method) -> Option<MethodRule> {
        self.methods.get(method).copied().or(self.any_method)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    Active,
    Suspended,
    Revoked,
}

impl ClientStatus {
    pub fn parse(s: &str) -> Option<ClientStatus> {
        match s {
            "active" => Some(ClientStatus::Active),
            "suspended" => Some(ClientStatus::Suspended),
            "revoked" => Some(ClientStatus::Revoked),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Active => "active",
            ClientStatus::Suspended => "suspended",
            ClientStatus::Revoked => "revoked",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
}

impl KeyStatus {
    pub fn parse(s: &str) -> Option<KeyStatus> {
        match s {
            "active" => Some(KeyStatus::Active),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
        }
    }
}

/// A secret held in memory. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret as read from a file or standard input: one trailing line end
/// (`\n` or `\r\n`) removed, nothing else (DESIGN §11). Every reader of a
/// secret uses this, so the signer and the server agree on the key bytes.
pub fn without_line_end(bytes: &[u8]) -> &[u8] {
    match bytes.strip_suffix(b"\n") {
        Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
        None => bytes,
    }
}

/// A SHA-256 digest, written `sha256:<64 lower-case hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 lower-case hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex_part = s.strip_prefix("sha256:")?;
        let lower = hex_part.len() == 64
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).ok()?;
        Some(Digest(out))
    }

    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `N/window` with a burst: N requests per window, `burst` back to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub count: u32,
    pub window: Duration,
    pub burst: u32,
}

impl Limit {
    /// Parses `600/1m` (windows `1s`, `1m`, `1h`, `1d`, or `Ns` etc. with a
    /// positive integer). The burst defaults to the count.
    pub fn parse(s: &str) -> Option<Limit> {
        let (count, window) = s.split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
        let window = parse_window(window.trim())?;
        Some(Limit {
            count,
            window,
            burst: count,
        })
    }

    pub fn with_burst(self, burst: u32) -> Option<Limit> {
        (burst > 0).then_some(Limit { burst, ..self })
    }

    /// The time between two admitted requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.window / self.count
    }
}

fn parse_window(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| (1..=366 * 86_400).contains(s))?;
    Some(Duration::from_secs(secs))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: Arc<str>,
    pub status: ClientStatus,
    pub limit: Option<Limit>,
    /// bcrypt hash of the Basic client secret.
    pub secret_hash: Option<Arc<str>>,
    /// The shared secret for HMAC signatures.
    pub hmac_secret: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub client_id: ClientId,
    pub digest: Digest,
    pub status: KeyStatus,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

/// Methods a grant allows: a set, or every method (`"*"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantMethods {
    Any,
    Only(Vec<Method>),
}

impl GrantMethods {
    pub fn allows(&self, method: &Method) -> bool {
        match self {
            GrantMethods::Any => true,
            GrantMethods::Only(methods) => methods.contains(method),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub client_id: ClientId,
    pub route_id: RouteId,
    pub methods: GrantMethods,
    /// `None`: any model. `Some`: the body's model must match one glob.
    pub models: Option<Vec<Glob>>,
    pub limit: Option<Limit>,
}

/// Everything a source of truth provides, before indexing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    pub routes: Vec<Route>,
    pub clients: Vec<Client>,
    pub keys: Vec<KeyRecord>,
    pub grants: Vec<Grant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_rules_read_back_from_the_names_they_print() {
        let lists: [&[&str]; 5] = [
            &["public"],
            &["api_key"],
            &["api_key", "basic", "hmac"],
            &["api_key", "provider_token"],
            &["basic", "hmac", "provider_token"],
        ];
        for list in lists {
            let rule = MethodRule::parse(list).unwrap();
            assert_eq!(rule.names(), list);
            assert_eq!(MethodRule::parse(&rule.names()), Ok(rule));
        }
        let byo = MethodRule::parse(&["provider_token", "api_key"]).unwrap();
        let MethodRule::Credentials(set) = byo else {
            panic!("{byo:?}")
        };
        assert!(set.forwards_provider_token());
        assert!(set.contains(CredentialType::ApiKey));
        assert_eq!(
            set.iter().count(),
            1,
            "provider_token is not a credential type"
        );
    }

    #[test]
    fn method_rules_refuse_what_would_be_ambiguous_or_open() {
        for (list, says) in [
            (&[][..], "accepts nothing"),
            (&["public", "api_key"][..], "only entry"),
            (&["api_key", "api_key"][..], "listed twice"),
            (&["provider_token"][..], "identifies the client"),
            (&["provider_token", "provider_token"][..], "listed twice"),
            (&["jwt"][..], "unknown credential type `jwt`"),
        ] {
            let e = MethodRule::parse(list).unwrap_err();
            assert!(e.0.contains(says), "{list:?}: {e}");
        }
    }

    #[test]
    fn limits_parse_with_default_burst() {
        let l = Limit::parse("600/1m").unwrap();
        assert_eq!((l.count, l.window.as_secs(), l.burst), (600, 60, 600));
        assert_eq!(Limit::parse("10000/1d").unwrap().window.as_secs(), 86_400);
        assert_eq!(Limit::parse("5/30s").unwrap().window.as_secs(), 30);
        assert_eq!(Limit::parse("5/h").unwrap().window.as_secs(), 3600);
        for bad in [
            "", "0/1m", "-1/1m", "10", "10/", "10/1x", "10/0s", "x/1m", "10/1m/2",
        ] {
            assert_eq!(Limit::parse(bad), None, "{bad}");
        }
        assert_eq!(Limit::parse("1/1m").unwrap().with_burst(0), None);
    }

    #[test]
    fn digests_round_trip_only_in_lower_case() {
        let d = Digest::of(b"abc");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&s), Some(d));
        assert_eq!(Digest::parse(&s.to_uppercase()), None);
        assert_eq!(Digest::parse(&s[..70]), None);
        assert_eq!(Digest::parse(s.trim_start_matches("sha256:")), None);
    }

    #[test]
    fn methods_are_upper_case_tokens() {
        assert!(Method::parse("GET").is_some());
        assert!(Method::parse("MKCOL").is_some());
        for bad in ["", "get", "G T", "GET\0", "ÉTÉ"] {
            assert!(Method::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Method::parse(&"A".repeat(33)).is_none());
    }

    #[test]
    fn one_line_end_comes_off_a_secret_and_nothing_else() {
        assert_eq!(without_line_end(b"s3cret\n"), b"s3cret");
        assert_eq!(without_line_end(b"s3cret\r\n"), b"s3cret");
        assert_eq!(without_line_end(b"s3cret\n\n"), b"s3cret\n");
        assert_eq!(without_line_end(b"s3cret\r"), b"s3cret\r");
        assert_eq!(without_line_end(b" s3cret "), b" s3cret ");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new(b"hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn domains_parse_case_insensitively() {
        assert_eq!(DomainPattern::parse("*"), Ok(DomainPattern::Any));
        assert_eq!(
            DomainPattern::parse("API.Example.com."),
            Ok(DomainPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            DomainPattern::parse("*.example.com"),
            Ok(DomainPattern::Suffix("example.com".into()))
        );
        for bad in [
            "",
            "*.",
            "*.*.x",
            "a..b",
            "a b",
            "ex*ample.com",
            "a/b",
            "*example.com",
            ".a",
        ] {
            assert_eq!(
                DomainPattern::parse(bad),
                Err(PatternError::BadDomain),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_are_exact_or_segment_prefixes() {
        assert_eq!(
            PathPattern::parse("/v1/chat/completions"),
            Ok(PathPattern::Exact("/v1/chat/completions".into()))
        );
        assert_eq!(
            PathPattern::parse("/api/*"),
            Ok(PathPattern::Prefix("/api".into()))
        );
        assert_eq!(PathPattern::parse("/*"), Ok(PathPattern::Prefix("".into())));
        assert_eq!(PathPattern::parse("/"), Ok(PathPattern::Exact("/".into())));
        assert_eq!(
            PathPattern::parse("/x/"),
            Ok(PathPattern::Exact("/x/".into()))
        );
        for bad in [
            "", "api", "/api*", "/a//b", "/a/../b", "/a/./b", "/a/%2e", "/a b", "/a;b", "/a\\b",
            "/a?b", "/*/x", "//*", "/a/*/*",
        ] {
            assert_eq!(PathPattern::parse(bad), Err(PatternError::BadPath), "{bad}");
        }
    }
}
