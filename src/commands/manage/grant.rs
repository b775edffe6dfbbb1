//! `gatekeeper grant …` and `gatekeeper limit …`: what a client may do on a
//! route, and how often.

use std::io::Write;

use clap::{Args, Subcommand};

use super::output::{json, or_dash, table};
use super::{connect, settings};
use crate::commands::{usage, CommandError};
use gatekeeper::core::glob::Glob;
use gatekeeper::core::model::{Grant, GrantMethods, Limit, Method};
use gatekeeper::db::store::{self, GrantRow, LimitRow};

#[derive(Subcommand, Debug)]
pub enum GrantCommand {
    /// Let a client call a route with some methods (`*`: any).
    Create {
        #[command(flatten)]
        target: GrantTarget,
        #[command(flatten)]
        fields: GrantFields,
        #[arg(long)]
        json: bool,
    },
    /// List every grant, or one client's.
    List {
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Change a grant: the flags given replace what was there.
    Update {
        #[command(flatten)]
        target: GrantTarget,
        #[command(flatten)]
        fields: GrantFields,
        /// Allow any model again.
        #[arg(long, conflicts_with = "models")]
        any_model: bool,
        /// Remove the grant's own limit.
        #[arg(long, conflicts_with_all = ["limit", "burst"])]
        no_limit: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a grant and its limit.
    Delete {
        #[command(flatten)]
        target: GrantTarget,
    },
}

#[derive(Args, Debug)]
pub struct GrantTarget {
    #[arg(long)]
    pub client: String,
    #[arg(long)]
    pub route: String,
}

#[derive(Args, Debug, Default)]
pub struct GrantFields {
    /// `GET`, `POST`, … or `*`; repeat per method.
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Model globs (`llama3*`); repeat per glob. None: any model.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// `60/1m`, `10000/1d`.
    #[arg(long)]
    pub limit: Option<String>,
    #[arg(long, requires = "limit")]
    pub burst: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum LimitCommand {
    /// Set (or replace) a client's limit, or its limit on one route.
    Set {
        #[arg(long)]
        client: String,
        #[arg(long)]
        route: Option<String>,
        /// `600/1m`, `10000/1d`.
        limit: String,
        #[arg(long)]
        burst: Option<u32>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        #[arg(long)]
        client: String,
        #[arg(long)]
        route: Option<String>,
    },
}

pub async fn grant(cmd: GrantCommand) -> Result<(), CommandError> {
    run_grant(cmd, &settings()?.database_url, &mut std::io::stdout()).await
}

pub async fn limit(cmd: LimitCommand) -> Result<(), CommandError> {
    run_limit(cmd, &settings()?.database_url, &mut std::io::stdout()).await
}

pub async fn run_grant(
    cmd: GrantCommand,
    url: &str,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let mut c = connect(url).await?;
    match cmd {
        GrantCommand::Create {
            target,
            fields,
            json,
        } => {
            if fields.methods.is_empty() {
                return Err(usage("grant create: give at least one --method (`*`: any)"));
            }
            // The ids last, failing as the database's `gk_id` check fails them.
            let name = format!("{}/{}", target.client, target.route);
            let refused = || store::refused_id("gk_grants", &name);
            let grant = Grant {
                methods: parse_methods(&fields.methods)?,
                models: parse_models(&fields.models)?,
                limit: parse_limit(fields.limit.as_deref(), fields.burst)?,
                client_id: target.client.parse().map_err(|_| refused())?,
                route_id: target.route.parse().map_err(|_| refused())?,
            };
            store::create_grant(&mut c, &grant).await?;
            let row = find_grant(&c, &target).await?;
            print_grants(out, &[row], json)
        }
        GrantCommand::List { client, json } => {
            let rows = store::list_grants(&c, client.as_deref()).await?;
            print_grants(out, &rows, json)
        }
        GrantCommand::Update {
            target,
            fields,
            any_model,
            no_limit,
            json,
        } => {
            let mut tx = c.transaction().await?;
            let current = find_grant(&tx, &target).await?;
            let grant = updated_grant(current, fields, any_model, no_limit)?;
            store::update_grant(&mut tx, &grant).await?;
            let row = find_grant(&tx, &target).await?;
            tx.commit().await?;
            print_grants(out, &[row], json)
        }
        GrantCommand::Delete { target } => {
            store::delete_grant(&c, &target.client, &target.route).await?;
            let (client, route) = (target.client, target.route);
            Ok(writeln!(out, "grant `{client}/{route}` deleted")?)
        }
    }
}

pub async fn run_limit(
    cmd: LimitCommand,
    url: &str,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let c = connect(url).await?;
    match cmd {
        LimitCommand::Set {
            client,
            route,
            limit,
            burst,
        } => {
            let parsed = parse_limit(Some(&limit), burst)?.ok_or_else(|| usage("no limit"))?;
            store::set_limit(&c, &client, route.as_deref(), parsed).await?;
            Ok(writeln!(
                out,
                "limit of `{}` set",
                limit_name(&client, route.as_deref())
            )?)
        }
        LimitCommand::List { json: true } => Ok(json(out, &store::list_limits(&c).await?)?),
        LimitCommand::List { json: false } => print_limits(out, &store::list_limits(&c).await?),
        LimitCommand::Delete { client, route } => {
            store::delete_limit(&c, &client, route.as_deref()).await?;
            Ok(writeln!(
                out,
                "limit of `{}` deleted",
                limit_name(&client, route.as_deref())
            )?)
        }
    }
}

fn limit_name(client: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => format!("{client}/{route}"),
        None => client.to_owned(),
    }
}

async fn find_grant(
    c: &impl tokio_postgres::GenericClient,
    target: &GrantTarget,
) -> Result<GrantRow, CommandError> {
    let rows = store::list_grants(c, Some(&target.client)).await?;
    rows.into_iter()
        .find(|g| g.route_id == target.route)
        .ok_or_else(|| {
            CommandError::from(store::StoreError::NotFound {
                what: "grant",
                id: format!("{}/{}", target.client, target.route),
            })
        })
}

/// The stored grant with the flags given laid over it.
fn updated_grant(
    current: GrantRow,
    f: GrantFields,
    any_model: bool,
    no_limit: bool,
) -> Result<Grant, CommandError> {
    let methods = match f.methods.is_empty() {
        true => current.methods.clone(),
        false => f.methods,
    };
    let models = match (any_model, f.models.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => current.models.clone().unwrap_or_default(),
        (false, false) => f.models,
    };
    let limit = match (no_limit, f.limit) {
        (true, _) => None,
        (false, Some(text)) => parse_limit(Some(&text), f.burst)?,
        (false, None) => current
            .limit
            .as_deref()
            .map(|text| stored_limit(text, current.burst))
            .transpose()?,
    };
    let name = format!("{}/{}", current.client_id, current.route_id);
    let refused = || store::refused_id("gk_grants", &name);
    Ok(Grant {
        client_id: current.client_id.parse().map_err(|_| refused())?,
        route_id: current.route_id.parse().map_err(|_| refused())?,
        methods: parse_methods(&methods)?,
        models: parse_models(&models)?,
        limit,
    })
}

fn stored_limit(text: &str, burst: Option<i32>) -> Result<Limit, CommandError> {
    let burst = burst.and_then(|b| u32::try_from(b).ok());
    parse_limit(Some(text), burst)?.ok_or_else(|| usage(format!("stored limit `{text}`")))
}

/// `*` alone, or method names (one given twice counts once).
fn parse_methods(list: &[String]) -> Result<GrantMethods, CommandError> {
    if list == ["*"] {
        return Ok(GrantMethods::Any);
    }
    let mut methods: Vec<Method> = Vec::new();
    for name in list {
        let m = Method::parse(name).ok_or_else(|| {
            usage(format!(
                "--method `{}`: an upper-case method (GET, POST, …) or `*` alone",
                name.escape_debug()
            ))
        })?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    Ok(GrantMethods::Only(methods))
}

/// No globs: any model.
fn parse_models(list: &[String]) -> Result<Option<Vec<Glob>>, CommandError> {
    if list.is_empty() {
        return Ok(None);
    }
    let glob = |m: &String| {
        Glob::parse(m).map_err(|e| usage(format!("--model `{}`: {e}", m.escape_debug())))
    };
    list.iter().map(glob).collect::<Result<_, _>>().map(Some)
}

fn parse_limit(text: Option<&str>, burst: Option<u32>) -> Result<Option<Limit>, CommandError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let limit = Limit::parse(text).ok_or_else(|| {
        usage(format!(
            "limit `{}`: expected COUNT/WINDOW, e.g. 600/1m or 10000/1d",
            text.escape_debug()
        ))
    })?;
    match burst {
        None => Ok(Some(limit)),
        Some(b) => limit
            .with_burst(b)
            .map(Some)
            .ok_or_else(|| usage("--burst must be at least 1")),
    }
}

fn print_grants(
    out: &mut impl Write,
    rows: &[GrantRow],
    as_json: bool,
) -> Result<(), CommandError> {
    if as_json {
        return Ok(json(out, &rows)?);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|g| {
            let limit = g
                .limit
                .as_ref()
                .map(|l| format!("{l} burst {}", g.burst.unwrap_or(0)));
            vec![
                g.client_id.clone(),
                g.route_id.clone(),
                g.methods.join(","),
                g.models.as_ref().map_or("*".to_owned(), |m| m.join(",")),
                or_dash(limit.as_deref()),
            ]
        })
        .collect();
    let headers = ["client", "route", "methods", "models", "limit"];
    Ok(table(out, &headers, &cells)?)
}

fn print_limits(out: &mut impl Write, rows: &[LimitRow]) -> Result<(), CommandError> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|l| {
            vec![
                l.client_id.clone(),
                l.route_id
                    .clone()
                    .unwrap_or_else(|| "(all routes)".to_owned()),
                l.limit.clone(),
                l.burst.to_string(),
            ]
        })
        .collect();
    Ok(table(out, &["client", "route", "limit", "burst"], &cells)?)
}
