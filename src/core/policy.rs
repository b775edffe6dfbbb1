//! The policy snapshot — routes, clients, keys and grants indexed for the
//! hot path — and the pure steps of a decision that read it.
//!
//! A snapshot is immutable: a reload builds a new one and swaps it in whole,
//! so a decision never sees half a configuration. Nothing here does I/O or
//! reads the clock; the caller passes time in.

use std::borrow::Cow;
use std::collections::HashMap;

use super::body::{models_in_body, models_in_target};
use super::credential::Presented;
use super::decision::{Deny, Reason};
use super::glob::Glob;
use super::ids::{ClientId, KeyId, RouteId};
use super::limiter::{Charge, LimitKey};
use super::model::{
    Client, ClientStatus, CredentialSet, Digest, Document, Grant, KeyRecord, KeyStatus, Method,
    MethodRule, Route,
};
use super::request::{AuthRequest, Body};
use super::routes::{DuplicateRoute, RouteTable};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(transparent)]
    DuplicateRoute(#[from] DuplicateRoute),
    #[error("client `{0}` is defined twice")]
    DuplicateClient(ClientId),
    #[error("key `{0}` is defined twice")]
    DuplicateKey(KeyId),
    #[error("keys `{0}` and `{1}` have the same digest")]
    DuplicateDigest(KeyId, KeyId),
    #[error("{what} refers to unknown client `{client}`")]
    UnknownClient { what: String, client: ClientId },
    #[error("grant of client `{client}` refers to unknown route `{route}`")]
    UnknownRoute { client: ClientId, route: RouteId },
    #[error("client `{client}` has two grants on route `{route}`")]
    DuplicateGrant { client: ClientId, route: RouteId },
}

/// A grant with its rate-limit key precomputed (no allocation per request).
#[derive(Debug)]
pub struct GrantEntry {
    pub grant: Grant,
    pub limit_key: LimitKey,
}

/// A client with its grants by route id. Roles, when they come, resolve into
/// this same per-route map at build time, so the check stays one look-up.
#[derive(Debug)]
pub struct ClientEntry {
    pub client: Client,
    pub limit_key: LimitKey,
    grants: HashMap<RouteId, GrantEntry>,
}

impl ClientEntry {
    pub fn grant(&self, route_id: &RouteId) -> Option<&GrantEntry> {
        self.grants.get(route_id)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub routes: usize,
    pub clients: usize,
    pub keys: usize,
    pub grants: usize,
}

/// For `check` and the logs: "2 routes, 2 clients, 3 keys, 2 grants".
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} routes, {} clients, {} keys, {} grants",
            self.routes, self.clients, self.keys, self.grants
        )
    }
}

#[derive(Debug)]
pub struct Policy {
    routes: RouteTable,
    clients: HashMap<ClientId, ClientEntry>,
    keys: HashMap<Digest, KeyRecord>,
    counts: Counts,
}

/// Where a request lands: the route and what its method requires.
#[derive(Clone, Copy, Debug)]
pub struct Target<'p> {
    pub route: &'p Route,
    pub rule: MethodRule,
}

/// A verified credential: the client, and the key when it was an API key
/// (borrowed from the snapshot, or fetched from the store on a miss).
#[derive(Clone, Debug)]
pub struct Verified<'p> {
    pub client: &'p ClientEntry,
    pub key: Option<Cow<'p, KeyRecord>>,
}

impl Policy {
    pub fn build(doc: Document) -> Result<Policy, PolicyError> {
        let counts = Counts {
            routes: doc.routes.len(),
            clients: doc.clients.len(),
            keys: doc.keys.len(),
            grants: doc.grants.len(),
        };
        let routes = RouteTable::build(doc.routes)?;
        let mut clients = index_clients(doc.clients)?;
        let keys = index_keys(doc.keys, &clients)?;
        attach_grants(doc.grants, &routes, &mut clients)?;
        Ok(Policy {
            routes,
            clients,
            keys,
            counts,
        })
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    pub fn client(&self, id: &ClientId) -> Option<&ClientEntry> {
        self.clients.get(id)
    }

    /// The key with this digest, and its client.
    pub fn key(&self, digest: &Digest) -> Option<Verified<'_>> {
        let key = self.keys.get(digest)?;
        let client = self.clients.get(&key.client_id)?;
        Some(Verified {
            client,
            key: Some(Cow::Borrowed(key)),
        })
    }

    /// Step 1: the route and the rule of its method.
    pub fn target(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> Result<Target<'_>, Deny> {
        let route = self
            .routes
            .lookup(host, path)
            .ok_or(Deny::new(Reason::NoRouteMatch))?;
        let rule = route
            .rule_for(method)
            .ok_or_else(|| Deny::new(Reason::MethodNotConfigured).on_route(&route.id))?;
        Ok(Target { route, rule })
    }
}

fn index_clients(clients: Vec<Client>) -> Result<HashMap<ClientId, ClientEntry>, PolicyError> {
    let mut out = HashMap::with_capacity(clients.len());
    for client in clients {
        let id = client.id.clone();
        let entry = ClientEntry {
            limit_key: LimitKey(format!("c:{id}").into()),
            client,
            grants: HashMap::new(),
        };
        if out.insert(id.clone(), entry).is_some() {
            return Err(PolicyError::DuplicateClient(id));
        }
    }
    Ok(out)
}

fn index_keys(
    keys: Vec<KeyRecord>,
    clients: &HashMap<ClientId, ClientEntry>,
) -> Result<HashMap<Digest, KeyRecord>, PolicyError> {
    let mut ids = std::collections::HashSet::with_capacity(keys.len());
    let mut out: HashMap<Digest, KeyRecord> = HashMap::with_capacity(keys.len());
    for key in keys {
        if !clients.contains_key(&key.client_id) {
            return Err(PolicyError::UnknownClient {
                what: format!("key `{}`", key.id),
                client: key.client_id,
            });
        }
        if !ids.insert(key.id.clone()) {
            return Err(PolicyError::DuplicateKey(key.id));
        }
        if let Some(other) = out.get(&key.digest) {
            return Err(PolicyError::DuplicateDigest(other.id.clone(), key.id));
        }
        out.insert(key.digest, key);
    }
    Ok(out)
}

fn attach_grants(
    grants: Vec<Grant>,
    routes: &RouteTable,
    clients: &mut HashMap<ClientId, ClientEntry>,
) -> Result<(), PolicyError> {
    for grant in grants {
        if routes.get(&grant.route_id).is_none() {
            return Err(PolicyError::UnknownRoute {
                client: grant.client_id,
                route: grant.route_id,
            });
        }
        let Some(entry) = clients.get_mut(&grant.client_id) else {
            return Err(PolicyError::UnknownClient {
                what: format!("grant on route `{}`", grant.route_id),
                client: grant.client_id,
            });
        };
        let route = grant.route_id.clone();
        let limit_key = LimitKey(format!("g:{}:{}", grant.client_id, route).into());
        if entry.grants.contains_key(&route) {
            return Err(PolicyError::DuplicateGrant {
                client: grant.client_id,
                route,
            });
        }
        entry.grants.insert(route, GrantEntry { grant, limit_key });
    }
    Ok(())
}

/// Step 2: is the presented credential of a type the method accepts? A
/// credential of the wrong type is refused before any work is done on it.
pub fn check_presented(accepts: CredentialSet, presented: &Presented<'_>) -> Result<(), Reason> {
    match (presented, presented.credential_type()) {
        (Presented::None, _) => Err(Reason::MissingCredentials),
        (_, Some(t)) if !accepts.contains(t) => Err(Reason::CredentialTypeNotAllowed),
        (Presented::Invalid(_), _) => Err(Reason::InvalidCredentials),
        _ => Ok(()),
    }
}

/// Step 3, after verification: key and client status, the grant, its
/// methods and models. Returns the limits to charge, the grant's first.
pub fn permit<'p>(
    who: Verified<'p>,
    route: &Route,
    req: &AuthRequest<'_>,
    now_unix: i64,
) -> Result<Vec<Charge<'p>>, Reason> {
    check_key(who.key.as_deref(), now_unix)?;
    check_client(&who.client.client)?;
    let grant = who.client.grant(&route.id).ok_or(Reason::NoPermission)?;
    if !grant.grant.methods.allows(&req.method) {
        return Err(Reason::MethodNotAllowed);
    }
    check_models(&grant.grant, req)?;
    Ok(charges(who.client, grant))
}

fn check_key(key: Option<&KeyRecord>, now_unix: i64) -> Result<(), Reason> {
    let Some(key) = key else { return Ok(()) };
    if key.status == KeyStatus::Revoked {
        return Err(Reason::KeyRevoked);
    }
    match key.expires_at {
        Some(at) if at <= now_unix => Err(Reason::KeyExpired),
        _ => Ok(()),
    }
}

fn check_client(client: &Client) -> Result<(), Reason> {
    match client.status {
        ClientStatus::Active => Ok(()),
        ClientStatus::Suspended => Err(Reason::ClientSuspended),
        ClientStatus::Revoked => Err(Reason::ClientRevoked),
    }
}

/// Under a grant with `models`, every model the request names must be on
/// the list (DESIGN §5, §11): those of the request target (`?model=`,
/// `/v1/models/<name>`), on any method, and those of the body, which must be
/// forwarded whenever there is one — on any method — and always for the
/// methods that carry one.
fn check_models(grant: &Grant, req: &AuthRequest<'_>) -> Result<(), Reason> {
    let Some(globs) = &grant.models else {
        return Ok(());
    };
    let allowed = |m: &String| globs.iter().any(|g| g.matches(m));
    let refused = |_| Reason::ModelNotAllowed;
    let path = &req.uri.path;
    let in_target = models_in_target(path, req.uri.query.as_deref()).map_err(refused)?;
    if !in_target.iter().all(allowed) {
        return Err(Reason::ModelNotAllowed);
    }
    let bytes = match req.body {
        Body::Forwarded(bytes) if !bytes.is_empty() || req.method.carries_body() => bytes,
        Body::NotForwarded { announced: true } => return Err(Reason::BodyRequired),
        Body::NotForwarded { announced: false } if req.method.carries_body() => {
            return Err(Reason::ModelNotAllowed)
        }
        _ => return Ok(()),
    };
    let named = models_in_body(path, bytes).map_err(refused)?;
    let everything = globs.iter().any(Glob::matches_everything);
    match named.models.iter().all(allowed) && (!named.weights || everything) {
        true => Ok(()),
        false => Err(Reason::ModelNotAllowed),
    }
}

fn charges<'p>(client: &'p ClientEntry, grant: &'p GrantEntry) -> Vec<Charge<'p>> {
    let grant_limit = grant.grant.limit.map(|limit| Charge {
        key: &grant.limit_key,
        limit,
    });
    let client_limit = client.client.limit.map(|limit| Charge {
        key: &client.limit_key,
        limit,
    });
    grant_limit.into_iter().chain(client_limit).collect()
}
