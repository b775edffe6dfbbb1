//! `gatekeeper apply FILE [--dry-run] [--prune] [--json]`: reads the
//! settings and the file, runs the library's `apply` engine, prints the
//! plan.

use std::path::Path;
use std::process::ExitCode;

use gatekeeper::apply::{plan_and_apply, render, ApplyError};
use gatekeeper::config::Config;

use super::{fail, EXIT_CONFIG, EXIT_DATA};

/// `gatekeeper apply FILE [--dry-run] [--prune] [--json]`.
pub async fn run(file: &Path, dry_run: bool, prune: bool, json: bool) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let Some(url) = config.database_url.clone() else {
        return fail(
            EXIT_CONFIG,
            "GATEKEEPER_DATABASE_URL: set it to the database `apply` writes to",
        );
    };
    let master_key = match config.sealing_key() {
        Ok(key) => key,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let doc = match gatekeeper::sources::file_format::load(file) {
        Ok(doc) => doc,
        Err(errors) => {
            return fail(
                EXIT_DATA,
                format!("{} is invalid:\n{errors}", file.display()),
            )
        }
    };
    match plan_and_apply(&url.0, &doc, master_key.as_ref(), dry_run, prune).await {
        Ok(plan) if json => {
            match serde_json::to_string(&plan) {
                Ok(text) => println!("{text}"),
                Err(e) => return fail(1, format!("cannot print the plan: {e}")),
            }
            ExitCode::SUCCESS
        }
        Ok(plan) => {
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
            ExitCode::SUCCESS
        }
        Err(ApplyError::Invalid(errors)) => fail(
            EXIT_DATA,
            format!("{} is invalid:\n{errors}", file.display()),
        ),
        Err(e @ ApplyError::MasterKeyMissing { .. }) => {
            fail(EXIT_CONFIG, format!("GATEKEEPER_MASTER_KEY: {e}"))
        }
        Err(e) => fail(1, format!("apply failed, nothing written: {e}")),
    }
}
