//! `gatekeeper key generate [--json]`: a new API key for a declarative file,
//! shown once, with the lines to paste (PostgreSQL mode's `key …` commands
//! are in `manage`).

use std::process::ExitCode;

use gatekeeper::core::apikey;

use super::fail;

pub fn generate(json: bool) -> ExitCode {
    let key = match apikey::generate() {
        Ok(key) => key,
        Err(e) => return fail(1, e),
    };
    if json {
        let out = serde_json::json!({"key": key.key.expose(), "id": key.public_id, "digest": key.digest.to_string()});
        println!("{out}");
    } else {
        println!("key:    {}", key.key.expose());
        println!("        (shown once: give it to the client now; only its digest is stored)");
        println!();
        println!("[[client.key]]");
        println!("id = \"{}\"", key.public_id);
        println!("digest = \"{}\"", key.digest);
    }
    ExitCode::SUCCESS
}
