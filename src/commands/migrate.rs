//! `gatekeeper migrate`: apply pending schema migrations to the policy
//! database and to the audit database when that is another one.

use gatekeeper::config::Config;

use super::{database_url, failed, CommandError};

pub async fn run() -> Result<(), CommandError> {
    let config = Config::from_env()?;
    // The audit log may live in a database of its own (file mode, or kept
    // apart from the policy): it gets the same schema.
    let audit = config
        .audit_database_url
        .clone()
        .filter(|a| Some(a) != config.database_url.as_ref());
    let policy = match audit {
        // File mode with an audit database: that is the only schema.
        Some(_) if config.database_url.is_none() => None,
        _ => Some(database_url(&config, "migrate")?),
    };
    let targets = [("", policy), ("audit database: ", audit.map(|a| a.0))];
    for (label, url) in targets {
        let Some(url) = url else { continue };
        let applied = gatekeeper::db::migrate::run(&url)
            .await
            .map_err(|e| failed(format!("{label}{e:#}")))?;
        if applied.is_empty() {
            println!("{label}the schema is up to date");
        } else {
            let list: Vec<String> = applied.iter().map(|v| format!("{v:04}")).collect();
            println!("{label}applied migrations: {}", list.join(", "));
        }
    }
    Ok(())
}
