//! PostgreSQL mode: the connection pool and the schema migrations.
//!
//! This module owns turning a database URL into connections and keeping the
//! schema in step with the binary (`migrate`). It holds no policy queries:
//! those live beside the code that runs them. A URL may carry a password, so
//! nothing here ever prints one: errors name the host and database at most.

pub mod migrate;
pub mod store;

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// How long opening one connection may take when the URL does not say
/// (`connect_timeout=`): a database that does not answer is an outage to
/// report, not something to wait on forever.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a free pooled connection before it gets an
/// error (and the request fails closed) instead of queueing without bound.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The parser's own message can quote characters of the URL, password
    /// included, so it is deliberately not kept.
    #[error("invalid PostgreSQL URL (not shown: it may hold a password)")]
    InvalidUrl,
    #[error("cannot build the PostgreSQL pool for {target}")]
    Pool {
        target: String,
        #[source]
        source: deadpool_postgres::BuildError,
    },
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A pool of at most `max_size` connections to `url`. Nothing is opened
/// until the first `get`.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    let config = parse(url)?;
    let target = describe(&config);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // The listener, not a probe query per checkout, notices a
            // database that went away; a dead connection fails one query.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(DEFAULT_POOL_WAIT))
        .build()
        .map_err(|source| DbError::Pool { target, source })
}

/// One connection outside any pool (migrations, start-up checks), its
/// connection task spawned on the current runtime. Await the handle after
/// dropping the client to close the session cleanly.
pub async fn connect(url: &str) -> Result<(Client, tokio::task::JoinHandle<()>), DbError> {
    let config = parse(url)?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect {
            target: describe(&config),
            source,
        })?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
        }
    });
    Ok((client, task))
}

/// The URL parsed, with the defaults gatekeeper relies on filled in.
fn parse(url: &str) -> Result<Config, DbError> {
    let mut config = Config::from_str(url).map_err(|_| DbError::InvalidUrl)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// `host:port/dbname`, for messages: everything an operator needs to tell
/// which database was meant, and never the user's password.
fn describe(config: &Config) -> String {
    let mut out = String::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match host {
            Host::Tcp(name) => out.push_str(name),
            #[cfg(unix)]
            Host::Unix(path) => out.push_str(&path.display().to_string()),
        }
        if let Some(port) = config.get_ports().get(i).or(config.get_ports().first()) {
            let _ = write!(out, ":{port}");
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    let dbname = config.get_dbname().or(config.get_user()).unwrap_or("?");
    let _ = write!(out, "/{dbname}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://alice:hunter2@db.internal:6543/policy";

    #[test]
    fn description_names_host_port_and_database_but_not_the_password() {
        let config = parse(URL).unwrap();
        assert_eq!(describe(&config), "db.internal:6543/policy");
    }

    #[test]
    fn an_invalid_url_is_reported_without_quoting_it() {
        let err = parse("postgres://alice:hunter2@db:notaport/policy").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("alice"), "{text}");
    }

    #[test]
    fn a_connect_timeout_is_set_unless_the_url_names_one() {
        assert_eq!(
            parse(URL).unwrap().get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        let explicit = parse(&format!("{URL}?connect_timeout=9")).unwrap();
        assert_eq!(
            explicit.get_connect_timeout(),
            Some(&Duration::from_secs(9))
        );
    }

    #[tokio::test]
    async fn a_failed_connection_names_the_target_but_not_the_password() {
        // Port 1 on loopback: refused at once, no server needed.
        let err = connect("postgres://alice:hunter2@127.0.0.1:1/policy")
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("127.0.0.1:1/policy"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_pool_is_built_without_connecting() {
        let pool = pool("postgres://alice:hunter2@127.0.0.1:1/policy", 4).unwrap();
        assert_eq!(pool.status().max_size, 4);
    }
}
