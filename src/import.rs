//! Reading the predecessor's database (the Python/Flask "API Gatekeeper",
//! see `shared/api-gatekeeper-predecessor.md`) into a gatekeeper `Document`,
//! with a report of what was imported, what now behaves differently and
//! what could not be imported.
//!
//! Reading the four tables is the only I/O; the mapping is plain code over
//! the rows read. Every row either maps or lands in `Report::skipped` with a
//! reason: nothing panics and nothing is dropped silently. Where the choice
//! is between importing less and allowing more, this module imports less
//! (a method it cannot read is left out, so it is refused).
//!
//! This module does not write anything: the caller seals the HMAC secrets
//! and stores the document. API keys leave it as SHA-256 digests only and
//! shared secrets as `Secret`s; no report line, error or `Debug` output
//! carries either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::{GenericClient, Row};

use crate::core::apikey::classify;
use crate::core::model::{
    Client, ClientId, ClientStatus, CredentialSet, CredentialType, Digest, Document, DomainPattern,
    Grant, GrantMethods, Invalid, KeyId, KeyRecord, KeyStatus, Limit, Method, MethodRule,
    PathPattern, Route, RouteId, Secret,
};

// Oldest first, so that of two routes that collide after normalisation the
// one the predecessor had first is kept.
const SELECT_ROUTES: &str = "
SELECT route_id::text, route_pattern::text, domain::text, service_name::text, methods::text
  FROM routes
 ORDER BY created_at, route_id";

const SELECT_CLIENTS: &str = "
SELECT client_id::text, client_name::text, status::text, api_key::text, shared_secret::text
  FROM clients
 ORDER BY created_at, client_id";

const SELECT_PERMISSIONS: &str = "
SELECT permission_id::text, client_id::text, route_id::text, allowed_methods::text[]
  FROM client_permissions
 ORDER BY created_at, permission_id";

const SELECT_LIMITS: &str = "
SELECT client_id::text, requests_per_day::bigint
  FROM rate_limits
 ORDER BY client_id";

/// Every statement this module runs, for a test that prepares them.
pub const STATEMENTS: [&str; 4] = [
    SELECT_ROUTES,
    SELECT_CLIENTS,
    SELECT_PERMISSIONS,
    SELECT_LIMITS,
];

/// `rate_limits.requests_per_day` is a count per day.
const DAY: Duration = Duration::from_secs(86_400);

/// The service label of a route whose `service_name` has no usable character.
const UNNAMED_SERVICE: &str = "unnamed";

#[derive(Debug)]
pub struct Import {
    pub document: Document,
    pub report: Report,
}

/// What the import did. Counts are of imported items; the lists are for
/// the operator to read before switching over.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub routes: usize,
    pub clients: usize,
    pub keys: usize,
    pub hmac_secrets: usize,
    pub grants: usize,
    pub limits: usize,
    /// Methods that required "any credential" and now name the types.
    pub widened: Vec<String>,
    /// Methods and routes that let through requests they no longer do.
    pub narrowed: Vec<String>,
    /// Values changed to fit gatekeeper's rules (service labels).
    pub adjusted: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// A row, or part of one, that was not imported. `id` names the row (a
/// route, client or permission id, with the method or column when only
/// that part was left out); it never holds a credential.
#[derive(Debug, serde::Serialize)]
pub struct Skipped {
    pub table: &'static str,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the API Gatekeeper table `{table}`")]
    Read {
        table: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Reads the predecessor's tables through `c` and maps them. Pass a
/// REPEATABLE READ transaction for one consistent view of the four tables.
pub async fn read_api_gatekeeper(c: &impl GenericClient) -> Result<Import, ImportError> {
    let routes = query(c, "routes", SELECT_ROUTES, route_row).await?;
    let clients = query(c, "clients", SELECT_CLIENTS, client_row).await?;
    let grants = query(c, "client_permissions", SELECT_PERMISSIONS, permission_row).await?;
    let limits = query(c, "rate_limits", SELECT_LIMITS, limit_row).await?;
    let mut importer = Importer::default();
    routes.into_iter().for_each(|row| importer.route(row));
    clients.into_iter().for_each(|row| importer.client(row));
    grants.into_iter().for_each(|row| importer.grant(row));
    limits.into_iter().for_each(|row| importer.limit(row));
    Ok(Import {
        document: importer.doc,
        report: importer.report,
    })
}

async fn query<T>(
    c: &impl GenericClient,
    table: &'static str,
    sql: &str,
    read: fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, ImportError> {
    let fail = move |source| ImportError::Read { table, source };
    let rows = c.query(sql, &[]).await.map_err(fail)?;
    rows.iter().map(|row| read(row).map_err(fail)).collect()
}

// ---- Rows as read. ---------------------------------------------------------

struct RouteRow {
    id: String,
    pattern: Option<String>,
    domain: Option<String>,
    service: Option<String>,
    methods: Option<String>,
}

/// No `Debug`: it holds plain-text credentials.
struct ClientRow {
    id: String,
    name: Option<String>,
    status: Option<String>,
    api_key: Option<String>,
    shared_secret: Option<String>,
}

struct PermissionRow {
    id: String,
    client_id: String,
    route_id: String,
    methods: Option<Vec<Option<String>>>,
}

struct LimitRow {
    client_id: String,
    per_day: Option<i64>,
}

fn route_row(r: &Row) -> Result<RouteRow, tokio_postgres::Error> {
    Ok(RouteRow {
        id: r.try_get(0)?,
        pattern: r.try_get(1)?,
        domain: r.try_get(2)?,
        service: r.try_get(3)?,
        methods: r.try_get(4)?,
    })
}

fn client_row(r: &Row) -> Result<ClientRow, tokio_postgres::Error> {
    Ok(ClientRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        status: r.try_get(2)?,
        api_key: r.try_get(3)?,
        shared_secret: r.try_get(4)?,
    })
}

fn permission_row(r: &Row) -> Result<PermissionRow, tokio_postgres::Error> {
    Ok(PermissionRow {
        id: r.try_get(0)?,
        client_id: r.try_get(1)?,
        route_id: r.try_get(2)?,
        methods: r.try_get(3)?,
    })
}

fn limit_row(r: &Row) -> Result<LimitRow, tokio_postgres::Error> {
    Ok(LimitRow {
        client_id: r.try_get(0)?,
        per_day: r.try_get(1)?,
    })
}

// ---- Mapping. --------------------------------------------------------------

#[derive(Default)]
struct Importer {
    doc: Document,
    report: Report,
    /// (domain, path) → the route that holds it.
    places: HashMap<(DomainPattern, PathPattern), RouteId>,
    routes: HashSet<RouteId>,
    /// Client id → its index in `doc.clients`.
    clients: HashMap<ClientId, usize>,
    key_ids: HashSet<KeyId>,
    /// Key digest → the client that has it.
    digests: HashMap<Digest, ClientId>,
    grants: HashSet<(ClientId, RouteId)>,
}

impl Importer {
    fn skip(&mut self, table: &'static str, id: impl Into<String>, reason: impl Into<String>) {
        self.report.skipped.push(Skipped {
            table,
            id: id.into(),
            reason: reason.into(),
        });
    }

    fn route(&mut self, row: RouteRow) {
        match self.place(&row) {
            Ok((id, domain, path)) => {
                let route = self.route_at(id, row, domain, path);
                self.routes.insert(route.id.clone());
                self.doc.routes.push(route);
                self.report.routes += 1;
            }
            Err(reason) => self.skip("routes", row.id, reason),
        }
    }

    /// The route's id and (domain, path), the place claimed for it; why
    /// not, when it cannot be imported at all.
    fn place(&mut self, row: &RouteRow) -> Result<(RouteId, DomainPattern, PathPattern), Invalid> {
        let id = RouteId::parse(&row.id).ok();
        let Some(id) = id.filter(|id| !self.routes.contains(id)) else {
            return Err("the id is not a UUID or appears twice".into());
        };
        let pattern = row.pattern.as_deref().unwrap_or_default();
        let path = PathPattern::parse(pattern)
            .map_err(|e| format!("route_pattern `{}`: {e}", pattern.escape_debug()))?;
        let domain_text = row.domain.as_deref().unwrap_or_default();
        let domain = DomainPattern::parse(domain_text)
            .map_err(|e| format!("domain `{}`: {e}", domain_text.escape_debug()))?;
        let place = (domain, path);
        if let Some(first) = self.places.get(&place) {
            return Err(format!(
                "route {first} already has domain `{}` and path `{}` (compared lower-case)",
                place.0, place.1
            )
            .into());
        }
        self.places.insert(place.clone(), id.clone());
        let (domain, path) = place;
        Ok((id, domain, path))
    }

    fn route_at(
        &mut self,
        id: RouteId,
        row: RouteRow,
        domain: DomainPattern,
        path: PathPattern,
    ) -> Route {
        if let PathPattern::Prefix(stem) = &path {
            if !stem.is_empty() {
                self.report.narrowed.push(format!(
                    "route {id} `{path}`: matches `{stem}` and below `{stem}/` only; \
                     the old service also matched any path starting with `{stem}` (e.g. `{stem}X`)"
                ));
            }
        }
        let service = self.service(&id, row.service.as_deref().unwrap_or_default());
        Route {
            methods: self.methods(&id, row.methods.as_deref()),
            id,
            domain,
            path,
            service: service.into(),
            priority: 0,
            any_method: None,
        }
    }

    fn service(&mut self, route: &str, raw: &str) -> String {
        let label = service_label(raw);
        if label != raw {
            self.report.adjusted.push(format!(
                "route {route}: service `{}` → `{label}` (labels are [A-Za-z0-9._-], 1 to 64)",
                raw.escape_debug()
            ));
        }
        label
    }

    /// The method rules; an entry that cannot be read is left out (so that
    /// method is refused) and reported.
    fn methods(&mut self, route: &str, json: Option<&str>) -> BTreeMap<Method, MethodRule> {
        let parsed = json.and_then(|j| serde_json::from_str::<Value>(j).ok());
        let Some(Value::Object(entries)) = parsed else {
            self.skip(
                "routes",
                format!("{route} methods"),
                "`methods` is not a JSON object: every method of the route is refused",
            );
            return BTreeMap::new();
        };
        let mut rules = BTreeMap::new();
        for (name, spec) in &entries {
            let mapped = Method::parse(name)
                .ok_or_else(|| Invalid::from("not an upper-case HTTP method"))
                .and_then(|m| method_rule(spec).map(|rule| (m, rule)));
            match mapped {
                Ok((method, rule)) => {
                    self.note_change(route, &method, rule);
                    rules.insert(method, rule.into());
                }
                Err(why) => self.skip(
                    "routes",
                    format!("{route} {}", name.escape_debug()),
                    format!("{why}: the method is refused"),
                ),
            }
        }
        rules
    }

    fn note_change(&mut self, route: &str, method: &Method, rule: Mapped) {
        match rule {
            Mapped::Public => {}
            Mapped::AnyCredential => self.report.widened.push(format!(
                "route {route} {method}: auth_required without auth_type (any credential) → \
                 accepts api_key or hmac, each verified"
            )),
            Mapped::Only(t) => self.report.narrowed.push(format!(
                "route {route} {method}: auth_type {t} → only {t}; the old service also \
                 accepted any other credential here",
                t = t.as_str()
            )),
        }
    }

    fn client(&mut self, row: ClientRow) {
        let ClientRow {
            id,
            name,
            status,
            api_key,
            shared_secret,
        } = row;
        let name = name.unwrap_or_default();
        if name.trim().is_empty() {
            return self.skip("clients", id, "client_name is empty");
        }
        let status_text = status.unwrap_or_default();
        let Some(status) = ClientStatus::parse(&status_text) else {
            let why = format!(
                "status `{}` is not active, suspended or revoked",
                status_text.escape_debug()
            );
            return self.skip("clients", id, why);
        };
        let parsed = ClientId::parse(&id).ok();
        let Some(id) = parsed.filter(|id| !self.clients.contains_key(id)) else {
            return self.skip("clients", id, "the id is not a UUID or appears twice");
        };
        let hmac_secret = shared_secret.and_then(|s| self.hmac_secret(&id, s));
        if let Some(key) = api_key {
            self.api_key(&id, &key);
        }
        self.clients.insert(id.clone(), self.doc.clients.len());
        self.doc.clients.push(Client {
            id,
            name: name.into(),
            status,
            limit: None,
            secret_hash: None,
            hmac_secret,
        });
        self.report.clients += 1;
    }

    fn hmac_secret(&mut self, client: &str, secret: String) -> Option<Secret> {
        if secret.is_empty() {
            self.skip("clients", format!("{client} shared_secret"), "empty");
            return None;
        }
        self.report.hmac_secrets += 1;
        Some(Secret::new(secret.into_bytes()))
    }

    fn api_key(&mut self, client: &ClientId, key: &str) {
        let table = "clients";
        let what = format!("{client} api_key");
        if let Err(why) = classify(key) {
            return self.skip(table, what, format!("{why}: no request could present it"));
        }
        let digest = Digest::of(key.as_bytes());
        if let Some(owner) = self.digests.get(&digest) {
            let why = format!("client {owner} has the same API key");
            return self.skip(table, what, why);
        }
        let Some(id) = self.key_id(client) else {
            return self.skip(table, what, "no free key id `legacy-…` for this client id");
        };
        self.digests.insert(digest, client.clone());
        self.key_ids.insert(id.clone());
        self.doc.keys.push(KeyRecord {
            id,
            client_id: client.clone(),
            digest,
            status: KeyStatus::Active,
            expires_at: None,
        });
        self.report.keys += 1;
    }

    /// `legacy-<first 8 characters of the client id>`, or the whole id
    /// should two clients share those 8.
    fn key_id(&self, client: &str) -> Option<KeyId> {
        let short: String = client.chars().take(8).collect();
        [format!("legacy-{short}"), format!("legacy-{client}")]
            .into_iter()
            .filter_map(|id| KeyId::parse(&id).ok())
            .find(|id| !self.key_ids.contains(id))
    }

    fn grant(&mut self, row: PermissionRow) {
        const TABLE: &str = "client_permissions";
        let client = self.clients.get_key_value(row.client_id.as_str());
        let Some(client) = client.map(|(id, _)| id.clone()) else {
            let why = format!("client {} was not imported", row.client_id);
            return self.skip(TABLE, row.id, why);
        };
        let Some(route) = self.routes.get(row.route_id.as_str()).cloned() else {
            let why = format!("route {} was not imported", row.route_id);
            return self.skip(TABLE, row.id, why);
        };
        if !self.grants.insert((client.clone(), route.clone())) {
            return self.skip(
                TABLE,
                row.id,
                "a second permission of this client on this route",
            );
        }
        let methods = self.grant_methods(&row.id, row.methods.unwrap_or_default());
        if methods.is_empty() {
            return self.skip(TABLE, row.id, "no allowed method: it would allow nothing");
        }
        self.doc.grants.push(Grant {
            client_id: client,
            route_id: route,
            methods: GrantMethods::Only(methods),
            models: None,
            limit: None,
        });
        self.report.grants += 1;
    }

    fn grant_methods(&mut self, permission: &str, names: Vec<Option<String>>) -> Vec<Method> {
        let mut methods = Vec::with_capacity(names.len());
        for name in names {
            match name.as_deref().and_then(Method::parse) {
                Some(m) if methods.contains(&m) => {}
                Some(m) => methods.push(m),
                None => self.skip(
                    "client_permissions",
                    format!("{permission} {}", name.unwrap_or_default().escape_debug()),
                    "not an upper-case HTTP method: it is not allowed",
                ),
            }
        }
        methods
    }

    fn limit(&mut self, row: LimitRow) {
        const TABLE: &str = "rate_limits";
        let Some(&idx) = self.clients.get(row.client_id.as_str()) else {
            return self.skip(TABLE, row.client_id, "the client was not imported");
        };
        let Some(count) = row
            .per_day
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
        else {
            let why = format!("requests_per_day {:?} is not a positive count", row.per_day);
            return self.skip(TABLE, row.client_id, why);
        };
        let client = &mut self.doc.clients[idx];
        if client.limit.is_some() {
            return self.skip(TABLE, row.client_id, "a second limit for this client");
        }
        client.limit = Some(Limit {
            count,
            window: DAY,
            burst: count,
        });
        self.report.limits += 1;
    }
}

/// What one entry of a route's `methods` object maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapped {
    Public,
    /// `auth_required` with no `auth_type`: API key or HMAC.
    AnyCredential,
    Only(CredentialType),
}

impl From<Mapped> for MethodRule {
    fn from(m: Mapped) -> MethodRule {
        match m {
            Mapped::Public => MethodRule::Public,
            Mapped::AnyCredential => MethodRule::Credentials(
                CredentialSet::EMPTY
                    .with(CredentialType::ApiKey)
                    .with(CredentialType::Hmac),
            ),
            Mapped::Only(t) => MethodRule::Credentials(CredentialSet::EMPTY.with(t)),
        }
    }
}

/// `{"auth_required": bool, "auth_type": null | "api_key" | "hmac"}`.
fn method_rule(spec: &Value) -> Result<Mapped, Invalid> {
    let required = spec
        .get("auth_required")
        .and_then(Value::as_bool)
        .ok_or("`auth_required` is missing or not true/false")?;
    if !required {
        return Ok(Mapped::Public);
    }
    match spec.get("auth_type") {
        None | Some(Value::Null) => Ok(Mapped::AnyCredential),
        Some(Value::String(t)) if t == "api_key" => Ok(Mapped::Only(CredentialType::ApiKey)),
        Some(Value::String(t)) if t == "hmac" => Ok(Mapped::Only(CredentialType::Hmac)),
        Some(other) => Err(format!("auth_type {other} is not null, api_key or hmac").into()),
    }
}

/// `raw` with every character outside `[A-Za-z0-9._-]` replaced by `-`,
/// cut to 64 characters; `unnamed` when empty.
fn service_label(raw: &str) -> String {
    let keep = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let label: String = raw
        .chars()
        .take(64)
        .map(|c| if keep(c) { c } else { '-' })
        .collect();
    match label.is_empty() {
        true => UNNAMED_SERVICE.to_owned(),
        false => label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn method_entries_map_to_rules() {
        let cases = [
            (json!({"auth_required": false}), Ok(Mapped::Public)),
            (
                json!({"auth_required": false, "auth_type": "hmac"}),
                Ok(Mapped::Public),
            ),
            (json!({"auth_required": true}), Ok(Mapped::AnyCredential)),
            (
                json!({"auth_required": true, "auth_type": null}),
                Ok(Mapped::AnyCredential),
            ),
            (
                json!({"auth_required": true, "auth_type": "api_key"}),
                Ok(Mapped::Only(CredentialType::ApiKey)),
            ),
            (
                json!({"auth_required": true, "auth_type": "hmac"}),
                Ok(Mapped::Only(CredentialType::Hmac)),
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(method_rule(&spec), expected, "{spec}");
        }
    }

    #[test]
    fn unreadable_method_entries_are_errors() {
        for spec in [
            json!({"auth_required": true, "auth_type": "jwt"}),
            json!({"auth_required": "yes"}),
            json!({}),
            json!(true),
        ] {
            assert!(method_rule(&spec).is_err(), "{spec}");
        }
    }

    #[test]
    fn service_labels_keep_allowed_characters_and_replace_the_rest() {
        assert_eq!(service_label("ollama-api_v1.2"), "ollama-api_v1.2");
        assert_eq!(service_label("open data/ü"), "open-data--");
        assert_eq!(service_label(""), UNNAMED_SERVICE);
        assert_eq!(service_label(&"x".repeat(70)).len(), 64);
    }
}
