//! `gatekeeper check FILE [--json]`: validate a declarative file and print a
//! summary (exit 65 naming the place when it is invalid).

use std::path::Path;
use std::process::ExitCode;

use gatekeeper::sources::file_format::Summary;

use super::{fail, EXIT_DATA};

pub fn run(file: &Path, json: bool) -> ExitCode {
    let result = gatekeeper::sources::file_format::load(file)
        .map_err(|e| e.to_string())
        .and_then(|doc| {
            let summary = Summary::of(&doc);
            let warnings = gatekeeper::core::lint::warnings(&doc);
            gatekeeper::core::policy::Policy::build(doc)
                .map(|_| (summary, warnings))
                .map_err(|e| e.to_string())
        });
    match result {
        Ok((summary, warnings)) if json => {
            let out = serde_json::json!({"valid": true, "routes": summary.routes, "clients": summary.clients, "keys": summary.keys, "grants": summary.grants, "warnings": warnings});
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok((summary, warnings)) => {
            println!("{}: valid ({summary})", file.display());
            for warning in warnings {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => fail(
            EXIT_DATA,
            format!("{} is invalid:\n{errors}", file.display()),
        ),
    }
}
