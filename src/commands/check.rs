//! `gatekeeper check FILE [--json]`: validate a declarative file and print a
//! summary (exit 65 naming the place when it is invalid).

use std::path::Path;

use gatekeeper::core::policy::Policy;
use gatekeeper::sources::file_format;

use super::CommandError;

pub fn run(file: &Path, json: bool) -> Result<(), CommandError> {
    let doc = file_format::load(file).map_err(|e| CommandError::invalid_file(file, e))?;
    let warnings = gatekeeper::core::lint::warnings(&doc);
    let summary = Policy::build(doc)
        .map_err(|e| CommandError::invalid_file(file, e))?
        .counts();
    if json {
        let out = serde_json::json!({"valid": true, "routes": summary.routes, "clients": summary.clients, "keys": summary.keys, "grants": summary.grants, "warnings": warnings});
        println!("{out}");
        return Ok(());
    }
    println!("{}: valid ({summary})", file.display());
    for warning in warnings {
        println!("warning: {warning}");
    }
    Ok(())
}
