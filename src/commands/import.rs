//! `gatekeeper import api-gatekeeper --from URL [--apply] [--json]`: read a
//! Python API Gatekeeper database, report what maps and what does not, and
//! — only with `--apply` — write it into gatekeeper's database through the
//! same engine as `apply` (keys as digests, HMAC secrets sealed, ids kept).
//! Dry-run by default: nothing is written without `--apply`.

use std::process::ExitCode;

use crate::commands::{fail, EXIT_CONFIG, EXIT_DATA};
use gatekeeper::apply::{plan_and_apply, render, ApplyError};
use gatekeeper::config::Config;
use gatekeeper::import::{read_api_gatekeeper, Import, Report};

pub async fn run(from: &str, apply: bool, json: bool) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let import = match read(from).await {
        Ok(import) => import,
        Err(message) => return fail(1, message),
    };
    print_report(&import.report, json);
    let Some(url) = config.database_url.clone() else {
        if apply {
            return fail(
                EXIT_CONFIG,
                "GATEKEEPER_DATABASE_URL: set it to the database to import into",
            );
        }
        println!(
            "dry run: nothing written (set GATEKEEPER_DATABASE_URL and pass --apply to import)"
        );
        return ExitCode::SUCCESS;
    };
    let master_key = match config.sealing_key() {
        Ok(key) => key,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    match plan_and_apply(&url.0, &import.document, master_key.as_ref(), !apply, false).await {
        Ok(plan) => {
            if !json {
                print!("{}", render(&plan));
                let what = if apply {
                    "imported"
                } else {
                    "dry run, nothing written; --apply imports"
                };
                println!(
                    "{what}: {} to create, {} to change",
                    plan.create.len(),
                    plan.update.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e @ ApplyError::MasterKeyMissing { .. }) => {
            fail(EXIT_CONFIG, format!("GATEKEEPER_MASTER_KEY: {e}"))
        }
        Err(e @ ApplyError::Invalid(_)) => {
            fail(EXIT_DATA, format!("import failed, nothing written: {e}"))
        }
        Err(e) => fail(1, format!("import failed, nothing written: {e}")),
    }
}

/// One consistent view of the four predecessor tables.
async fn read(from: &str) -> Result<Import, String> {
    let (mut client, connection) = gatekeeper::db::connect(from)
        .await
        .map_err(|e| format!("--from: {e}"))?;
    let result = async {
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| format!("--from: cannot start a read transaction: {e}"))?;
        read_api_gatekeeper(&tx).await.map_err(|e| format!("{e:#}"))
    }
    .await;
    drop(client);
    let _ = connection.await;
    result
}

fn print_report(report: &Report, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("gatekeeper: cannot print the report: {e}"),
        }
        return;
    }
    println!(
        "API Gatekeeper: {} routes, {} clients, {} keys, {} HMAC secrets, {} grants, {} limits",
        report.routes,
        report.clients,
        report.keys,
        report.hmac_secrets,
        report.grants,
        report.limits
    );
    for (title, lines) in [
        ("widened", &report.widened),
        ("narrowed", &report.narrowed),
        ("adjusted", &report.adjusted),
    ] {
        for line in lines {
            println!("  {title}: {line}");
        }
    }
    for s in &report.skipped {
        println!("  skipped {} {}: {}", s.table, s.id, s.reason);
    }
}
