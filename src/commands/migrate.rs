//! `gatekeeper migrate`: apply pending schema migrations to the policy
//! database and to the audit database when that is another one.

use std::process::ExitCode;

use gatekeeper::config::Config;

use super::{fail, EXIT_CONFIG};

pub async fn run() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // The audit log may live in a database of its own (file mode, or kept
    // apart from the policy): it gets the same schema.
    let audit = config
        .audit_database_url
        .filter(|a| Some(a) != config.database_url.as_ref());
    let targets: Vec<(&str, String)> = [("", config.database_url), ("audit database: ", audit)]
        .into_iter()
        .filter_map(|(label, url)| Some((label, url?.0)))
        .collect();
    if targets.is_empty() {
        return fail(
            EXIT_CONFIG,
            "GATEKEEPER_DATABASE_URL: set it (or GATEKEEPER_DATABASE_URL_FILE) to migrate",
        );
    }
    for (label, url) in targets {
        match gatekeeper::db::migrate::run(&url).await {
            Ok(applied) if applied.is_empty() => println!("{label}the schema is up to date"),
            Ok(applied) => {
                let list: Vec<String> = applied.iter().map(|v| format!("{v:04}")).collect();
                println!("{label}applied migrations: {}", list.join(", "));
            }
            Err(e) => return fail(1, format!("{label}{e:#}")),
        }
    }
    ExitCode::SUCCESS
}
