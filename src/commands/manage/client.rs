//! `gatekeeper client …`: clients, their status and their secrets.

use std::io::{Read, Write};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Subcommand;

use super::output::{json, or_dash, table};
use super::{connect, settings};
use crate::commands::{failed, usage, CommandError};
use gatekeeper::config::parse_master_key;
use gatekeeper::core::model::{valid_id, without_line_end, ClientStatus};
use gatekeeper::core::seal;
use gatekeeper::db::store::{self, ClientRow, NewClient};

/// bcrypt cost for Basic secrets unless `--cost` says otherwise.
pub const DEFAULT_BCRYPT_COST: u32 = 12;
/// Random bytes in a generated HMAC secret.
const HMAC_SECRET_BYTES: usize = 32;

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create a client (a random UUID when `--id` is not given).
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        /// active, suspended or revoked.
        #[arg(long, default_value = "active")]
        status: String,
        /// A JSON object.
        #[arg(long)]
        metadata: Option<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Rename a client.
    Update {
        id: String,
        #[arg(long)]
        name: String,
    },
    Suspend {
        id: String,
    },
    Activate {
        id: String,
    },
    Revoke {
        id: String,
    },
    /// Delete a client with its keys, secrets, grants and limits.
    Delete {
        id: String,
    },
    /// The client's Basic or HMAC secret.
    #[command(subcommand)]
    Secret(ClientSecretCommand),
}

#[derive(Subcommand, Debug)]
pub enum ClientSecretCommand {
    /// `--basic`: read the secret from standard input and store its bcrypt
    /// hash. `--hmac`: generate one, print it once, store it sealed with
    /// GATEKEEPER_MASTER_KEY; `--hmac --stdin`: the same with the secret
    /// the client already has, read from standard input (never printed).
    Set {
        id: String,
        #[arg(long, conflicts_with = "hmac", required_unless_present = "hmac")]
        basic: bool,
        #[arg(long)]
        hmac: bool,
        /// With --hmac: read the secret from standard input instead of
        /// generating one (at least 16 characters).
        #[arg(long, requires = "hmac")]
        stdin: bool,
        #[arg(long, default_value_t = DEFAULT_BCRYPT_COST,
              value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
    /// Remove both secrets.
    Clear { id: String },
}

pub async fn client(cmd: ClientCommand) -> Result<(), CommandError> {
    let s = settings()?;
    let key = s.master_key.as_deref();
    let (mut stdin, mut stdout) = (std::io::stdin(), std::io::stdout());
    run_client(cmd, &s.database_url, key, &mut stdin, &mut stdout).await
}

/// `master_key` is GATEKEEPER_MASTER_KEY's text, needed by `secret set
/// --hmac` only; `input` is where `secret set --basic` reads the secret.
pub async fn run_client(
    cmd: ClientCommand,
    url: &str,
    master_key: Option<&str>,
    input: &mut impl Read,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let c = connect(url).await?;
    let message = match cmd {
        ClientCommand::Create {
            id,
            name,
            status,
            metadata,
            json,
        } => {
            let new = new_client(id, name, &status, metadata.as_deref())?;
            store::create_client(&c, &new).await?;
            return print_one(out, &store::get_client(&c, &new.id).await?, json);
        }
        ClientCommand::List { json: true } => {
            return Ok(json(out, &store::list_clients(&c).await?)?)
        }
        ClientCommand::List { json: false } => {
            return print_table(out, &store::list_clients(&c).await?)
        }
        ClientCommand::Show { id, json } => {
            return print_one(out, &store::get_client(&c, &id).await?, json)
        }
        ClientCommand::Update { id, name } => {
            if name.trim().is_empty() {
                return Err(usage("--name must not be blank"));
            }
            store::rename_client(&c, &id, &name).await?;
            format!("client `{id}` renamed")
        }
        ClientCommand::Suspend { id } => set_status(&c, id, ClientStatus::Suspended).await?,
        ClientCommand::Activate { id } => set_status(&c, id, ClientStatus::Active).await?,
        ClientCommand::Revoke { id } => set_status(&c, id, ClientStatus::Revoked).await?,
        ClientCommand::Delete { id } => {
            store::delete_client(&c, &id).await?;
            format!("client `{id}` deleted")
        }
        ClientCommand::Secret(cmd) => return run_secret(&c, cmd, master_key, input, out).await,
    };
    writeln!(out, "{message}")?;
    Ok(())
}

async fn set_status(
    c: &tokio_postgres::Client,
    id: String,
    status: ClientStatus,
) -> Result<String, CommandError> {
    store::set_client_status(c, &id, status).await?;
    Ok(format!("client `{id}` is {}", status.as_str()))
}

async fn run_secret(
    c: &tokio_postgres::Client,
    cmd: ClientSecretCommand,
    master_key: Option<&str>,
    input: &mut impl Read,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    match cmd {
        ClientSecretCommand::Set {
            id,
            hmac: true,
            stdin,
            ..
        } => {
            let key = master_key.ok_or_else(|| {
                usage("GATEKEEPER_MASTER_KEY: set it (or GATEKEEPER_MASTER_KEY_FILE) to store an HMAC secret")
            })?;
            let key = parse_master_key(key).map_err(|e| usage(e.to_string()))?;
            let secret = match stdin {
                true => given_hmac_secret(input)?,
                false => hmac_secret()?,
            };
            let sealed = seal::seal(&key, &id, secret.as_bytes()).map_err(failed)?;
            store::set_hmac_secret(c, &id, &sealed).await?;
            if stdin {
                writeln!(out, "hmac secret of client `{id}` set (stored encrypted)")?;
            } else {
                writeln!(out, "hmac secret: {secret}")?;
                writeln!(
                    out,
                    "             (shown once: give it to the client now; it is stored encrypted)"
                )?;
            }
        }
        ClientSecretCommand::Set { id, cost, .. } => {
            let secret = read_secret(input)?;
            let hash = tokio::task::spawn_blocking(move || bcrypt::hash(secret, cost))
                .await
                .map_err(|e| failed(format!("hashing the secret: {e}")))?
                .map_err(|e| failed(format!("hashing the secret: {e}")))?;
            store::set_basic_secret(c, &id, &hash).await?;
            writeln!(out, "basic secret of client `{id}` set")?;
        }
        ClientSecretCommand::Clear { id } => {
            let had = store::clear_secrets(c, &id).await?;
            match had {
                true => writeln!(out, "secrets of client `{id}` cleared")?,
                false => writeln!(out, "client `{id}` had no secret")?,
            }
        }
    }
    Ok(())
}

/// The HMAC secret the client signs with: 32 random bytes as unpadded
/// URL-safe base64. The text itself is the secret (its UTF-8 bytes are the
/// HMAC key, DESIGN §11), so it is what is sealed.
fn hmac_secret() -> Result<String, CommandError> {
    let mut bytes = [0u8; HMAC_SECRET_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| failed(format!("no random bytes: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Shortest HMAC secret accepted from an operator: a shared secret that
/// short could be guessed offline from one signed request.
const MIN_GIVEN_HMAC_SECRET: usize = 16;

/// An HMAC secret the client already has, from standard input.
fn given_hmac_secret(input: &mut impl Read) -> Result<String, CommandError> {
    let secret = read_secret(input)?;
    if secret.chars().count() < MIN_GIVEN_HMAC_SECRET {
        return Err(usage(format!(
            "the HMAC secret on standard input is shorter than {MIN_GIVEN_HMAC_SECRET} characters"
        )));
    }
    Ok(secret)
}

/// The secret on standard input, one trailing newline removed.
fn read_secret(input: &mut impl Read) -> Result<String, CommandError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|_| usage("cannot read the secret from standard input (UTF-8 text expected)"))?;
    // Line ends are ASCII, so the cut is on a character boundary.
    let trimmed = &text[..without_line_end(text.as_bytes()).len()];
    match trimmed.is_empty() {
        true => Err(usage("the secret on standard input is empty")),
        false => Ok(trimmed.to_owned()),
    }
}

fn new_client(
    id: Option<String>,
    name: String,
    status: &str,
    metadata: Option<&str>,
) -> Result<NewClient, CommandError> {
    let id = match id {
        Some(id) => id,
        None => uuid_v4()?,
    };
    if !valid_id(&id) {
        let why = "1 to 64 of A-Z a-z 0-9 . _ -";
        return Err(usage(format!("client id `{}`: {why}", id.escape_debug())));
    }
    if name.trim().is_empty() {
        return Err(usage("--name must not be blank"));
    }
    let status = ClientStatus::parse(status)
        .ok_or_else(|| usage("--status: active, suspended or revoked"))?;
    let metadata = match metadata {
        Some(text) => serde_json::from_str(text)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| usage("--metadata must be a JSON object"))?,
        None => serde_json::json!({}),
    };
    Ok(NewClient {
        id,
        name,
        status,
        metadata,
    })
}

/// A random (version 4) UUID, for clients created without an id.
fn uuid_v4() -> Result<String, CommandError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| failed(format!("no random bytes: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

fn print_one(out: &mut impl Write, row: &ClientRow, as_json: bool) -> Result<(), CommandError> {
    match as_json {
        true => json(out, row)?,
        false => print_table(out, std::slice::from_ref(row))?,
    }
    Ok(())
}

fn print_table(out: &mut impl Write, rows: &[ClientRow]) -> Result<(), CommandError> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let limit = r
                .limit
                .as_ref()
                .map(|l| format!("{l} burst {}", r.burst.unwrap_or(0)));
            vec![
                r.id.clone(),
                r.name.clone(),
                r.status.clone(),
                or_dash(limit.as_deref()),
                yes_no(r.has_basic_secret),
                yes_no(r.has_hmac_secret),
                r.key_count.to_string(),
            ]
        })
        .collect();
    let headers = ["id", "name", "status", "limit", "basic", "hmac", "keys"];
    Ok(table(out, &headers, &cells)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_client_ids_are_version_4_uuids() {
        let id = uuid_v4().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(valid_id(&id));
        assert_ne!(id, uuid_v4().unwrap());
    }

    #[test]
    fn a_secret_on_stdin_loses_one_trailing_newline_only() {
        assert_eq!(read_secret(&mut &b"s3cret\r\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_secret(&mut &b"s3cret\n\n"[..]).unwrap(), "s3cret\n");
        assert!(read_secret(&mut &b"\n"[..]).is_err());
    }
}
