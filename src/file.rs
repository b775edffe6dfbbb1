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
use std::sync::Arc;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::core::glob::Glob;
use crate::core::model::{
    valid_id, Client, ClientStatus, CredentialSet, CredentialType, Digest, Document, DomainPattern,
    Grant, GrantMethods, KeyRecord, KeyStatus, Limit, Method, MethodRule, PathPattern, Route,
    Secret,
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
    fn single(place: impl Into<String>, message: impl Into<String>) -> FileErrors {
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

/// How much a document holds, for start-up and reload logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub routes: usize,
    pub clients: usize,
    pub keys: usize,
    pub grants: usize,
}

impl Summary {
    pub fn of(doc: &Document) -> Summary {
        Summary {
            routes: doc.routes.len(),
            clients: doc.clients.len(),
            keys: doc.keys.len(),
            grants: doc.grants.len(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} routes, {} clients, {} keys, {} grants",
            self.routes, self.clients, self.keys, self.grants
        )
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

    fn first(&mut self, key: K, place: &str) -> Result<(), String> {
        match self.0.get(&key) {
            Some(first) => Err(format!("already used by {first}")),
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
    let id = c.check("id", parse_id(&raw.id));
    let domain = c.check("domain", DomainPattern::parse(&raw.domain));
    let path = c.check("path", PathPattern::parse(&raw.path));
    let service = c.check("service", parse_id(&raw.service));
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
        match (key, c.check(&field, parse_rule(list))) {
            (Some(Some(method)), Some(rule)) => drop(methods.insert(method, rule)),
            (Some(None), Some(rule)) => any = Some(rule),
            _ => ok = false,
        }
    }
    ok.then_some((methods, any))
}

/// `None` for `"*"`, every method not listed.
fn method_key(name: &str) -> Result<Option<Method>, String> {
    match name {
        "*" => Ok(None),
        _ => parse_method(name).map(Some),
    }
}

fn parse_rule(list: &[String]) -> Result<MethodRule, String> {
    if list.is_empty() {
        return Err("an empty list accepts nothing; leave the method out instead".into());
    }
    if list.iter().any(|t| t == "public") {
        return match list.len() {
            1 => Ok(MethodRule::Public),
            _ => Err("`public` must be the only entry".into()),
        };
    }
    let mut set = CredentialSet::EMPTY;
    for name in list {
        let t = CredentialType::parse(name).ok_or_else(|| {
            format!(
                "unknown credential type `{}` (expected public, api_key, basic or hmac)",
                name.escape_debug()
            )
        })?;
        if set.contains(t) {
            return Err(format!("`{name}` is listed twice"));
        }
        set = set.with(t);
    }
    Ok(MethodRule::Credentials(set))
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
        let owner = valid_id(&r.id).then(|| Arc::<str>::from(r.id.as_str()));
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
    let id = c.check("id", parse_id(&raw.id));
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
    client_id: Option<Arc<str>>,
    index: &mut KeyIndex<'a>,
    c: &mut Checker,
) -> Option<KeyRecord> {
    let place = c.place.clone();
    let id = c.check("id", parse_id(&raw.id));
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

fn known_id(ids: &HashSet<&str>, id: &str, what: &str) -> Result<Arc<str>, String> {
    match ids.contains(id) {
        true => Ok(Arc::from(id)),
        false => Err(format!("no {what} has the id {id:?}")),
    }
}

fn parse_grant_methods(list: &[String]) -> Result<GrantMethods, String> {
    match list {
        [] => Err("list at least one method, or `*`".into()),
        [star] if star == "*" => Ok(GrantMethods::Any),
        _ if list.iter().any(|m| m == "*") => Err("`*` must be the only entry".into()),
        _ => {
            let mut methods = Vec::with_capacity(list.len());
            for name in list {
                let m = parse_method(name)?;
                if methods.contains(&m) {
                    return Err(format!("`{m}` is listed twice"));
                }
                methods.push(m);
            }
            Ok(GrantMethods::Only(methods))
        }
    }
}

fn parse_models(list: Option<&[String]>) -> Result<Option<Vec<Glob>>, String> {
    let Some(list) = list else { return Ok(None) };
    if list.is_empty() {
        return Err("an empty list allows no model; leave `models` out to allow any".into());
    }
    let glob = |m: &String| Glob::parse(m).map_err(|e| format!("`{}`: {e}", m.escape_debug()));
    list.iter().map(glob).collect::<Result<_, _>>().map(Some)
}

// ---- Values. ------------------------------------------------------------

fn parse_id(s: &str) -> Result<Arc<str>, &'static str> {
    match valid_id(s) {
        true => Ok(Arc::from(s)),
        false => Err("must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
    }
}

fn parse_name(s: &str) -> Result<Arc<str>, &'static str> {
    match s.trim().is_empty() {
        true => Err("must not be empty"),
        false => Ok(Arc::from(s)),
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::parse(s).ok_or_else(|| {
        format!(
            "`{}` is not a method (methods are upper-case, e.g. GET)",
            s.escape_debug()
        )
    })
}

fn parse_client_status(s: Option<&str>) -> Result<ClientStatus, String> {
    let s = s.unwrap_or("active");
    ClientStatus::parse(s).ok_or_else(|| {
        format!(
            "`{}` is not one of active, suspended, revoked",
            s.escape_debug()
        )
    })
}

fn parse_key_status(s: Option<&str>) -> Result<KeyStatus, String> {
    let s = s.unwrap_or("active");
    KeyStatus::parse(s)
        .ok_or_else(|| format!("`{}` is not one of active, revoked", s.escape_debug()))
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

fn parse_limit(s: &str) -> Result<Limit, String> {
    Limit::parse(s).ok_or_else(|| {
        format!(
            "`{}` is not N/window (e.g. 600/1m; windows in s, m, h or d)",
            s.escape_debug()
        )
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
fn parse_expiry(v: &toml::Value) -> Result<i64, String> {
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
            format!(
                "`{}` is not an RFC 3339 date-time, e.g. 2027-01-01T00:00:00Z",
                text.escape_debug()
            )
        })
}

// ---- Secrets: errors name the variable or file, never the value. -------

const SECRET_SOURCE: &str =
    "must be { env = \"NAME\" } or { file = \"path\" }; inline secrets are not accepted";

fn read_secret(v: &toml::Value, sources: &Sources) -> Result<Secret, String> {
    let table = v.as_table().ok_or(SECRET_SOURCE)?;
    if let Some(k) = table.keys().find(|k| !matches!(k.as_str(), "env" | "file")) {
        return Err(format!(
            "unknown field `{}`, expected `env` or `file`",
            k.escape_debug()
        ));
    }
    match (table.get("env"), table.get("file")) {
        (Some(toml::Value::String(name)), None) => secret_from_env(name, sources.env),
        (None, Some(toml::Value::String(path))) => secret_from_file(&sources.base_dir.join(path)),
        _ => Err(SECRET_SOURCE.into()),
    }
}

fn secret_from_env(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    let value = (!name.is_empty()).then(|| env(name)).flatten();
    match value.filter(|v| !v.is_empty()) {
        Some(v) => Ok(Secret::new(v.into_bytes())),
        None => Err(format!(
            "environment variable `{}` is not set or is empty",
            name.escape_debug()
        )),
    }
}

/// The file's bytes with one trailing `\n` or `\r\n` removed (DESIGN §11).
fn secret_from_file(path: &Path) -> Result<Secret, String> {
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    match bytes.is_empty() {
        true => Err(format!("{} is empty", path.display())),
        false => Ok(Secret::new(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    const HMAC_VALUE: &str = "hmac-value-never-printed";

    fn env(name: &str) -> Option<String> {
        (name == "TEAM_A_HMAC_SECRET").then(|| HMAC_VALUE.to_owned())
    }

    fn parse(text: &str) -> Result<Document, FileErrors> {
        parse_document(text, &env, Path::new("."))
    }

    fn errors(text: &str) -> Vec<FileError> {
        parse(text).expect_err("the file should be rejected").0
    }

    fn assert_error(text: &str, place: &str, fragment: &str) {
        let errors = errors(text);
        let found = errors
            .iter()
            .any(|e| e.place == place && e.message.contains(fragment));
        assert!(found, "no `{place}: …{fragment}…` in {errors:#?}");
    }

    fn digest(key: &str) -> String {
        Digest::of(key.as_bytes()).to_string()
    }

    /// A scratch directory unique to this test process and test.
    fn scratch_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gatekeeper-file-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    const ROUTE: &str = r#"
[[route]]
id = "r1"
domain = "api.example.com"
path = "/v1/*"
service = "api"
methods = { GET = ["api_key"] }
"#;

    const CLIENT: &str = r#"
[[client]]
id = "c1"
name = "Client One"
"#;

    fn complete_file() -> String {
        r#"
[[route]]
id = "ollama-api"
domain = "llm.example.com"
path = "/api/*"
service = "ollama"
[route.methods]
GET = ["public"]
POST = ["api_key", "basic"]

[[route]]
id = "openai"
domain = "*.example.com"
path = "/v1/chat/completions"
service = "openai-compat"
priority = 5
[route.methods]
"*" = ["hmac", "api_key"]

[[client]]
id = "team-a"
name = "Team A"
limit = "600/1m"
burst = 50
secret_hash = "@HASH"
hmac_secret = { env = "TEAM_A_HMAC_SECRET" }

[[client.key]]
id = "k1"
digest = "@D1"
expires_at = "2027-01-01T00:00:00Z"
label = "laptop"

[[client.key]]
id = "k2"
digest = "@D2"
status = "revoked"
expires_at = 2027-01-01T01:00:00+01:00

[[client]]
id = "team-b"
name = "Team B"
status = "suspended"

[[client.key]]
id = "k3"
digest = "@D3"

[[grant]]
client = "team-a"
route = "ollama-api"
methods = ["GET", "POST"]
models = ["llama3*", "qwen2.5:7b"]
limit = "60/1m"

[[grant]]
client = "team-b"
route = "openai"
methods = ["*"]
limit = "10/1s"
burst = 20
"#
        .replace("@HASH", HASH)
        .replace("@D1", &digest("key-one"))
        .replace("@D2", &digest("key-two"))
        .replace("@D3", &digest("key-three"))
    }

    fn expected_routes() -> Vec<Route> {
        let creds = |ts: &[CredentialType]| MethodRule::Credentials(ts.iter().copied().collect());
        let method = |m: &str| Method::parse(m).expect("method");
        vec![
            Route {
                id: "ollama-api".into(),
                domain: DomainPattern::Exact("llm.example.com".into()),
                path: PathPattern::Prefix("/api".into()),
                service: "ollama".into(),
                priority: 0,
                methods: BTreeMap::from([
                    (method("GET"), MethodRule::Public),
                    (
                        method("POST"),
                        creds(&[CredentialType::ApiKey, CredentialType::Basic]),
                    ),
                ]),
                any_method: None,
            },
            Route {
                id: "openai".into(),
                domain: DomainPattern::Suffix("example.com".into()),
                path: PathPattern::Exact("/v1/chat/completions".into()),
                service: "openai-compat".into(),
                priority: 5,
                methods: BTreeMap::new(),
                any_method: Some(creds(&[CredentialType::ApiKey, CredentialType::Hmac])),
            },
        ]
    }

    fn expected_clients() -> Vec<Client> {
        let limit = Limit::parse("600/1m").and_then(|l| l.with_burst(50));
        vec![
            Client {
                id: "team-a".into(),
                name: "Team A".into(),
                status: ClientStatus::Active,
                limit,
                secret_hash: Some(HASH.into()),
                hmac_secret: Some(Secret::new(HMAC_VALUE.as_bytes().to_vec())),
            },
            Client {
                id: "team-b".into(),
                name: "Team B".into(),
                status: ClientStatus::Suspended,
                limit: None,
                secret_hash: None,
                hmac_secret: None,
            },
        ]
    }

    fn expected_keys() -> Vec<KeyRecord> {
        let key = |id: &str, client: &str, secret: &str, status, expires_at| KeyRecord {
            id: id.into(),
            client_id: client.into(),
            digest: Digest::of(secret.as_bytes()),
            status,
            expires_at,
        };
        let new_year_2027 = Some(1_798_761_600);
        vec![
            key("k1", "team-a", "key-one", KeyStatus::Active, new_year_2027),
            key("k2", "team-a", "key-two", KeyStatus::Revoked, new_year_2027),
            key("k3", "team-b", "key-three", KeyStatus::Active, None),
        ]
    }

    fn expected_grants() -> Vec<Grant> {
        let methods = ["GET", "POST"].map(|m| Method::parse(m).expect("method"));
        let globs = ["llama3*", "qwen2.5:7b"].map(|g| Glob::parse(g).expect("glob"));
        vec![
            Grant {
                client_id: "team-a".into(),
                route_id: "ollama-api".into(),
                methods: GrantMethods::Only(methods.to_vec()),
                models: Some(globs.to_vec()),
                limit: Limit::parse("60/1m"),
            },
            Grant {
                client_id: "team-b".into(),
                route_id: "openai".into(),
                methods: GrantMethods::Any,
                models: None,
                limit: Limit::parse("10/1s").and_then(|l| l.with_burst(20)),
            },
        ]
    }

    #[test]
    fn a_complete_file_parses_to_the_expected_document() {
        let doc = parse(&complete_file()).expect("valid file");
        assert_eq!(doc.routes, expected_routes());
        assert_eq!(doc.clients, expected_clients());
        assert_eq!(doc.keys, expected_keys());
        assert_eq!(doc.grants, expected_grants());
        assert_eq!(
            Summary::of(&doc).to_string(),
            "2 routes, 2 clients, 3 keys, 2 grants"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_document() {
        assert_eq!(parse("").expect("empty is valid"), Document::default());
        assert_eq!(
            parse("# nothing yet\n").expect("valid"),
            Document::default()
        );
    }

    #[test]
    fn an_unknown_top_level_field_names_its_line_and_column() {
        let text = format!("{ROUTE}\n[[routes]]\nid = \"x\"\n");
        assert_error(&text, "line 9, column 3", "unknown field `routes`");
    }

    #[test]
    fn an_unknown_route_field_names_its_line_and_column() {
        let text = ROUTE.replace("path = ", "pth = ");
        assert_error(&text, "line 5, column 1", "unknown field `pth`");
    }

    #[test]
    fn an_unknown_credential_type_in_a_methods_list_is_rejected() {
        let text = ROUTE.replace(r#"["api_key"]"#, r#"["api_key", "apikey"]"#);
        assert_error(
            &text,
            r#"route "r1" (route #1)"#,
            "methods.GET: unknown credential type `apikey`",
        );
    }

    #[test]
    fn an_unknown_key_field_is_rejected() {
        let text = format!("{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"x\"\nlable = \"l\"\n");
        assert_error(&text, "line 8, column 1", "unknown field `lable`");
    }

    #[test]
    fn duplicate_route_client_and_key_ids_are_rejected() {
        let d1 = digest("one");
        let d2 = digest("two");
        let keys = format!(
            "[[client.key]]\nid = \"k\"\ndigest = \"{d1}\"\n[[client.key]]\nid = \"k\"\ndigest = \"{d2}\"\n"
        );
        let text = format!(
            "{ROUTE}{}{CLIENT}{keys}{CLIENT}",
            ROUTE.replace("/v1/*", "/v2/*")
        );
        assert_error(
            &text,
            r#"route "r1" (route #2)"#,
            r#"id: already used by route "r1" (route #1)"#,
        );
        assert_error(&text, r#"client "c1" (client #2)"#, "id: already used by");
        assert_error(
            &text,
            r#"client "c1" (client #1) key "k" (key #2)"#,
            r#"id: already used by client "c1" (client #1) key "k" (key #1)"#,
        );
    }

    #[test]
    fn a_digest_used_twice_is_rejected_even_across_clients() {
        let d = digest("shared");
        let key = |id: &str| format!("[[client.key]]\nid = \"{id}\"\ndigest = \"{d}\"\n");
        let other = CLIENT.replace("\"c1\"", "\"c2\"");
        let text = format!("{CLIENT}{}{other}{}", key("a"), key("b"));
        assert_error(
            &text,
            r#"client "c2" (client #2) key "b" (key #1)"#,
            "digest: already used by",
        );
    }

    #[test]
    fn two_routes_with_the_same_domain_in_any_case_and_path_are_rejected_naming_both() {
        let second = ROUTE
            .replace("\"r1\"", "\"r2\"")
            .replace("api.example.com", "API.Example.com");
        let errors = errors(&format!("{ROUTE}{second}"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].place, r#"route "r2" (route #2)"#);
        assert!(errors[0].message.contains(r#"route "r1""#), "{errors:#?}");
    }

    #[test]
    fn a_grant_naming_an_unknown_client_or_route_is_rejected() {
        let text = format!("{ROUTE}{CLIENT}[[grant]]\nclient = \"ghost\"\nroute = \"nowhere\"\nmethods = [\"GET\"]\n");
        let place = r#"grant "ghost" -> "nowhere" (grant #1)"#;
        assert_error(&text, place, r#"client: no client has the id "ghost""#);
        assert_error(&text, place, r#"route: no route has the id "nowhere""#);
    }

    #[test]
    fn a_second_grant_for_the_same_client_and_route_is_rejected() {
        let grant = "[[grant]]\nclient = \"c1\"\nroute = \"r1\"\nmethods = [\"GET\"]\n";
        let text = format!("{ROUTE}{CLIENT}{grant}{grant}");
        assert_error(&text, r#"grant "c1" -> "r1" (grant #2)"#, "already used by");
    }

    fn grant_with(extra: &str) -> String {
        format!("{ROUTE}{CLIENT}[[grant]]\nclient = \"c1\"\nroute = \"r1\"\n{extra}\n")
    }

    const GRANT_PLACE: &str = r#"grant "c1" -> "r1" (grant #1)"#;

    #[test]
    fn a_bad_model_glob_is_rejected() {
        let text = grant_with("methods = [\"POST\"]\nmodels = [\"llama3*\", \"bad model\"]");
        assert_error(
            &text,
            GRANT_PLACE,
            "models: `bad model`: a model pattern may not contain",
        );
        let empty = grant_with("methods = [\"POST\"]\nmodels = []");
        assert_error(&empty, GRANT_PLACE, "models: an empty list allows no model");
    }

    #[test]
    fn a_bad_limit_is_rejected() {
        let text = grant_with("methods = [\"GET\"]\nlimit = \"10/1x\"");
        assert_error(&text, GRANT_PLACE, "limit: `10/1x` is not N/window");
        let client = CLIENT.replace("name =", "limit = \"0/1m\"\nname =");
        assert_error(&client, r#"client "c1" (client #1)"#, "limit: `0/1m`");
    }

    #[test]
    fn burst_without_limit_is_rejected() {
        let text = CLIENT.replace("name =", "burst = 5\nname =");
        assert_error(
            &text,
            r#"client "c1" (client #1)"#,
            "burst: needs a `limit`",
        );
        let zero = grant_with("methods = [\"GET\"]\nlimit = \"1/1s\"\nburst = 0");
        assert_error(&zero, GRANT_PLACE, "burst: must be a positive whole number");
    }

    #[test]
    fn a_bad_status_is_rejected() {
        let text = CLIENT.replace("name =", "status = \"paused\"\nname =");
        assert_error(
            &text,
            r#"client "c1" (client #1)"#,
            "status: `paused` is not one of",
        );
        let key = format!(
            "{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"{}\"\nstatus = \"suspended\"\n",
            digest("k")
        );
        assert_error(
            &key,
            r#"client "c1" (client #1) key "k" (key #1)"#,
            "status: `suspended`",
        );
    }

    #[test]
    fn a_lower_case_method_is_rejected_in_routes_and_grants() {
        let text = ROUTE.replace("GET =", "get =");
        assert_error(
            &text,
            r#"route "r1" (route #1)"#,
            "methods.get: `get` is not a method",
        );
        let grant = grant_with("methods = [\"get\"]");
        assert_error(&grant, GRANT_PLACE, "methods: `get` is not a method");
    }

    #[test]
    fn public_mixed_with_credentials_or_an_empty_list_is_rejected() {
        let mixed = ROUTE.replace(r#"["api_key"]"#, r#"["public", "api_key"]"#);
        assert_error(
            &mixed,
            r#"route "r1" (route #1)"#,
            "methods.GET: `public` must be the only entry",
        );
        let empty = ROUTE.replace(r#"["api_key"]"#, "[]");
        assert_error(
            &empty,
            r#"route "r1" (route #1)"#,
            "methods.GET: an empty list accepts nothing",
        );
    }

    #[test]
    fn a_route_without_methods_is_rejected() {
        let text = ROUTE.replace("methods = { GET = [\"api_key\"] }", "");
        assert_error(
            &text,
            r#"route "r1" (route #1)"#,
            "methods: a route needs at least one",
        );
    }

    #[test]
    fn an_upper_case_digest_is_rejected() {
        let text = format!(
            "{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"{}\"\n",
            digest("k").to_uppercase().replace("SHA256:", "sha256:")
        );
        assert_error(
            &text,
            r#"client "c1" (client #1) key "k" (key #1)"#,
            "digest: must be `sha256:` followed by 64 lower-case hex",
        );
    }

    #[test]
    fn a_bad_expires_at_is_rejected() {
        let key = |expiry: &str| {
            format!(
                "{CLIENT}[[client.key]]\nid = \"k\"\ndigest = \"{}\"\nexpires_at = {expiry}\n",
                digest("k")
            )
        };
        let place = r#"client "c1" (client #1) key "k" (key #1)"#;
        assert_error(
            &key("\"2027-13-01\""),
            place,
            "expires_at: `2027-13-01` is not an RFC 3339 date-time",
        );
        assert_error(
            &key("2027-01-01T00:00:00"),
            place,
            "expires_at: must be an RFC 3339 date-time with an offset",
        );
    }

    #[test]
    fn a_missing_hmac_env_var_is_named_without_any_value() {
        let text = CLIENT.replace("name =", "hmac_secret = { env = \"NOT_SET\" }\nname =");
        assert_error(
            &text,
            r#"client "c1" (client #1)"#,
            "hmac_secret: environment variable `NOT_SET` is not set",
        );
    }

    #[test]
    fn an_inline_hmac_secret_is_refused_without_being_echoed() {
        for value in ["\"inline-hunter2\"", "{ value = \"inline-hunter2\" }"] {
            let text = CLIENT.replace("name =", &format!("hmac_secret = {value}\nname ="));
            let all = FileErrors(errors(&text)).to_string();
            assert!(all.contains("hmac_secret: "), "{all}");
            assert!(!all.contains("hunter2"), "{all}");
        }
    }

    #[test]
    fn a_file_secret_loses_one_trailing_newline_and_is_read_relative_to_the_file() {
        let dir = scratch_dir("secret");
        std::fs::write(dir.join("lf"), "s3cret\n\n").expect("write");
        std::fs::write(dir.join("crlf"), "s3cret\r\n").expect("write");
        let client = |id: &str, file: &str| {
            format!(
                "[[client]]\nid = \"{id}\"\nname = \"n\"\nhmac_secret = {{ file = \"{file}\" }}\n"
            )
        };
        let config = dir.join("gatekeeper.toml");
        std::fs::write(&config, client("a", "lf") + &client("b", "crlf")).expect("write");
        let doc = load(&config);
        std::fs::remove_dir_all(&dir).expect("clean up");
        let secrets: Vec<_> = doc
            .expect("valid")
            .clients
            .into_iter()
            .map(|c| c.hmac_secret)
            .collect();
        let expected = |s: &str| Some(Secret::new(s.as_bytes().to_vec()));
        assert_eq!(secrets, vec![expected("s3cret\n"), expected("s3cret")]);
    }

    #[test]
    fn an_unreadable_or_empty_secret_file_is_rejected() {
        let dir = scratch_dir("empty-secret");
        std::fs::write(dir.join("empty"), "\n").expect("write");
        let text = |file: &str| {
            CLIENT.replace(
                "name =",
                &format!("hmac_secret = {{ file = \"{file}\" }}\nname ="),
            )
        };
        let empty = parse_document(&text("empty"), &env, &dir);
        let missing = parse_document(&text("missing"), &env, &dir);
        std::fs::remove_dir_all(&dir).expect("clean up");
        let message = |r: Result<Document, FileErrors>| r.expect_err("rejected").to_string();
        assert!(message(empty).contains("is empty"));
        assert!(message(missing).contains("hmac_secret: cannot read"));
    }

    #[test]
    fn a_secret_hash_that_is_not_bcrypt_is_rejected() {
        for bad in ["$2b$03$", "$2x$12$", "$2b$1a$"] {
            let hash = format!("{bad}{}", &HASH[7..]);
            let text = CLIENT.replace("name =", &format!("secret_hash = \"{hash}\"\nname ="));
            assert_error(
                &text,
                r#"client "c1" (client #1)"#,
                "secret_hash: is not a bcrypt hash",
            );
        }
    }

    #[test]
    fn several_errors_are_reported_at_once() {
        let route = ROUTE.replace("/v1/*", "v1").replace("\"api\"", "\"\"");
        let client = CLIENT.replace("name = \"Client One\"", "name = \" \"\nstatus = \"gone\"");
        let grant = "[[grant]]\nclient = \"c1\"\nroute = \"r9\"\nmethods = []\n";
        let errors = errors(&format!("{route}{client}{grant}"));
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(lines[0].starts_with(r#"route "r1" (route #1): path: "#));
        assert!(lines[1].starts_with(r#"route "r1" (route #1): service: "#));
        assert!(lines[2].starts_with(r#"client "c1" (client #1): name: "#));
        assert!(lines[3].starts_with(r#"client "c1" (client #1): status: "#));
        assert!(lines[4].contains("route: no route has the id \"r9\""));
        assert!(lines[5].contains("methods: list at least one method"));
    }

    #[test]
    fn load_names_a_path_it_cannot_read() {
        let path =
            std::env::temp_dir().join(format!("gatekeeper-missing-{}.toml", std::process::id()));
        let errors = load(&path).expect_err("missing").0;
        assert_eq!(errors[0].place, path.display().to_string());
        assert!(errors[0].message.starts_with("cannot read"));
    }
}
