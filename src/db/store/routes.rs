//! Routes and their per-method rules (`gk_routes`, `gk_route_methods`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio_postgres::{GenericClient, Row};

use super::{id_column, StoreError, Subject};
use crate::core::model::{DomainPattern, Method, MethodRule, PathPattern, Route};

/// A route as `route list` / `route show --json` print it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteRow {
    pub id: String,
    pub domain: String,
    pub path: String,
    pub service: String,
    pub priority: i32,
    /// Method (or `*`) → accepted credential types (or `["public"]`).
    pub methods: BTreeMap<String, Vec<String>>,
}

// One row per (route, method); a route without methods comes once, with
// NULL method columns. `$1` NULL: every route.
pub(super) const SELECT_ROUTES: &str = r#"
SELECT r.id, r.domain, r.path, r.service, r.priority, m.method, m.credentials
  FROM gk_routes r
  LEFT JOIN gk_route_methods m ON m.route_id = r.id
 WHERE $1::text IS NULL OR r.id = $1
 ORDER BY r.id COLLATE "C", m.method COLLATE "C""#;

pub(super) const INSERT_ROUTE: &str = "
INSERT INTO gk_routes (id, domain, path, service, priority)
VALUES ($1::text, $2, $3, $4, $5)";

pub(super) const UPDATE_ROUTE: &str = "
UPDATE gk_routes
   SET domain = $2, path = $3, service = $4, priority = $5, updated_at = now()
 WHERE id = $1";

pub(super) const DELETE_ROUTE_METHODS: &str = "DELETE FROM gk_route_methods WHERE route_id = $1";

// Credential lists travel comma-joined (a text[] of arrays would have to be
// two-dimensional and rectangular); their names never contain a comma.
pub(super) const INSERT_ROUTE_METHODS: &str = "
INSERT INTO gk_route_methods (route_id, method, credentials)
SELECT $1::text, m.method, string_to_array(m.credentials, ',')
  FROM unnest($2::text[], $3::text[]) AS m (method, credentials)";

pub(super) const DELETE_ROUTE: &str = "DELETE FROM gk_routes WHERE id = $1";

/// Every route with its methods, by id.
pub async fn list_routes(c: &impl GenericClient) -> Result<Vec<RouteRow>, StoreError> {
    select_routes(c, None).await
}

pub async fn get_route(c: &impl GenericClient, id: &str) -> Result<RouteRow, StoreError> {
    let mut rows = select_routes(c, Some(id)).await?;
    rows.pop()
        .ok_or_else(|| Subject::new("gk_routes", id).not_found("route"))
}

pub(super) async fn select_routes(
    c: &impl GenericClient,
    id: Option<&str>,
) -> Result<Vec<RouteRow>, StoreError> {
    let mut out: Vec<RouteRow> = Vec::new();
    for row in c.query(SELECT_ROUTES, &[&id]).await? {
        let id: String = row.try_get(0)?;
        if out.last().is_none_or(|last| last.id != id) {
            out.push(route_row(id, &row)?);
        }
        let method: Option<String> = row.try_get(5)?;
        let credentials: Option<Vec<String>> = row.try_get(6)?;
        if let (Some(method), Some(credentials), Some(last)) = (method, credentials, out.last_mut())
        {
            last.methods.insert(method, credentials);
        }
    }
    Ok(out)
}

fn route_row(id: String, row: &Row) -> Result<RouteRow, StoreError> {
    Ok(RouteRow {
        id,
        domain: row.try_get(1)?,
        path: row.try_get(2)?,
        service: row.try_get(3)?,
        priority: row.try_get(4)?,
        methods: BTreeMap::new(),
    })
}

impl RouteRow {
    /// The model's route, or `Invalid` naming what the model refuses.
    pub(super) fn to_route(&self) -> Result<Route, StoreError> {
        let at = Subject::new("gk_routes", &self.id);
        let domain = DomainPattern::parse(&self.domain)
            .map_err(|e| at.invalid(format!("domain `{}`: {e}", self.domain.escape_debug())))?;
        let path = PathPattern::parse(&self.path)
            .map_err(|e| at.invalid(format!("path `{}`: {e}", self.path.escape_debug())))?;
        let mut route = Route {
            id: id_column(&at, "id", &self.id)?,
            domain,
            path,
            service: Arc::from(self.service.as_str()),
            priority: self.priority,
            methods: BTreeMap::new(),
            any_method: None,
        };
        let at = Subject::new("gk_route_methods", &self.id);
        for (name, credentials) in &self.methods {
            let rule = MethodRule::parse(credentials)
                .map_err(|problem| at.invalid(format!("method {name}: {problem}")))?;
            if name == "*" {
                route.any_method = Some(rule);
                continue;
            }
            let method = Method::parse(name)
                .ok_or_else(|| at.invalid(format!("`{}` is not a method", name.escape_debug())))?;
            route.methods.insert(method, rule);
        }
        Ok(route)
    }
}

/// The method column and the comma-joined credentials column, `*` included.
fn method_columns(route: &Route) -> (Vec<String>, Vec<String>) {
    let explicit = route
        .methods
        .iter()
        .map(|(m, rule)| (m.as_str().to_owned(), rule.text()));
    let any = route.any_method.map(|rule| ("*".to_owned(), rule.text()));
    explicit.chain(any).unzip()
}

fn route_subject<'a>(route: &'a Route, place: &'a str) -> Subject<'a> {
    Subject::new("gk_routes", &route.id)
        .route(&route.id)
        .place(place)
}

/// Inserts the route and its method rules in one transaction.
pub async fn create_route(c: &mut impl GenericClient, route: &Route) -> Result<(), StoreError> {
    let place = format!("{}{}", route.domain, route.path);
    let at = route_subject(route, &place);
    let (domain, path) = (route.domain.to_string(), route.path.to_string());
    let tx = c.transaction().await?;
    tx.execute(
        INSERT_ROUTE,
        &[
            &&*route.id,
            &domain,
            &path,
            &&*route.service,
            &route.priority,
        ],
    )
    .await
    .map_err(|e| at.error(e))?;
    insert_methods(&tx, route, at).await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces the route's domain, path, service, priority and every method
/// rule, in one transaction.
pub async fn update_route(c: &mut impl GenericClient, route: &Route) -> Result<(), StoreError> {
    let place = format!("{}{}", route.domain, route.path);
    let at = route_subject(route, &place);
    let (domain, path) = (route.domain.to_string(), route.path.to_string());
    let tx = c.transaction().await?;
    let updated = tx
        .execute(
            UPDATE_ROUTE,
            &[
                &&*route.id,
                &domain,
                &path,
                &&*route.service,
                &route.priority,
            ],
        )
        .await
        .map_err(|e| at.error(e))?;
    if updated == 0 {
        return Err(at.not_found("route"));
    }
    tx.execute(DELETE_ROUTE_METHODS, &[&&*route.id]).await?;
    insert_methods(&tx, route, at).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert_methods(
    c: &impl GenericClient,
    route: &Route,
    at: Subject<'_>,
) -> Result<(), StoreError> {
    let (methods, credentials) = method_columns(route);
    c.execute(INSERT_ROUTE_METHODS, &[&&*route.id, &methods, &credentials])
        .await
        .map_err(|e| at.error(e))?;
    Ok(())
}

/// Deletes the route; its method rules, grants and route limits go with it.
pub async fn delete_route(c: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    match c.execute(DELETE_ROUTE, &[&id]).await? {
        0 => Err(Subject::new("gk_routes", id).not_found("route")),
        _ => Ok(()),
    }
}
