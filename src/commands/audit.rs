//! `gatekeeper audit tail|query`: reading the audit log from its database
//! (`GATEKEEPER_AUDIT_DATABASE_URL`, else `GATEKEEPER_DATABASE_URL`). Rows
//! print as an aligned table, or with `--json` one object per line with
//! stable snake_case names (absent values are `null`).

use std::io::Write;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::{Client, Row};

use gatekeeper::audit::rows::{AuditRow, Table, SELECT_AFTER, SELECT_LATEST, SELECT_MATCHING};

use super::{failed, usage, CommandError};
use gatekeeper::config::Config;
use gatekeeper::core::decision::Reason;

/// How often `tail --follow` asks for new rows.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// The most rows one command prints (`-n`, `--limit`).
const MAX_ROWS: u32 = 100_000;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// The latest decisions, oldest first; --follow keeps printing new ones.
    Tail {
        /// How many of the latest rows to print first.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: u32,
        /// Keep printing rows as they are written (Ctrl-C to stop).
        #[arg(short = 'f', long)]
        follow: bool,
        /// One JSON object per row.
        #[arg(long)]
        json: bool,
    },
    /// Decisions matching every filter given: the newest --limit of them,
    /// oldest first.
    Query {
        /// A client id.
        #[arg(long)]
        client: Option<String>,
        /// A time back from now (`90s`, `30m`, `1h`, `7d`) or an RFC 3339
        /// time (`2026-11-24T10:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        /// A reason, e.g. `invalid_credentials` or `authenticated`.
        #[arg(long)]
        reason: Option<String>,
        /// The most rows to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per row.
        #[arg(long)]
        json: bool,
    },
}

/// A failed read, by its SQLSTATE and message (a read quotes no row).
fn read_failed(e: tokio_postgres::Error) -> CommandError {
    use tokio_postgres::error::SqlState;
    if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
        return failed(
            "the audit database has no gk_audit table: run `gatekeeper migrate` with it",
        );
    }
    let why = match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    failed(format!("reading the audit log failed: {why}"))
}

/// Runs an `audit` command against the environment's audit database.
pub async fn run(command: AuditCommand) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    match run_with(command, &mut out).await {
        // `tail --follow | head`: the reader has seen enough.
        Err(e) if closed_output(&e) => Ok(()),
        result => result,
    }
}

/// A write to standard output failed because its reader went away.
fn closed_output(e: &CommandError) -> bool {
    let CommandError::Failed(e) = e else {
        return false;
    };
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn run_with(command: AuditCommand, out: &mut impl Write) -> Result<(), CommandError> {
    let url = database_url()?;
    // Flags are checked before connecting: a typo needs no database.
    match command {
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => {
            let lines = row_count("-n", lines)?;
            let client = connect(&url).await?;
            tail(&client, lines, follow, json, out).await
        }
        AuditCommand::Query {
            client,
            since,
            reason,
            limit,
            json,
        } => {
            let filter = Filter {
                client,
                since: since
                    .map(|s| parse_since(&s, SystemTime::now()))
                    .transpose()?,
                reason: reason.map(|r| parse_reason(&r)).transpose()?,
                limit: row_count("--limit", limit)?,
            };
            let db = connect(&url).await?;
            let rows = query(&db, &filter).await?;
            print(out, &rows, json, &mut Table::new())
        }
    }
}

/// The audit log's own database, else the policy's.
fn database_url() -> Result<String, CommandError> {
    let config = Config::from_env()?;
    let url = config.audit_database_url.ok_or_else(|| {
        usage(
            "GATEKEEPER_AUDIT_DATABASE_URL: set it or GATEKEEPER_DATABASE_URL \
             (or their _FILE variants) to read the audit log",
        )
    })?;
    Ok(url.0)
}

async fn connect(url: &str) -> Result<Client, CommandError> {
    let (client, _task) = gatekeeper::db::connect(url).await?;
    Ok(client)
}

fn row_count(flag: &str, n: u32) -> Result<i64, CommandError> {
    if (1..=MAX_ROWS).contains(&n) {
        Ok(i64::from(n))
    } else {
        Err(usage(format!(
            "{flag}: expected a number of rows from 1 to {MAX_ROWS}"
        )))
    }
}

/// `90s`, `30m`, `1h`, `7d` back from `now`, or an RFC 3339 time.
fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, CommandError> {
    let back = match text.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .filter(|d| *d > 0)
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs),
        None => gatekeeper::config::parse_duration(text),
    };
    let at = match back {
        Some(back) => now.checked_sub(back),
        None => OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(SystemTime::from),
    };
    at.ok_or_else(|| {
        usage(format!(
            "--since `{text}`: expected a time back from now (90s, 30m, 1h, 7d) \
             or an RFC 3339 time (2026-11-24T10:00:00Z)"
        ))
    })
}

fn parse_reason(text: &str) -> Result<String, CommandError> {
    if Reason::ALL.iter().any(|r| r.as_str() == text) {
        return Ok(text.to_owned());
    }
    let known: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    Err(usage(format!(
        "--reason `{text}`: expected one of {}",
        known.join(", ")
    )))
}

struct Filter {
    client: Option<String>,
    since: Option<SystemTime>,
    reason: Option<String>,
    limit: i64,
}

async fn query(db: &Client, f: &Filter) -> Result<Vec<AuditRow>, CommandError> {
    let rows = db
        .query(SELECT_MATCHING, &[&f.client, &f.since, &f.reason, &f.limit])
        .await
        .map_err(read_failed)?;
    oldest_first(rows)
}

async fn tail(
    db: &Client,
    lines: i64,
    follow: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CommandError> {
    let rows = db
        .query(SELECT_LATEST, &[&lines])
        .await
        .map_err(read_failed)?;
    let rows = oldest_first(rows)?;
    let mut table = Table::new();
    print(out, &rows, json, &mut table)?;
    if !follow {
        return Ok(());
    }
    let mut last = rows.last().map_or(0, |r| r.id);
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let rows = db
            .query(SELECT_AFTER, &[&last])
            .await
            .map_err(read_failed)?
            .iter()
            .map(AuditRow::of)
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_failed)?;
        if let Some(row) = rows.last() {
            last = row.id;
        }
        print(out, &rows, json, &mut table)?;
    }
}

/// Rows read newest first, in the order they happened.
fn oldest_first(rows: Vec<Row>) -> Result<Vec<AuditRow>, CommandError> {
    let mut rows = rows
        .iter()
        .map(AuditRow::of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_failed)?;
    rows.reverse();
    Ok(rows)
}

fn print(
    out: &mut impl Write,
    rows: &[AuditRow],
    json: bool,
    table: &mut Table,
) -> Result<(), CommandError> {
    if json {
        for row in rows {
            serde_json::to_writer(&mut *out, row).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    } else {
        table.print(out, rows)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_durations_days_and_rfc3339() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let back = |s: &str| now.duration_since(parse_since(s, now).unwrap()).unwrap();
        assert_eq!(back("1h"), Duration::from_secs(3600));
        assert_eq!(back("30m"), Duration::from_secs(1800));
        assert_eq!(back("7d"), Duration::from_secs(7 * 86_400));
        let at = parse_since("2026-11-24T10:00:00Z", now).unwrap();
        let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_795_514_400);
        for bad in ["yesterday", "0d", "-1h", "2026-11-24"] {
            assert!(
                matches!(parse_since(bad, now), Err(CommandError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_known_reasons_and_bounded_counts_are_accepted() {
        assert!(parse_reason("invalid_credentials").is_ok());
        let Err(CommandError::Usage(message)) = parse_reason("nope") else {
            panic!("an unknown reason is a usage error");
        };
        assert!(message.contains("rate_limited"), "{message}");
        assert!(row_count("-n", 0).is_err() && row_count("-n", MAX_ROWS + 1).is_err());
        assert_eq!(row_count("-n", 5).ok(), Some(5));
    }

    #[test]
    fn a_reader_that_went_away_ends_the_output_quietly() {
        let closed = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(closed_output(&CommandError::from(closed)));
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(!closed_output(&CommandError::from(full)));
        assert!(!closed_output(&failed("reading the audit log failed")));
    }
}
