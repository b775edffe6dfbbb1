//! `gatekeeper secret hash [--cost N]`: the bcrypt hash of a secret read from
//! standard input, for a declarative file's Basic secret.

use std::io::Read;
use std::process::ExitCode;

use gatekeeper::core::model::without_line_end;

use super::{fail, EXIT_CONFIG};

pub fn hash(cost: u32) -> ExitCode {
    let mut secret = String::new();
    if std::io::stdin().read_to_string(&mut secret).is_err() {
        return fail(EXIT_CONFIG, "cannot read the secret from standard input");
    }
    // Line ends are ASCII, so the cut is on a character boundary.
    let secret = &secret[..without_line_end(secret.as_bytes()).len()];
    if secret.is_empty() {
        return fail(EXIT_CONFIG, "the secret on standard input is empty");
    }
    match bcrypt::hash(secret, cost) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}
