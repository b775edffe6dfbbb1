//! `gatekeeper secret hash [--cost N]`: the bcrypt hash of a secret read from
//! standard input, for a declarative file's Basic secret.

use std::io::Read;

use gatekeeper::core::model::without_line_end;

use super::{failed, usage, CommandError};

pub fn hash(cost: u32) -> Result<(), CommandError> {
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .map_err(|_| usage("cannot read the secret from standard input"))?;
    // Line ends are ASCII, so the cut is on a character boundary.
    let secret = &secret[..without_line_end(secret.as_bytes()).len()];
    if secret.is_empty() {
        return Err(usage("the secret on standard input is empty"));
    }
    let hash = bcrypt::hash(secret, cost).map_err(failed)?;
    println!("{hash}");
    Ok(())
}
