//! `gatekeeper key …`: API keys. A generated key is printed once, by the
//! command that creates it; only its digest is stored.

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::output::{json, or_dash, table};
use super::{connect, settings};
use crate::commands::{failed, usage, CommandError};
use gatekeeper::core::apikey;
use gatekeeper::core::model::{KeyRecord, KeyStatus};
use gatekeeper::db::store::{self, KeyRow};

/// How long a rotated key keeps working unless `--grace` says otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a key for a client and print it once.
    Create {
        #[arg(long)]
        client: String,
        #[arg(long)]
        label: Option<String>,
        /// RFC 3339, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List every key, or one client's.
    List {
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    Revoke {
        id: String,
    },
    Delete {
        id: String,
    },
    /// Generate a new key for the same client and label; the old one keeps
    /// working for the grace period (`24h`, `30m`, `7d`).
    Rotate {
        id: String,
        #[arg(long)]
        grace: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// What `key create --json` / `key rotate --json` print: the key (this once)
/// and its row.
#[derive(Serialize)]
struct CreatedKey<'a> {
    key: &'a str,
    #[serde(flatten)]
    row: &'a KeyRow,
    /// `key rotate`: the key it replaces and when that one stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<&'a KeyRow>,
}

pub async fn key(cmd: KeyCommand) -> Result<(), CommandError> {
    run_key(cmd, &settings()?.database_url, &mut std::io::stdout()).await
}

pub async fn run_key(cmd: KeyCommand, url: &str, out: &mut impl Write) -> Result<(), CommandError> {
    let mut c = connect(url).await?;
    match cmd {
        KeyCommand::Create {
            client,
            label,
            expires_at,
            json,
        } => {
            let expires_at = expires_at.as_deref().map(parse_time).transpose()?;
            let (key, record) = generated(&client, expires_at)?;
            store::create_key(&c, &record, label.as_deref()).await?;
            let row = store::get_key(&c, &record.id).await?;
            print_created(out, key.key.expose(), &row, None, json)
        }
        KeyCommand::List { client, json: true } => {
            Ok(json(out, &store::list_keys(&c, client.as_deref()).await?)?)
        }
        KeyCommand::List {
            client,
            json: false,
        } => print_table(out, &store::list_keys(&c, client.as_deref()).await?),
        KeyCommand::Show { id, json: true } => Ok(json(out, &store::get_key(&c, &id).await?)?),
        KeyCommand::Show { id, json: false } => print_table(out, &[store::get_key(&c, &id).await?]),
        KeyCommand::Revoke { id } => {
            store::set_key_status(&c, &id, KeyStatus::Revoked).await?;
            Ok(writeln!(out, "key `{id}` revoked")?)
        }
        KeyCommand::Delete { id } => {
            store::delete_key(&c, &id).await?;
            Ok(writeln!(out, "key `{id}` deleted")?)
        }
        KeyCommand::Rotate { id, grace, json } => {
            let grace = match grace {
                Some(text) => parse_grace(&text)?,
                None => DEFAULT_ROTATION_GRACE,
            };
            let tx = c.transaction().await?;
            let old = store::get_key(&tx, &id).await?;
            if old.status != KeyStatus::Active.as_str() {
                let why = format!("key `{id}` is {}: create a new key instead", old.status);
                return Err(failed(why));
            }
            let (key, record) = generated(&old.client_id, None)?;
            store::create_key(&tx, &record, old.label.as_deref()).await?;
            let until = rotation_expiry(&old, grace)?;
            store::set_key_expiry(&tx, &id, Some(until)).await?;
            let (new, old) = (
                store::get_key(&tx, &record.id).await?,
                store::get_key(&tx, &id).await?,
            );
            tx.commit().await?;
            print_created(out, key.key.expose(), &new, Some(&old), json)
        }
    }
}

/// A fresh key for `client` and the record that stores its digest.
fn generated(
    client: &str,
    expires_at: Option<i64>,
) -> Result<(apikey::GeneratedKey, KeyRecord), CommandError> {
    let key = apikey::generate().map_err(failed)?;
    let record = KeyRecord {
        id: key
            .public_id
            .parse()
            .map_err(|e| failed(format!("key id: {e}")))?,
        // A bad `--client` fails as the database's `gk_id` check fails it.
        client_id: client
            .parse()
            .map_err(|_| store::refused_id("gk_api_keys", &key.public_id))?,
        digest: key.digest,
        status: KeyStatus::Active,
        expires_at,
    };
    Ok((key, record))
}

/// Now plus the grace period, or the key's own expiry when that is sooner.
fn rotation_expiry(old: &KeyRow, grace: Duration) -> Result<i64, CommandError> {
    let grace = i64::try_from(grace.as_secs()).map_err(|_| usage("--grace is too long"))?;
    let until = OffsetDateTime::now_utc()
        .unix_timestamp()
        .saturating_add(grace);
    let current = old.expires_at.as_deref().map(parse_time).transpose()?;
    Ok(current.map_or(until, |c| c.min(until)))
}

/// RFC 3339 as Unix seconds.
fn parse_time(text: &str) -> Result<i64, CommandError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| {
            usage(format!(
                "--expires-at `{}`: expected RFC 3339, e.g. 2027-01-31T00:00:00Z",
                text.escape_debug()
            ))
        })
}

/// `24h`, `30m`, `90s`, `7d`, or a bare number of seconds.
fn parse_grace(text: &str) -> Result<Duration, CommandError> {
    let days = text
        .strip_suffix('d')
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| n.checked_mul(86_400))
        .map(Duration::from_secs);
    days.or_else(|| gatekeeper::config::parse_duration(text))
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            usage(format!(
                "--grace `{}`: expected e.g. 24h, 30m, 7d",
                text.escape_debug()
            ))
        })
}

fn print_created(
    out: &mut impl Write,
    key: &str,
    row: &KeyRow,
    replaces: Option<&KeyRow>,
    as_json: bool,
) -> Result<(), CommandError> {
    if as_json {
        return Ok(json(out, &CreatedKey { key, row, replaces })?);
    }
    writeln!(out, "key:    {key}")?;
    writeln!(
        out,
        "        (shown once: give it to the client now; only its digest is stored)"
    )?;
    writeln!(out)?;
    let rows: Vec<KeyRow> = std::iter::once(row).chain(replaces).cloned().collect();
    print_table(out, &rows)
}

fn print_table(out: &mut impl Write, rows: &[KeyRow]) -> Result<(), CommandError> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.client_id.clone(),
                or_dash(r.label.as_deref()),
                r.status.clone(),
                or_dash(r.expires_at.as_deref()),
                or_dash(r.last_used_at.as_deref()),
                r.created_at.clone(),
            ]
        })
        .collect();
    let headers = [
        "id",
        "client",
        "label",
        "status",
        "expires_at",
        "last_used_at",
        "created_at",
    ];
    Ok(table(out, &headers, &cells)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_read_days_hours_minutes_and_seconds() {
        assert_eq!(parse_grace("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_grace("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_grace("90").unwrap(), Duration::from_secs(90));
        for bad in ["", "0h", "1w", "d", "-1h"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_times_are_rfc_3339() {
        assert_eq!(parse_time("2027-01-01T00:00:00Z").unwrap(), 1_798_761_600);
        assert!(parse_time("2027-01-01").is_err());
    }
}
