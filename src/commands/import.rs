//! `gatekeeper import api-gatekeeper --from URL [--apply] [--json]`: read a
//! Python API Gatekeeper database, report what maps and what does not, and
//! — only with `--apply` — write it into gatekeeper's database through the
//! same engine as `apply` (keys as digests, HMAC secrets sealed, ids kept).
//! Dry-run by default: nothing is written without `--apply`.

use gatekeeper::apply::{plan_and_apply, render, ApplyError};
use gatekeeper::config::Config;
use gatekeeper::import::{read_api_gatekeeper, Import, Report};

use super::{database_url, failed, CommandError};

pub async fn run(from: &str, apply: bool, json: bool) -> Result<(), CommandError> {
    let config = Config::from_env()?;
    let import = read(from).await.map_err(failed)?;
    print_report(&import.report, json);
    if config.database_url.is_none() && !apply {
        println!(
            "dry run: nothing written (set GATEKEEPER_DATABASE_URL and pass --apply to import)"
        );
        return Ok(());
    }
    let url = database_url(&config, "import with --apply")?;
    let master_key = config.sealing_key()?;
    let plan = plan_and_apply(&url, &import.document, master_key.as_ref(), !apply, false)
        .await
        .map_err(|e| match e {
            ApplyError::Invalid(errors) => {
                CommandError::Data(format!("import failed, nothing written: {errors}"))
            }
            e => CommandError::from(e).context("import failed, nothing written"),
        })?;
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
    Ok(())
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
