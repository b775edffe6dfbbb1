//! The declarative file (DESIGN §9): TOML text in, a validated [`Document`]
//! out. This module owns the file format and its strict validation: unknown
//! fields, duplicate ids, duplicate (domain, path) pairs, dangling references
//! and bad values are errors that name their place, and every semantic error
//! is reported, not just the first.
//!
//! It reads the file and the `{ env = … }` / `{ file = … }` secrets it names,
//! and nothing else. It must not index routes or decide requests, and no
//! error may carry a secret's value: errors name variables and files only.
//!
//! Decisions the format leaves open: a client's or key's `status` defaults to
//! `active`; `service` follows the id rules (`[A-Za-z0-9._-]{1,64}`); a key's
//! `label` is checked to be a string but not kept (the model has no field for
//! it); `expires_at` is an RFC 3339 string or a TOML date-time with an offset.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::core::glob::Glob;
use crate::core::model::{
    valid_id, without_line_end, Client, ClientId, ClientStatus, Digest, Document, DomainPattern,
    Grant, GrantMethods, Invalid, InvalidId, KeyId, KeyRecord, KeyStatus, Limit, Method,
    MethodRule, PathPattern, Route, RouteId, Secret,
};

/// One problem, naming its place, e.g. `route "ollama-api" (route #2)` and
/// `path: …`, or `line 12, column 3` and ``unknown field `pth` …``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub place: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every problem found in a file, one per line when displayed.
#[derive(Debug, thiserror::Error)]
pub struct FileErrors(pub Vec<FileError>);

impl FileErrors {
    pub fn single(place: impl Into<String>, message: impl Into<String>) -> FileErrors {
        FileErrors(vec![FileError {
            place: place.into(),
            message: message.into(),
        }])
    }
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Reads and validates the file at `path`. Secrets come from the process
/// environment and from files relative to the file's directory.
pub fn load(path: &Path) -> Result<Document, FileErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileErrors::single(path.display().to_string(), format!("cannot read: {e}")))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let env = |name: &str| std::env::var(name).ok();
    parse_document(&text, &env, base_dir)
}

/// Validates a file's text. `env` looks up `{ env = … }` secrets; relative
/// `{ file = … }` secrets are read from `base_dir`.
pub fn parse_document(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Result<Document, FileErrors> {
    let raw: RawDocument = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    let sources = Sources { env, base_dir };
    let mut errors = Vec::new();
    let routes = routes(&raw.route, &mut errors);
    let (clients, keys) = clients(&raw.client, &sources, &mut errors);
    let grants = grants(&raw, &mut errors);
    match errors.is_empty() {
        true => Ok(Document {
            routes,
            clients,
            keys,
            grants,
        }),
        false => Err(FileErrors(errors)),
    }
}

/// A TOML or shape error: toml stops at the first, with a byte span. Only its
/// message is kept (its `Display` quotes the source line, which may hold a
/// secret someone pasted inline).
fn syntax_error(text: &str, e: &toml::de::Error) -> FileErrors {
    let place = e
        .span()
        .map_or_else(|| "the file".to_owned(), |s| line_column(text, s.start));
    FileErrors::single(place, e.message().trim_end())
}

fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}")
}

// ---- The file's shape, as serde sees it. -------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    client: Vec<RawClient>,
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    id: String,
    domain: String,
    path: String,
    service: String,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    methods: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    name: String,
    status: Option<String>,
    limit: Option<String>,
    burst: Option<i64>,
    secret_hash: Option<String>,
    /// A `Value`, not a typed source, so that an inline string is refused by
    /// our own message and never quoted by serde's.
    hmac_secret: Option<toml::Value>,
    #[serde(default)]
    key: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    digest: String,
    status: Option<String>,
    expires_at: Option<toml::Value>,
    #[allow(dead_code)] // accepted and type-checked; the model keeps no label
    label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    client: String,
    route: String,
    methods: Vec<String>,
    models: Option<Vec<String>>,
    limit: Option<String>,
    burst: Option<i64>,
}

// ---- Collecting errors. -------------------------------------------------

struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: &'a Path,
}

/// Records errors against one place (a route, client, key or grant).
struct Checker<'a> {
    errors: &'a mut Vec<FileError>,
    place: String,
}

impl<'a> Checker<'a> {
    fn new(errors: &'a mut Vec<FileError>, place: String) -> Checker<'a> {
        Checker { errors, place }
    }

    fn fail(&mut self, field: &str, message: impl fmt::Display) {
        self.errors.push(FileError {
            place: self.place.clone(),
            message: format!("{field}: {message}"),
        });
    }

    fn check<T, E: fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.fail(field, e)).ok()
    }
}

/// The first place each value was seen, to report repeats naming it.
struct Seen<K>(HashMap<K, String>);

impl<K: Hash + Eq> Seen<K> {
    fn new() -> Seen<K> {
        Seen(HashMap::new())
    }

    fn first(&mut self, key: K, place: &str) -> Result<(), Invalid> {
        match self.0.get(&key) {
            Some(first) => Err(format!("already used by {first}").into()),
            None => {
                self.0.insert(key, place.to_owned());
                Ok(())
            }
        }
    }
}

// ---- Routes. ----------------------------------------------------------

fn routes(raw: &[RawRoute], errors: &mut Vec<FileError>) -> Vec<Route> {
    let mut ids = Seen::new();
    let mut patterns = Seen::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let mut c = Checker::new(errors, format!("route {:?} (route #{})", r.id, i + 1));
        let place = c.place.clone();
        c.check("id", ids.first(r.id.as_str(), &place));
        if let Some(route) = route(r, &mut c) {
            let pattern = (route.domain.clone(), route.path.clone());
            c.check("domain and path", patterns.first(pattern, &place));
            out.push(route);
        }
    }
    out
}

fn route(raw: &RawRoute, c: &mut Checker) -> Option<Route> {
    let id = c.check("id", RouteId::parse(&raw.id));
    let domain = c.check("domain", DomainPattern::parse(&raw.domain));
    let path = c.check("path", PathPattern::parse(&raw.path));
    let service = c.check("service", parse_service(&raw.service));
    let (methods, any_method) = method_rules(&raw.methods, c)?;
    Some(Route {
        id: id?,
        domain: domain?,
        path: path?,
        service: service?,
        priority: raw.priority,
        methods,
        any_method,
    })
}

type Rules = (BTreeMap<Method, MethodRule>, Option<MethodRule>);

fn method_rules(raw: &BTreeMap<String, Vec<String>>, c: &mut Checker) -> Option<Rules> {
    if raw.is_empty() {
        c.fail("methods", "a route needs at least one method rule");
        return None;
    }
    let (mut ok, mut methods, mut any) = (true, BTreeMap::new(), None);
    for (name, list) in raw {
        let field = format!("methods.{}", name.escape_debug());
        let key = c.check(&field, method_key(name));
        match (key, c.check(&field, MethodRule::parse(list))) {
            (Some(Some(method)), Some(rule)) => drop(methods.insert(method, rule)),
            (Some(None), Some(rule)) => any = Some(rule),
            _ => ok = false,
        }
    }
    ok.then_some((methods, any))
}

/// `None` for `"*"`, every method not listed.
fn method_key(name: &str) -> Result<Option<Method>, Invalid> {
    match name {
        "*" => Ok(None),
        _ => parse_method(name).map(Some),
    }
}

// ---- Clients and keys. -----------------------------------------------

fn clients(
    raw: &[RawClient],
    sources: &Sources,
    errors: &mut Vec<FileError>,
) -> (Vec<Client>, Vec<KeyRecord>) {
    let (mut ids, mut key_index) = (Seen::new(), KeyIndex::new());
    let (mut clients, mut keys) = (Vec::new(), Vec::new());
    for (i, r) in raw.iter().enumerate() {
        let place = format!("client {:?} (client #{})", r.id, i + 1);
        let mut c = Checker::new(errors, place.clone());
        c.check("id", ids.first(r.id.as_str(), &place));
        let client = client(r, sources, &mut c);
        let owner = ClientId::parse(&r.id).ok();
        for (j, k) in r.key.iter().enumerate() {
            let place = format!("{place} key {:?} (key #{})", k.id, j + 1);
            let mut c = Checker::new(errors, place);
            keys.extend(key(k, owner.clone(), &mut key_index, &mut c));
        }
        clients.extend(client);
    }
    (clients, keys)
}

fn client(raw: &RawClient, sources: &Sources, c: &mut Checker) -> Option<Client> {
    let id = c.check("id", ClientId::parse(&raw.id));
    let name = c.check("name", parse_name(&raw.name));
    let status = c.check("status", parse_client_status(raw.status.as_deref()));
    let limit = check_limit(c, raw.limit.as_deref(), raw.burst);
    let secret_hash = raw.secret_hash.as_deref().map(parse_bcrypt).transpose();
    let secret_hash = c.check("secret_hash", secret_hash);
    let hmac = raw.hmac_secret.as_ref().map(|v| read_secret(v, sources));
    let hmac_secret = c.check("hmac_secret", hmac.transpose());
    Some(Client {
        id: id?,
        name: name?,
        status: status?,
        limit: limit?,
        secret_hash: secret_hash?,
        hmac_secret: hmac_secret?,
    })
}

/// Key ids and digests are unique across the whole file.
struct KeyIndex<'a> {
    ids: Seen<&'a str>,
    digests: Seen<Digest>,
}

impl KeyIndex<'_> {
    fn new() -> Self {
        KeyIndex {
            ids: Seen::new(),
            digests: Seen::new(),
        }
    }
}

fn key<'a>(
    raw: &'a RawKey,
    client_id: Option<ClientId>,
    index: &mut KeyIndex<'a>,
    c: &mut Checker,
) -> Option<KeyRecord> {
    let place = c.place.clone();
    let id = c.check("id", KeyId::parse(&raw.id));
    c.check("id", index.ids.first(raw.id.as_str(), &place));
    let digest = c.check("digest", parse_digest(&raw.digest));
    if let Some(d) = digest {
        c.check("digest", index.digests.first(d, &place));
    }
    let status = c.check("status", parse_key_status(raw.status.as_deref()));
    let expires_at = raw.expires_at.as_ref().map(parse_expiry).transpose();
    let expires_at = c.check("expires_at", expires_at);
    Some(KeyRecord {
        id: id?,
        client_id: client_id?,
        digest: digest?,
        status: status?,
        expires_at: expires_at?,
    })
}

// ---- Grants. ----------------------------------------------------------

fn grants(raw: &RawDocument, errors: &mut Vec<FileError>) -> Vec<Grant> {
    let known = Known {
        clients: raw.client.iter().map(|c| c.id.as_str()).collect(),
        routes: raw.route.iter().map(|r| r.id.as_str()).collect(),
    };
    let mut seen = Seen::new();
    let mut out = Vec::new();
    for (i, g) in raw.grant.iter().enumerate() {
        let place = format!("grant {:?} -> {:?} (grant #{})", g.client, g.route, i + 1);
        let mut c = Checker::new(errors, place.clone());
        c.check(
            "client and route",
            seen.first((&g.client, &g.route), &place),
        );
        out.extend(grant(g, &known, &mut c));
    }
    out
}

/// The ids a grant may name (as written, even if the entry has other errors,
/// so that one mistake is reported once).
struct Known<'a> {
    clients: HashSet<&'a str>,
    routes: HashSet<&'a str>,
}

fn grant(raw: &RawGrant, known: &Known, c: &mut Checker) -> Option<Grant> {
    let client_id = c.check("client", known_id(&known.clients, &raw.client, "client"));
    let route_id = c.check("route", known_id(&known.routes, &raw.route, "route"));
    let (client_id, route_id): (Option<ClientId>, Option<RouteId>) =
        (client_id.flatten(), route_id.flatten());
    let methods = c.check("methods", parse_grant_methods(&raw.methods));
    let models = c.check("models", parse_models(raw.models.as_deref()));
    let limit = check_limit(c, raw.limit.as_deref(), raw.burst);
    Some(Grant {
        client_id: client_id?,
        route_id: route_id?,
        methods: methods?,
        models: models?,
        limit: limit?,
    })
}

/// The id of a client or route the file defines; `None`, without an
/// error, when that id is invalid: its own entry reports it.
fn known_id<T: FromStr>(ids: &HashSet<&str>, id: &str, what: &str) -> Result<Option<T>, Invalid> {
    match ids.contains(id) {
        true => Ok(id.parse().ok()),
        false => Err(format!("no {what} has the id {id:?}").into()),
    }
}

fn parse_grant_methods(list: &[String]) -> Result<GrantMethods, Invalid> {
    match list {
        [] => Err("list at least one method, or `*`".into()),
        [star] if star == "*" => Ok(GrantMethods::Any),
        _ if list.iter().any(|m| m == "*") => Err("`*` must be the only entry".into()),
        _ => {
            let mut methods = Vec::with_capacity(list.len());
            for name in list {
                let m = parse_method(name)?;
                if methods.contains(&m) {
                    return Err(format!("`{m}` is listed twice").into());
                }
                methods.push(m);
            }
            Ok(GrantMethods::Only(methods))
        }
    }
}

fn parse_models(list: Option<&[String]>) -> Result<Option<Vec<Glob>>, Invalid> {
    let Some(list) = list else { return Ok(None) };
    if list.is_empty() {
        return Err("an empty list allows no model; leave `models` out to allow any".into());
    }
    let glob =
        |m: &String| Glob::parse(m).map_err(|e| Invalid(format!("`{}`: {e}", m.escape_debug())));
    list.iter().map(glob).collect::<Result<_, _>>().map(Some)
}

// ---- Values. ------------------------------------------------------------

/// A route's service label follows the id rule, though it is no id.
fn parse_service(s: &str) -> Result<Arc<str>, InvalidId> {
    match valid_id(s) {
        true => Ok(Arc::from(s)),
        false => Err(InvalidId),
    }
}

fn parse_name(s: &str) -> Result<Arc<str>, &'static str> {
    match s.trim().is_empty() {
        true => Err("must not be empty"),
        false => Ok(Arc::from(s)),
    }
}

fn parse_method(s: &str) -> Result<Method, Invalid> {
    Method::parse(s).ok_or_else(|| {
        Invalid(format!(
            "`{}` is not a method (methods are upper-case, e.g. GET)",
            s.escape_debug()
        ))
    })
}

fn parse_client_status(s: Option<&str>) -> Result<ClientStatus, Invalid> {
    let s = s.unwrap_or("active");
    ClientStatus::parse(s).ok_or_else(|| {
        Invalid(format!(
            "`{}` is not one of active, suspended, revoked",
            s.escape_debug()
        ))
    })
}

fn parse_key_status(s: Option<&str>) -> Result<KeyStatus, Invalid> {
    let s = s.unwrap_or("active");
    KeyStatus::parse(s).ok_or_else(|| {
        Invalid(format!(
            "`{}` is not one of active, revoked",
            s.escape_debug()
        ))
    })
}

fn parse_digest(s: &str) -> Result<Digest, &'static str> {
    Digest::parse(s).ok_or("must be `sha256:` followed by 64 lower-case hex digits")
}

/// `limit` and `burst` of a client or grant; errors name the field at fault.
fn check_limit(c: &mut Checker, limit: Option<&str>, burst: Option<i64>) -> Option<Option<Limit>> {
    let Some(text) = limit else {
        return match burst {
            Some(_) => c.check("burst", Err("needs a `limit`")),
            None => Some(None),
        };
    };
    let limit = c.check("limit", parse_limit(text))?;
    let Some(burst) = burst else {
        return Some(Some(limit));
    };
    let with_burst = u32::try_from(burst).ok().and_then(|b| limit.with_burst(b));
    c.check("burst", with_burst.ok_or("must be a positive whole number"))
        .map(Some)
}

fn parse_limit(s: &str) -> Result<Limit, Invalid> {
    Limit::parse(s).ok_or_else(|| {
        Invalid(format!(
            "`{}` is not N/window (e.g. 600/1m; windows in s, m, h or d)",
            s.escape_debug()
        ))
    })
}

/// A bcrypt hash: `$2a$`, `$2b$` or `$2y$`, a cost of 04 to 31, `$`, then 53
/// characters of bcrypt's base64. The value is never echoed.
fn parse_bcrypt(s: &str) -> Result<Arc<str>, &'static str> {
    let b = s.as_bytes();
    let bcrypt_char = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/');
    let ok = b.len() == 60
        && matches!(&b[..4], b"$2a$" | b"$2b$" | b"$2y$")
        && b[4..6].iter().all(u8::is_ascii_digit)
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..].iter().all(bcrypt_char);
    match ok {
        true => Ok(Arc::from(s)),
        false => Err("is not a bcrypt hash (`$2b$<cost 04-31>$` and 53 characters)"),
    }
}

/// An RFC 3339 string, or a TOML date-time with an offset, as Unix seconds.
fn parse_expiry(v: &toml::Value) -> Result<i64, Invalid> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.date.is_some() && d.time.is_some() && d.offset.is_some() => {
            d.to_string()
        }
        _ => {
            return Err(
                "must be an RFC 3339 date-time with an offset, e.g. 2027-01-01T00:00:00Z".into(),
            )
        }
    };
    OffsetDateTime::parse(&text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| {
            Invalid(format!(
                "`{}` is not an RFC 3339 date-time, e.g. 2027-01-01T00:00:00Z",
                text.escape_debug()
            ))
        })
}

// ---- Secrets: errors name the variable or file, never the value. -------

const SECRET_SOURCE: &str =
    "must be { env = \"NAME\" } or { file = \"path\" }; inline secrets are not accepted";

fn read_secret(v: &toml::Value, sources: &Sources) -> Result<Secret, Invalid> {
    let table = v.as_table().ok_or(SECRET_SOURCE)?;
    if let Some(k) = table.keys().find(|k| !matches!(k.as_str(), "env" | "file")) {
        return Err(format!(
            "unknown field `{}`, expected `env` or `file`",
            k.escape_debug()
        )
        .into());
    }
    match (table.get("env"), table.get("file")) {
        (Some(toml::Value::String(name)), None) => secret_from_env(name, sources.env),
        (None, Some(toml::Value::String(path))) => secret_from_file(&sources.base_dir.join(path)),
        _ => Err(SECRET_SOURCE.into()),
    }
}

fn secret_from_env(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, Invalid> {
    let value = (!name.is_empty()).then(|| env(name)).flatten();
    match value.filter(|v| !v.is_empty()) {
        Some(v) => Ok(Secret::new(v.into_bytes())),
        None => Err(format!(
            "environment variable `{}` is not set or is empty",
            name.escape_debug()
        )
        .into()),
    }
}

/// The file's bytes with one trailing `\n` or `\r\n` removed (DESIGN §11).
/// Longest secret file read: a secret is a line, not a file system (a file
/// naming `/dev/zero` or a log would otherwise hang or exhaust `check`,
/// `apply` and reloads).
const MAX_SECRET_FILE: u64 = 64 * 1024;

fn secret_from_file(path: &Path) -> Result<Secret, Invalid> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "{} is larger than {MAX_SECRET_FILE} bytes: not a secret",
            path.display()
        )
        .into());
    }
    match without_line_end(&bytes) {
        [] => Err(format!("{} is empty", path.display()).into()),
        secret => Ok(Secret::new(secret.to_vec())),
    }
}

#[cfg(test)]
#[path = "file_format_tests.rs"]
mod tests;
