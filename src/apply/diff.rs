//! The difference between the database and the file, by id: the plan a
//! person reads and the writes that carry it out, in an order the foreign
//! keys accept (deletes first, children before parents; then routes,
//! clients, keys, grants).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::text::{
    arrow, expiry_text, limit_text, methods_set, methods_text, models_set, models_text, place,
};
use super::{Change, Plan};
use crate::core::model::{
    Client, ClientId, ClientStatus, Document, Grant, KeyId, KeyRecord, KeyStatus, Limit, Route,
    RouteId, Secret,
};

/// What the plan lists for a row the file leaves out without `--prune`.
pub const KEPT: &str = "not in the file (kept; --prune deletes)";

/// Which column of `gk_client_secrets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretColumn {
    Basic,
    Hmac,
}

/// One write. Each is issued only when it changes something.
#[derive(Debug)]
pub enum Op {
    DeleteGrant(ClientId, RouteId),
    DeleteKey(KeyId),
    DeleteClient(ClientId),
    DeleteRoute(RouteId),
    UpdateRoute(Route),
    CreateRoute(Route),
    CreateClient(Client),
    RenameClient(ClientId, Arc<str>),
    SetClientStatus(ClientId, ClientStatus),
    /// Client-wide (`route` None) or a grant's limit; `None` removes it.
    SetLimit(ClientId, Option<RouteId>, Option<Limit>),
    SetBasic(ClientId, Arc<str>),
    SetHmac(ClientId, Secret),
    /// Sets one secret column to NULL; the other stays.
    NullSecret(ClientId, SecretColumn),
    /// Deletes the client's secrets row.
    ClearSecrets(ClientId),
    /// A new client or digest for an existing key id.
    MoveKey(KeyRecord),
    SetKeyStatus(KeyId, KeyStatus),
    SetKeyExpiry(KeyId, Option<i64>),
    CreateKey(KeyRecord),
    UpdateGrant(Grant),
    CreateGrant(Grant),
}

#[derive(Default)]
struct Builder {
    plan: Plan,
    deletes: Vec<Op>,
    routes: Vec<Op>,
    clients: Vec<Op>,
    keys: Vec<Op>,
    grants: Vec<Op>,
    prune: bool,
}

fn change(kind: &'static str, id: &str, detail: impl Into<String>) -> Change {
    Change {
        kind,
        id: id.to_owned(),
        detail: detail.into(),
    }
}

impl Builder {
    fn create(&mut self, kind: &'static str, id: &str, detail: impl Into<String>) {
        self.plan.create.push(change(kind, id, detail));
    }

    fn update(&mut self, kind: &'static str, id: &str, details: &[String]) {
        self.plan.update.push(change(kind, id, details.join(", ")));
    }

    /// A row the file does not have: deleted with `--prune`, else kept and
    /// listed. Returns whether it is deleted.
    fn absent(&mut self, kind: &'static str, id: &str, detail: impl Into<String>) -> bool {
        match self.prune {
            true => self.plan.delete.push(change(kind, id, detail)),
            false => self.plan.kept.push(change(kind, id, KEPT)),
        }
        self.prune
    }
}

/// The plan and the writes turning `current` into `wanted`.
pub fn diff(current: &Document, wanted: &Document, prune: bool) -> (Plan, Vec<Op>) {
    let mut b = Builder {
        prune,
        ..Builder::default()
    };
    grants_absent(&mut b, current, wanted);
    keys_absent(&mut b, current, wanted);
    clients_absent(&mut b, current, wanted);
    routes_absent(&mut b, current, wanted);
    routes(&mut b, current, wanted);
    clients(&mut b, current, wanted);
    keys(&mut b, current, wanted);
    grants(&mut b, current, wanted);
    let Builder {
        plan,
        deletes,
        routes,
        clients,
        keys,
        grants,
        ..
    } = b;
    let ops = [deletes, routes, clients, keys, grants]
        .into_iter()
        .flatten();
    (plan, ops.collect())
}

fn by_id<T, K: Ord>(items: &[T], id: impl Fn(&T) -> &K) -> BTreeMap<&K, &T> {
    items.iter().map(|item| (id(item), item)).collect()
}

fn grant_name(client: &ClientId, route: &RouteId) -> String {
    format!("{client} → {route}")
}

fn grants_by_pair(grants: &[Grant]) -> BTreeMap<(&ClientId, &RouteId), &Grant> {
    grants
        .iter()
        .map(|g| ((&g.client_id, &g.route_id), g))
        .collect()
}

fn grants_absent(b: &mut Builder, current: &Document, wanted: &Document) {
    let want = grants_by_pair(&wanted.grants);
    for g in &current.grants {
        if !want.contains_key(&(&g.client_id, &g.route_id))
            && b.absent("grant", &grant_name(&g.client_id, &g.route_id), "")
        {
            b.deletes
                .push(Op::DeleteGrant(g.client_id.clone(), g.route_id.clone()));
        }
    }
}

fn keys_absent(b: &mut Builder, current: &Document, wanted: &Document) {
    let want = by_id(&wanted.keys, |k| &k.id);
    for k in &current.keys {
        if !want.contains_key(&k.id) && b.absent("key", &k.id, format!("client {}", k.client_id)) {
            b.deletes.push(Op::DeleteKey(k.id.clone()));
        }
    }
}

fn clients_absent(b: &mut Builder, current: &Document, wanted: &Document) {
    let want = by_id(&wanted.clients, |c| &c.id);
    for c in &current.clients {
        if !want.contains_key(&c.id) && b.absent("client", &c.id, "") {
            b.deletes.push(Op::DeleteClient(c.id.clone()));
        }
    }
}

fn routes_absent(b: &mut Builder, current: &Document, wanted: &Document) {
    let want = by_id(&wanted.routes, |r| &r.id);
    for r in &current.routes {
        if !want.contains_key(&r.id) && b.absent("route", &r.id, place(r)) {
            b.deletes.push(Op::DeleteRoute(r.id.clone()));
        }
    }
}

fn routes(b: &mut Builder, current: &Document, wanted: &Document) {
    let have = by_id(&current.routes, |r| &r.id);
    for r in &wanted.routes {
        let Some(old) = have.get(&r.id) else {
            b.create("route", &r.id, place(r));
            b.routes.push(Op::CreateRoute(r.clone()));
            continue;
        };
        let mut details = Vec::new();
        if old.domain != r.domain {
            details.push(arrow("domain", &old.domain, &r.domain));
        }
        if old.path != r.path {
            details.push(arrow("path", &old.path, &r.path));
        }
        if old.service != r.service {
            details.push(arrow("service", &old.service, &r.service));
        }
        if old.priority != r.priority {
            details.push(arrow("priority", old.priority, r.priority));
        }
        if old.methods != r.methods || old.any_method != r.any_method {
            details.push(arrow("methods", methods_text(old), methods_text(r)));
        }
        if !details.is_empty() {
            b.update("route", &r.id, &details);
            b.routes.push(Op::UpdateRoute(r.clone()));
        }
    }
}

fn clients(b: &mut Builder, current: &Document, wanted: &Document) {
    let have = by_id(&current.clients, |c| &c.id);
    for c in &wanted.clients {
        let Some(old) = have.get(&c.id) else {
            let mut detail = format!("{:?}, {}", &*c.name, c.status.as_str());
            if c.limit.is_some() {
                detail.push_str(&format!(", limit {}", limit_text(c.limit.as_ref())));
            }
            b.create("client", &c.id, detail);
            b.clients.push(Op::CreateClient(c.clone()));
            if c.limit.is_some() {
                b.clients.push(Op::SetLimit(c.id.clone(), None, c.limit));
            }
            secrets(b, &c.id, (None, None), c);
            continue;
        };
        let mut details = Vec::new();
        if old.name != c.name {
            details.push(format!("name {:?} → {:?}", &*old.name, &*c.name));
            b.clients
                .push(Op::RenameClient(c.id.clone(), c.name.clone()));
        }
        if old.status != c.status {
            details.push(arrow("status", old.status.as_str(), c.status.as_str()));
            b.clients.push(Op::SetClientStatus(c.id.clone(), c.status));
        }
        if !details.is_empty() {
            b.update("client", &c.id, &details);
        }
        if old.limit != c.limit {
            let text = arrow(
                "limit",
                limit_text(old.limit.as_ref()),
                limit_text(c.limit.as_ref()),
            );
            b.update("limit", &c.id, &[text]);
            b.clients.push(Op::SetLimit(c.id.clone(), None, c.limit));
        }
        secrets(
            b,
            &c.id,
            (old.secret_hash.as_ref(), old.hmac_secret.as_ref()),
            c,
        );
    }
}

/// The client's Basic hash and HMAC secret: set where the file has one
/// that differs; removed, when the file has none, only with `--prune`
/// (secrets are often set with the CLI rather than kept in a file).
fn secrets(b: &mut Builder, id: &ClientId, old: (Option<&Arc<str>>, Option<&Secret>), c: &Client) {
    let (old_basic, old_hmac) = old;
    let mut basic = old_basic.cloned();
    let mut hmac = old_hmac.is_some();
    match (&c.secret_hash, old_basic) {
        (Some(new), Some(have)) if new == have => {}
        (Some(new), have) => {
            match have {
                Some(_) => b.update("secret", id, &["basic secret hash changed".into()]),
                None => b.create("secret", id, "basic"),
            }
            b.clients.push(Op::SetBasic(id.clone(), new.clone()));
            basic = Some(new.clone());
        }
        (None, Some(_)) => {
            if b.absent("secret", id, "basic") {
                basic = None;
            }
        }
        (None, None) => {}
    }
    match (&c.hmac_secret, old_hmac) {
        (Some(new), Some(have)) if new == have => {}
        (Some(new), have) => {
            match have {
                Some(_) => b.update("secret", id, &["hmac secret changed".into()]),
                None => b.create("secret", id, "hmac"),
            }
            b.clients.push(Op::SetHmac(id.clone(), new.clone()));
            hmac = true;
        }
        (None, Some(_)) => {
            if b.absent("secret", id, "hmac") {
                hmac = false;
            }
        }
        (None, None) => {}
    }
    let had_any = old_basic.is_some() || old_hmac.is_some();
    if basic.is_none() && !hmac {
        if had_any {
            b.clients.push(Op::ClearSecrets(id.clone()));
        }
        return;
    }
    if old_basic.is_some() && basic.is_none() {
        b.clients
            .push(Op::NullSecret(id.clone(), SecretColumn::Basic));
    }
    if old_hmac.is_some() && !hmac {
        b.clients
            .push(Op::NullSecret(id.clone(), SecretColumn::Hmac));
    }
}

fn keys(b: &mut Builder, current: &Document, wanted: &Document) {
    let have = by_id(&current.keys, |k| &k.id);
    for k in &wanted.keys {
        let Some(old) = have.get(&k.id) else {
            let mut detail = format!("client {}, {}", k.client_id, k.status.as_str());
            if k.expires_at.is_some() {
                detail.push_str(&format!(", expires {}", expiry_text(k.expires_at)));
            }
            b.create("key", &k.id, detail);
            b.keys.push(Op::CreateKey(k.clone()));
            continue;
        };
        let mut details = Vec::new();
        if old.client_id != k.client_id || old.digest != k.digest {
            if old.client_id != k.client_id {
                details.push(arrow("client", &old.client_id, &k.client_id));
            }
            if old.digest != k.digest {
                details.push("digest changed".into());
            }
            b.keys.push(Op::MoveKey(k.clone()));
        }
        if old.status != k.status {
            details.push(arrow("status", old.status.as_str(), k.status.as_str()));
            b.keys.push(Op::SetKeyStatus(k.id.clone(), k.status));
        }
        if old.expires_at != k.expires_at {
            details.push(arrow(
                "expires",
                expiry_text(old.expires_at),
                expiry_text(k.expires_at),
            ));
            b.keys.push(Op::SetKeyExpiry(k.id.clone(), k.expires_at));
        }
        if !details.is_empty() {
            b.update("key", &k.id, &details);
        }
    }
}

fn grants(b: &mut Builder, current: &Document, wanted: &Document) {
    let have = grants_by_pair(&current.grants);
    for g in &wanted.grants {
        let name = grant_name(&g.client_id, &g.route_id);
        let Some(old) = have.get(&(&g.client_id, &g.route_id)) else {
            let mut detail = format!(
                "methods {}, models {}",
                methods_set(&g.methods).join(","),
                models_text(g)
            );
            if g.limit.is_some() {
                detail.push_str(&format!(", limit {}", limit_text(g.limit.as_ref())));
            }
            b.create("grant", &name, detail);
            b.grants.push(Op::CreateGrant(g.clone()));
            continue;
        };
        let mut details = Vec::new();
        let (old_methods, new_methods) = (methods_set(&old.methods), methods_set(&g.methods));
        if old_methods != new_methods {
            details.push(arrow(
                "methods",
                old_methods.join(","),
                new_methods.join(","),
            ));
        }
        if models_set(old) != models_set(g) {
            details.push(arrow("models", models_text(old), models_text(g)));
        }
        let limit_changed = old.limit != g.limit;
        let limit_detail = arrow(
            "limit",
            limit_text(old.limit.as_ref()),
            limit_text(g.limit.as_ref()),
        );
        if !details.is_empty() {
            // `update_grant` writes the grant's limit too.
            if limit_changed {
                details.push(limit_detail);
            }
            b.update("grant", &name, &details);
            b.grants.push(Op::UpdateGrant(g.clone()));
        } else if limit_changed {
            b.update("limit", &name, &[limit_detail]);
            b.grants.push(Op::SetLimit(
                g.client_id.clone(),
                Some(g.route_id.clone()),
                g.limit,
            ));
        }
    }
}
