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
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

/// How long opening one connection may take when the URL does not say
/// (`connect_timeout=`): a database that does not answer is an outage to
/// report, not something to wait on forever.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a free pooled connection before it gets an
/// error (and the request fails closed) instead of queueing without bound.
/// The request path bounds the whole look-up tighter (`GATEKEEPER_DB_TIMEOUT`).
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(5);

/// TCP keepalive unless the URL says otherwise (`keepalives_idle=`): an idle
/// connection to a host that vanished is noticed in about half a minute
/// (idle, then three probes), not the operating system's two hours.
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;

/// What the URL may not say (`tcp_user_timeout=`): data the server has not
/// acknowledged for this long closes the connection (Linux), so a query
/// sent into a network partition does not hold its connection for the
/// kernel's ~15 minutes of retransmissions.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// tokio-postgres's own default keepalive idle time, which `parse` replaces.
const LIBRARY_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

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
    /// The server accepted the connection and then did not answer.
    #[error("PostgreSQL at {target} did not answer within {}ms", waited.as_millis())]
    Silent { target: String, waited: Duration },
}

/// A pool of at most `max_size` connections to `url`. Nothing is opened
/// until the first `get`.
pub fn pool(url: &str, max_size: usize) -> Result<Pool, DbError> {
    let config = parse(url)?;
    let target = describe(&config);
    let handshake = handshake_bound(&config);
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
        // The connect timeout covers the TCP connect only: a server that
        // accepts and never answers would hold the start-up handshake.
        .create_timeout(Some(handshake))
        .recycle_timeout(Some(handshake))
        .build()
        .map_err(|source| DbError::Pool { target, source })
}

/// One connection outside any pool (migrations, start-up checks), its
/// connection task spawned on the current runtime. Await the handle after
/// dropping the client to close the session cleanly.
pub async fn connect(url: &str) -> Result<(Client, tokio::task::JoinHandle<()>), DbError> {
    let (client, connection) = open(&parse(url)?).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
        }
    });
    Ok((client, task))
}

/// One connection from a parsed URL, the start-up handshake bounded like
/// the TCP connect; the caller drives the connection (to read notifications,
/// say).
pub async fn open(config: &Config) -> Result<(Client, Connection<Socket, NoTlsStream>), DbError> {
    let waited = handshake_bound(config);
    match tokio::time::timeout(waited, config.connect(NoTls)).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(source)) => Err(DbError::Connect {
            target: describe(config),
            source,
        }),
        Err(_) => Err(DbError::Silent {
            target: describe(config),
            waited,
        }),
    }
}

/// The URL parsed, with the defaults gatekeeper relies on filled in: a
/// connect timeout, TCP keepalive and a TCP user timeout, each unless the
/// URL sets its own.
pub fn parse(url: &str) -> Result<Config, DbError> {
    let mut config = Config::from_str(url).map_err(|_| DbError::InvalidUrl)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_keepalives_idle() == LIBRARY_KEEPALIVES_IDLE {
        config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    }
    Ok(config)
}

/// How long opening a connection may take in all, handshake included.
fn handshake_bound(config: &Config) -> Duration {
    config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
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

    #[test]
    fn keepalive_and_a_tcp_user_timeout_are_set_unless_the_url_names_them() {
        let config = parse(URL).unwrap();
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        let explicit = parse(&format!("{URL}?keepalives_idle=60&tcp_user_timeout=3")).unwrap();
        assert_eq!(explicit.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(
            explicit.get_tcp_user_timeout(),
            Some(&Duration::from_secs(3))
        );
    }

    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_is_given_up_on() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let url = format!("postgres://alice:hunter2@127.0.0.1:{port}/policy?connect_timeout=1");
        let started = std::time::Instant::now();
        let err = connect(&url).await.unwrap_err();
        assert!(matches!(err, DbError::Silent { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!format!("{err} {err:?}").contains("hunter2"));
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
