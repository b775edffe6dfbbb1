//! `gatekeeper sign …`: the client side of HMAC signing (DESIGN §5), printing
//! the `Authorization: HMAC …` header for one request.

use std::path::PathBuf;

use clap::Args;

use gatekeeper::core::model::without_line_end;
use gatekeeper::core::signature;

use super::{failed, usage, CommandError};

#[derive(Args)]
pub struct SignArgs {
    #[arg(long)]
    client: String,
    /// File holding the shared secret (one trailing newline is ignored).
    #[arg(long)]
    secret_file: PathBuf,
    #[arg(long)]
    method: String,
    /// The raw path as sent, without the query.
    #[arg(long)]
    path: String,
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Unix seconds; defaults to now.
    #[arg(long)]
    timestamp: Option<i64>,
    /// Defaults to a random one.
    #[arg(long)]
    nonce: Option<String>,
}

pub fn run(args: &SignArgs) -> Result<(), CommandError> {
    let secret = std::fs::read(&args.secret_file)
        .map(|s| without_line_end(&s).to_vec())
        .map_err(|e| usage(format!("--secret-file {}: {e}", args.secret_file.display())))?;
    let body = match &args.body_file {
        Some(p) => {
            std::fs::read(p).map_err(|e| usage(format!("--body-file {}: {e}", p.display())))?
        }
        None => Vec::new(),
    };
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let nonce = match &args.nonce {
        Some(n) => n.clone(),
        None => {
            let mut b = [0u8; 16];
            getrandom::getrandom(&mut b).map_err(|_| failed("no randomness for a nonce"))?;
            hex::encode(b)
        }
    };
    let sig = signature::sign(&secret, &args.method, &args.path, timestamp, &nonce, &body);
    println!(
        "Authorization: HMAC client_id=\"{}\",timestamp=\"{timestamp}\",nonce=\"{nonce}\",signature=\"{sig}\"",
        args.client
    );
    Ok(())
}
