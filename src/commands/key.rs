//! `gatekeeper key generate [--json]`: a new API key for a declarative file,
//! shown once, with the lines to paste (PostgreSQL mode's `key …` commands
//! are in `manage`).

use gatekeeper::core::apikey;

use super::{failed, CommandError};

pub fn generate(json: bool) -> Result<(), CommandError> {
    let key = apikey::generate().map_err(failed)?;
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
    Ok(())
}
