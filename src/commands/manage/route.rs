//! `gatekeeper route …`: routes and their per-method rules.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::output::{json, table};
use super::{connect, settings};
use crate::commands::{usage, CommandError};
use gatekeeper::core::model::{DomainPattern, Method, MethodRule, PathPattern, Route, RouteId};
use gatekeeper::db::store::{self, RouteRow};

#[derive(Subcommand, Debug)]
pub enum RouteCommand {
    /// Create a route.
    Create {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        fields: RouteFields,
        #[arg(long)]
        json: bool,
    },
    /// List every route.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one route.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a route; `--method` replaces all its methods when given.
    Update {
        id: String,
        #[command(flatten)]
        fields: RouteFields,
        #[arg(long)]
        json: bool,
    },
    /// Delete a route, its grants and its route limits.
    Delete { id: String },
}

/// The flags `create` requires and `update` may change.
#[derive(Args, Debug, Default)]
pub struct RouteFields {
    /// `api.example.com`, `*.example.com` or `*`.
    #[arg(long)]
    pub domain: Option<String>,
    /// `/v1/chat/completions`, or `/api/*` for a prefix.
    #[arg(long)]
    pub path: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// `GET=public`, `POST=api_key,basic`, `*=hmac`; repeat per method.
    #[arg(long = "method", value_name = "METHOD=CREDENTIALS")]
    pub methods: Vec<String>,
}

pub async fn route(cmd: RouteCommand) -> Result<(), CommandError> {
    run_route(cmd, &settings()?.database_url, &mut std::io::stdout()).await
}

pub async fn run_route(
    cmd: RouteCommand,
    url: &str,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let mut c = connect(url).await?;
    match cmd {
        RouteCommand::Create { id, fields, json } => {
            let route = new_route(&id, fields)?;
            store::create_route(&mut c, &route).await?;
            print_one(out, &store::get_route(&c, &id).await?, json)
        }
        RouteCommand::List { json: true } => Ok(json(out, &store::list_routes(&c).await?)?),
        RouteCommand::List { json: false } => print_table(out, &store::list_routes(&c).await?),
        RouteCommand::Show { id, json } => print_one(out, &store::get_route(&c, &id).await?, json),
        RouteCommand::Update { id, fields, json } => {
            let mut tx = c.transaction().await?;
            let current = store::get_route(&tx, &id).await?;
            let route = updated_route(current, fields)?;
            store::update_route(&mut tx, &route).await?;
            let row = store::get_route(&tx, &id).await?;
            tx.commit().await?;
            print_one(out, &row, json)
        }
        RouteCommand::Delete { id } => {
            store::delete_route(&c, &id).await?;
            writeln!(out, "route `{id}` deleted")?;
            Ok(())
        }
    }
}

fn new_route(id: &str, f: RouteFields) -> Result<Route, CommandError> {
    let missing = |flag: &str| usage(format!("route create: --{flag} is required"));
    let methods = parse_methods(&f.methods)?;
    build_route(
        id,
        &f.domain.ok_or_else(|| missing("domain"))?,
        &f.path.ok_or_else(|| missing("path"))?,
        &f.service.ok_or_else(|| missing("service"))?,
        f.priority.unwrap_or(0),
        methods,
    )
}

/// The stored route with the flags given laid over it.
fn updated_route(current: RouteRow, f: RouteFields) -> Result<Route, CommandError> {
    let methods = match f.methods.is_empty() {
        true => stored_methods(&current)?,
        false => parse_methods(&f.methods)?,
    };
    build_route(
        &current.id,
        f.domain.as_deref().unwrap_or(&current.domain),
        f.path.as_deref().unwrap_or(&current.path),
        f.service.as_deref().unwrap_or(&current.service),
        f.priority.unwrap_or(current.priority),
        methods,
    )
}

type Rules = Vec<(String, MethodRule)>;

fn build_route(
    id: &str,
    domain: &str,
    path: &str,
    service: &str,
    priority: i32,
    rules: Rules,
) -> Result<Route, CommandError> {
    let Ok(route_id) = RouteId::parse(id) else {
        return Err(usage(format!(
            "route id `{}`: 1 to 64 of A-Z a-z 0-9 . _ -",
            id.escape_debug()
        )));
    };
    let domain = DomainPattern::parse(domain)
        .map_err(|e| usage(format!("--domain `{}`: {e}", domain.escape_debug())))?;
    let path = PathPattern::parse(path)
        .map_err(|e| usage(format!("--path `{}`: {e}", path.escape_debug())))?;
    if service.trim().is_empty() {
        return Err(usage("--service must not be blank"));
    }
    let mut route = Route {
        id: route_id,
        domain,
        path,
        service: Arc::from(service),
        priority,
        methods: BTreeMap::new(),
        any_method: None,
    };
    for (name, rule) in rules {
        match name.as_str() {
            "*" => route.any_method = Some(rule),
            _ => {
                let method = Method::parse(&name)
                    .ok_or_else(|| usage(format!("`{}` is not a method", name.escape_debug())))?;
                route.methods.insert(method, rule);
            }
        }
    }
    Ok(route)
}

/// `--method GET=public --method POST=api_key,basic`.
fn parse_methods(flags: &[String]) -> Result<Rules, CommandError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut rules = Vec::new();
    for flag in flags {
        let (method, creds) = flag
            .split_once('=')
            .ok_or_else(|| usage(format!("--method `{flag}`: expected METHOD=CREDENTIALS")))?;
        if !seen.insert(method.to_owned()) {
            return Err(usage(format!("--method {method} is given twice")));
        }
        let list: Vec<String> = creds.split(',').map(|s| s.trim().to_owned()).collect();
        let rule =
            MethodRule::parse(&list).map_err(|p| usage(format!("--method `{flag}`: {p}")))?;
        rules.push((method.to_owned(), rule));
    }
    Ok(rules)
}

fn stored_methods(row: &RouteRow) -> Result<Rules, CommandError> {
    let rule = |(m, list): (&String, &Vec<String>)| {
        MethodRule::parse(list)
            .map(|r| (m.clone(), r))
            .map_err(|p| usage(format!("route `{}` method {m}: {p}", row.id)))
    };
    row.methods.iter().map(rule).collect()
}

fn print_one(out: &mut impl Write, row: &RouteRow, as_json: bool) -> Result<(), CommandError> {
    match as_json {
        true => json(out, row)?,
        false => print_table(out, std::slice::from_ref(row))?,
    }
    Ok(())
}

fn print_table(out: &mut impl Write, rows: &[RouteRow]) -> Result<(), CommandError> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let methods: Vec<String> = r
                .methods
                .iter()
                .map(|(m, creds)| format!("{m}={}", creds.join(",")))
                .collect();
            vec![
                r.id.clone(),
                r.domain.clone(),
                r.path.clone(),
                r.service.clone(),
                r.priority.to_string(),
                methods.join(" "),
            ]
        })
        .collect();
    let headers = ["id", "domain", "path", "service", "priority", "methods"];
    Ok(table(out, &headers, &cells)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper::core::model::CredentialType;

    #[test]
    fn method_flags_read_public_alone_or_credential_sets() {
        let flags = ["GET=public".to_owned(), "POST=api_key,basic".to_owned()];
        let rules = parse_methods(&flags).unwrap();
        assert_eq!(rules[0], ("GET".to_owned(), MethodRule::Public));
        assert!(matches!(rules[1].1, MethodRule::Credentials(s)
            if s.contains(CredentialType::ApiKey) && s.contains(CredentialType::Basic)));
        for bad in ["GET", "GET=", "GET=public,basic", "GET=jwt"] {
            assert!(parse_methods(&[bad.to_owned()]).is_err(), "{bad}");
        }
        let twice = ["GET=public".to_owned(), "GET=basic".to_owned()];
        assert!(parse_methods(&twice).is_err());
    }
}
