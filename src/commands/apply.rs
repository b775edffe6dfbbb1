//! `gatekeeper apply FILE [--dry-run] [--prune] [--json]`: reads the
//! settings and the file, runs the library's `apply` engine, prints the
//! plan.

use std::path::Path;

use anyhow::Context as _;

use gatekeeper::apply::{plan_and_apply, render, ApplyError};
use gatekeeper::config::Config;

use super::{database_url, CommandError};

/// `gatekeeper apply FILE [--dry-run] [--prune] [--json]`.
pub async fn run(file: &Path, dry_run: bool, prune: bool, json: bool) -> Result<(), CommandError> {
    let config = Config::from_env()?;
    let url = database_url(&config, "apply a file")?;
    let master_key = config.sealing_key()?;
    let doc = gatekeeper::sources::file_format::load(file)
        .map_err(|errors| CommandError::invalid_file(file, errors))?;
    let plan = plan_and_apply(&url, &doc, master_key.as_ref(), dry_run, prune)
        .await
        .map_err(|e| match e {
            ApplyError::Invalid(errors) => CommandError::invalid_file(file, errors),
            e => CommandError::from(e).context("apply failed, nothing written"),
        })?;
    if json {
        let text = serde_json::to_string(&plan).context("cannot print the plan")?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", render(&plan));
    let summary = format!(
        "{} to create, {} to change, {} to delete",
        plan.create.len(),
        plan.update.len(),
        plan.delete.len()
    );
    match (dry_run, plan.is_empty()) {
        (_, true) => println!("nothing to change"),
        (true, false) => println!("dry run: {summary}; nothing written"),
        (false, false) => println!("applied: {summary}"),
    }
    Ok(())
}
