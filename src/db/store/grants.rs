//! Grants and limits (`gk_grants`, `gk_limits`). A client-wide limit has no
//! route; a route limit belongs to the client's grant on that route and is
//! deleted with it.

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use super::{
    grant_id, id_column, limit_columns, limit_from_columns, limit_text, StoreError, Subject,
};
use crate::core::glob::Glob;
use crate::core::model::{Grant, GrantMethods, Invalid, Limit, Method};

/// A grant as `grant list --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantRow {
    pub client_id: String,
    pub route_id: String,
    /// `["*"]` or method names.
    pub methods: Vec<String>,
    /// `None`: any model.
    pub models: Option<Vec<String>>,
    /// The grant's own limit, `60/60s`.
    pub limit: Option<String>,
    pub burst: Option<i32>,
}

/// A limit as `limit list --json` prints it; no route: client-wide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitRow {
    pub client_id: String,
    pub route_id: Option<String>,
    pub limit: String,
    pub burst: i32,
}

pub(super) const INSERT_GRANT: &str = "
INSERT INTO gk_grants (client_id, route_id, methods, models)
VALUES ($1::text, $2::text, $3::text[], $4::text[])";

pub(super) const UPDATE_GRANT: &str = "
UPDATE gk_grants SET methods = $3::text[], models = $4::text[]
 WHERE client_id = $1 AND route_id = $2";

pub(super) const DELETE_GRANT: &str =
    "DELETE FROM gk_grants WHERE client_id = $1 AND route_id = $2";

// The unique constraint treats NULL routes as equal, so a client has one
// client-wide limit and ON CONFLICT finds it.
pub(super) const UPSERT_LIMIT: &str = "
INSERT INTO gk_limits (client_id, route_id, count, window_secs, burst)
VALUES ($1::text, $2::text, $3, $4, $5)
ON CONFLICT (client_id, route_id)
DO UPDATE SET count = EXCLUDED.count, window_secs = EXCLUDED.window_secs,
              burst = EXCLUDED.burst";

pub(super) const DELETE_LIMIT: &str =
    "DELETE FROM gk_limits WHERE client_id = $1 AND route_id IS NOT DISTINCT FROM $2::text";

pub(super) const SELECT_GRANTS: &str = r#"
SELECT g.client_id, g.route_id, g.methods, g.models, l.count, l.window_secs, l.burst
  FROM gk_grants g
  LEFT JOIN gk_limits l ON l.client_id = g.client_id AND l.route_id = g.route_id
 WHERE $1::text IS NULL OR g.client_id = $1
 ORDER BY g.client_id COLLATE "C", g.route_id COLLATE "C""#;

pub(super) const SELECT_LIMITS: &str = r#"
SELECT client_id, route_id, count, window_secs, burst
  FROM gk_limits
 ORDER BY client_id COLLATE "C", route_id COLLATE "C" NULLS FIRST"#;

fn grant_subject<'a>(client: &'a str, route: &'a str, id: &'a str) -> Subject<'a> {
    Subject::new("gk_grants", id).client(client).route(route)
}

/// The grant and its limit, if any, in one transaction.
pub async fn create_grant(c: &mut impl GenericClient, grant: &Grant) -> Result<(), StoreError> {
    let id = grant_id(&grant.client_id, &grant.route_id);
    let at = grant_subject(&grant.client_id, &grant.route_id, &id);
    let (methods, models) = grant_columns(grant);
    let tx = c.transaction().await?;
    let params: [&(dyn ToSql + Sync); 4] =
        [&&*grant.client_id, &&*grant.route_id, &methods, &models];
    tx.execute(INSERT_GRANT, &params)
        .await
        .map_err(|e| at.error(e))?;
    if let Some(limit) = &grant.limit {
        upsert_limit(&tx, &grant.client_id, Some(&grant.route_id), limit).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Replaces the grant's methods, models and limit, in one transaction.
pub async fn update_grant(c: &mut impl GenericClient, grant: &Grant) -> Result<(), StoreError> {
    let id = grant_id(&grant.client_id, &grant.route_id);
    let at = grant_subject(&grant.client_id, &grant.route_id, &id);
    let (methods, models) = grant_columns(grant);
    let tx = c.transaction().await?;
    let params: [&(dyn ToSql + Sync); 4] =
        [&&*grant.client_id, &&*grant.route_id, &methods, &models];
    let updated = tx
        .execute(UPDATE_GRANT, &params)
        .await
        .map_err(|e| at.error(e))?;
    if updated == 0 {
        return Err(at.not_found("grant"));
    }
    let route = Some(&*grant.route_id);
    match &grant.limit {
        Some(limit) => upsert_limit(&tx, &grant.client_id, route, limit).await?,
        None => drop(
            tx.execute(DELETE_LIMIT, &[&&*grant.client_id, &route])
                .await?,
        ),
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes the grant and its route limit.
pub async fn delete_grant(
    c: &impl GenericClient,
    client: &str,
    route: &str,
) -> Result<(), StoreError> {
    let id = grant_id(client, route);
    match c.execute(DELETE_GRANT, &[&client, &route]).await? {
        0 => Err(grant_subject(client, route, &id).not_found("grant")),
        _ => Ok(()),
    }
}

/// Sets the client-wide limit (`route` None) or the limit on the client's
/// grant for `route`, replacing any there was.
pub async fn set_limit(
    c: &impl GenericClient,
    client: &str,
    route: Option<&str>,
    limit: Limit,
) -> Result<(), StoreError> {
    upsert_limit(c, client, route, &limit).await
}

async fn upsert_limit(
    c: &impl GenericClient,
    client: &str,
    route: Option<&str>,
    limit: &Limit,
) -> Result<(), StoreError> {
    let id = limit_id(client, route);
    let at = Subject::new("gk_limits", &id)
        .client(client)
        .route(route.unwrap_or(""));
    let (count, window, burst) = limit_columns(limit).map_err(|p| at.invalid(p))?;
    let params: [&(dyn ToSql + Sync); 5] = [&client, &route, &count, &window, &burst];
    c.execute(UPSERT_LIMIT, &params)
        .await
        .map_err(|e| at.error(e))?;
    Ok(())
}

pub async fn delete_limit(
    c: &impl GenericClient,
    client: &str,
    route: Option<&str>,
) -> Result<(), StoreError> {
    match c.execute(DELETE_LIMIT, &[&client, &route]).await? {
        0 => Err(StoreError::NotFound {
            what: "limit",
            id: limit_id(client, route),
        }),
        _ => Ok(()),
    }
}

/// `client` for a client-wide limit, `client/route` for a grant's.
fn limit_id(client: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => grant_id(client, route),
        None => client.to_owned(),
    }
}

fn grant_columns(grant: &Grant) -> (Vec<&str>, Option<Vec<&str>>) {
    let methods = match &grant.methods {
        GrantMethods::Any => vec!["*"],
        GrantMethods::Only(list) => list.iter().map(Method::as_str).collect(),
    };
    let models = grant
        .models
        .as_ref()
        .map(|globs| globs.iter().map(Glob::as_str).collect());
    (methods, models)
}

/// Every grant, or one client's, by client and route.
pub async fn list_grants(
    c: &impl GenericClient,
    client: Option<&str>,
) -> Result<Vec<GrantRow>, StoreError> {
    let rows = c.query(SELECT_GRANTS, &[&client]).await?;
    rows.iter().map(grant_row).collect()
}

pub(super) fn grant_row(row: &Row) -> Result<GrantRow, StoreError> {
    let count: Option<i32> = row.try_get(4)?;
    let window: Option<i32> = row.try_get(5)?;
    Ok(GrantRow {
        client_id: row.try_get(0)?,
        route_id: row.try_get(1)?,
        methods: row.try_get(2)?,
        models: row.try_get(3)?,
        limit: count.zip(window).map(|(n, w)| limit_text(n, w)),
        burst: row.try_get(6)?,
    })
}

/// Every limit, client-wide ones first within a client.
pub async fn list_limits(c: &impl GenericClient) -> Result<Vec<LimitRow>, StoreError> {
    let rows = c.query(SELECT_LIMITS, &[]).await?;
    let limit_row = |row: &Row| -> Result<LimitRow, StoreError> {
        Ok(LimitRow {
            client_id: row.try_get(0)?,
            route_id: row.try_get(1)?,
            limit: limit_text(row.try_get(2)?, row.try_get(3)?),
            burst: row.try_get(4)?,
        })
    };
    rows.iter().map(limit_row).collect()
}

impl GrantRow {
    /// The model's grant, or `Invalid` naming what the model refuses.
    pub(super) fn to_grant(&self, limit: Option<(i32, i32, i32)>) -> Result<Grant, StoreError> {
        let id = grant_id(&self.client_id, &self.route_id);
        let at = Subject::new("gk_grants", &id);
        let methods = parse_methods(&self.methods).map_err(|p| at.invalid(p))?;
        let models = match &self.models {
            None => None,
            Some(list) => Some(parse_models(list).map_err(|p| at.invalid(p))?),
        };
        let limit = limit
            .map(|(n, w, b)| limit_from_columns(n, w, b))
            .transpose()
            .map_err(|p| Subject::new("gk_limits", &id).invalid(p))?;
        Ok(Grant {
            client_id: id_column(&at, "client_id", &self.client_id)?,
            route_id: id_column(&at, "route_id", &self.route_id)?,
            methods,
            models,
            limit,
        })
    }
}

/// The limit columns of a grant row, for `to_grant`.
pub(super) fn grant_limit(row: &Row) -> Result<Option<(i32, i32, i32)>, StoreError> {
    let count: Option<i32> = row.try_get(4)?;
    let window: Option<i32> = row.try_get(5)?;
    let burst: Option<i32> = row.try_get(6)?;
    Ok(count.zip(window).zip(burst).map(|((n, w), b)| (n, w, b)))
}

/// `["*"]`, or methods; one listed twice counts once.
fn parse_methods(list: &[String]) -> Result<GrantMethods, Invalid> {
    if let [star] = list {
        if star == "*" {
            return Ok(GrantMethods::Any);
        }
    }
    let mut methods: Vec<Method> = Vec::with_capacity(list.len());
    for name in list {
        let m = Method::parse(name)
            .ok_or_else(|| format!("`{}` is not a method", name.escape_debug()))?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    match methods.is_empty() {
        true => Err("the grant allows no method".into()),
        false => Ok(GrantMethods::Only(methods)),
    }
}

fn parse_models(list: &[String]) -> Result<Vec<Glob>, Invalid> {
    if list.is_empty() {
        return Err("an empty model list allows no model".into());
    }
    let glob = |m: &String| {
        Glob::parse(m).map_err(|e| Invalid(format!("model `{}`: {e}", m.escape_debug())))
    };
    list.iter().map(glob).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grant_methods_read_star_alone_or_method_names() {
        assert_eq!(parse_methods(&strings(&["*"])), Ok(GrantMethods::Any));
        let get = Method::parse("GET").unwrap();
        assert_eq!(
            parse_methods(&strings(&["GET", "GET"])),
            Ok(GrantMethods::Only(vec![get]))
        );
        assert!(parse_methods(&[]).is_err());
        assert!(parse_methods(&strings(&["get"])).is_err());
        assert!(parse_methods(&strings(&["*", "GET"])).is_err());
    }

    #[test]
    fn models_the_glob_parser_refuses_are_reported_by_name() {
        assert_eq!(parse_models(&strings(&["llama3*"])).unwrap().len(), 1);
        assert!(parse_models(&[]).is_err());
        let err = parse_models(&strings(&["bad model"])).unwrap_err();
        assert!(err.0.contains("bad model"), "{err}");
    }

    #[test]
    fn limits_are_named_after_their_client_and_route() {
        assert_eq!(limit_id("team-a", None), "team-a");
        assert_eq!(limit_id("team-a", Some("chat")), "team-a/chat");
    }
}
