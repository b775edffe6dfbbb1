//! The connections for the topology `GATEKEEPER_REDIS_URL` names
//! (`config::redis_url`): one node, a master found through Sentinel, or a
//! Redis Cluster. Everything above sees one [`Connection`], a
//! `ConnectionLike`, so the callers of `Redis::call` never ask which.
//!
//! - One node: a multiplexed connection, as before.
//! - Sentinel: the pool asks the Sentinels for the master (the client
//!   checks its `ROLE`) each time it opens a connection. After a failover
//!   the old master may go on accepting writes for seconds, until a
//!   Sentinel demotes it (and only then kills its clients): writes there
//!   would be lost, and replicas opening new connections would count on
//!   the new master meanwhile. So the probe asks the Sentinels which node
//!   is the master every round ([`Pool::master_moved`]); when it changed,
//!   every thread's connection is dropped and the next ones go to the new
//!   master. A master that stops answering or refuses writes (`READONLY`)
//!   fails calls, which drops the connections too (`Redis::failed`).
//! - Cluster: the client learns the slot map from the seed nodes, follows
//!   `MOVED`/`ASK` and refreshes the map itself. A script's keys must hash
//!   to one slot: `Redis::hash_tag` names keys so that they do.
//!
//! This module opens connections; it decides nothing and never logs the
//! URL.

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use deadpool_redis::{PoolConfig, PoolError, Runtime, Status};

use crate::config::{RedisSettings, RedisTarget};

/// A connection of any topology; cheap to clone (both kinds multiplex).
#[derive(Clone)]
pub enum Connection {
    /// One node, or the master Sentinel named.
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The pool that opens connections for one topology. It bounds how many
/// are opened at once and how long that may take.
pub enum Pool {
    Single(deadpool_redis::Pool),
    Sentinel(deadpool_redis::sentinel::Pool, Box<MasterWatch>),
    Cluster(deadpool_redis::cluster::Pool),
}

/// Which node the Sentinels name as the master, as last seen. Asks one
/// Sentinel at a time over a connection it keeps; a Sentinel that fails or
/// is too slow is dropped for the next one.
pub struct MasterWatch {
    sentinels: Vec<redis::Client>,
    name: String,
    asking: tokio::sync::Mutex<Asking>,
    master: std::sync::Mutex<Option<String>>,
}

#[derive(Default)]
struct Asking {
    /// The Sentinel asked last, and its connection while it answers.
    at: usize,
    conn: Option<MultiplexedConnection>,
}

impl MasterWatch {
    fn new(sentinels: &[String], name: &str) -> anyhow::Result<MasterWatch> {
        let sentinels = sentinels
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("GATEKEEPER_REDIS_URL: bad Sentinel addresses"))?;
        Ok(MasterWatch {
            sentinels,
            name: name.to_owned(),
            asking: tokio::sync::Mutex::new(Asking::default()),
            master: std::sync::Mutex::new(None),
        })
    }

    /// `host:port` of the master one Sentinel names. Unbounded: the caller
    /// bounds it, and a cancelled ask leaves no connection behind (it is
    /// taken out while in use), so the next ask tries the next Sentinel.
    async fn ask(&self) -> Option<String> {
        let mut asking = self.asking.lock().await;
        let mut conn = match asking.conn.take() {
            Some(conn) => conn,
            None => {
                asking.at = (asking.at + 1) % self.sentinels.len();
                let sentinel = &self.sentinels[asking.at];
                sentinel.get_multiplexed_async_connection().await.ok()?
            }
        };
        let (host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.name)
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await
            .ok()??;
        asking.conn = Some(conn);
        Some(format!("{host}:{port}"))
    }
}

impl Pool {
    /// A pool for `settings`' topology; connects lazily.
    pub fn new(settings: &RedisSettings, pool: PoolConfig) -> anyhow::Result<Pool> {
        let failed = |_| anyhow::anyhow!("GATEKEEPER_REDIS_URL: cannot build a Redis pool");
        let runtime = Some(Runtime::Tokio1);
        Ok(match &settings.target {
            RedisTarget::Single(url) => {
                let mut config = deadpool_redis::Config::from_url(url.as_str());
                config.pool = Some(pool);
                Pool::Single(config.create_pool(runtime).map_err(failed)?)
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                node,
            } => {
                let mut config = deadpool_redis::sentinel::Config::from_urls(
                    sentinels.clone(),
                    master.clone(),
                    deadpool_redis::sentinel::SentinelServerType::Master,
                )
                .with_node_connection_info(Some(node_info(node)?));
                config.pool = Some(pool);
                let watch = MasterWatch::new(sentinels, master)?;
                Pool::Sentinel(
                    config.create_pool(runtime).map_err(failed)?,
                    Box::new(watch),
                )
            }
            RedisTarget::Cluster { nodes } => {
                let mut config = deadpool_redis::cluster::Config::from_urls(nodes.clone());
                config.pool = Some(pool);
                Pool::Cluster(config.create_pool(runtime).map_err(failed)?)
            }
        })
    }

    /// Whether keys of one script call must share a hash slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Pool::Cluster(_))
    }

    /// A new connection, taken out of the pool for good.
    pub async fn take(&self) -> Result<Connection, PoolError> {
        Ok(match self {
            Pool::Single(p) => Connection::Node(deadpool_redis::Connection::take(p.get().await?)),
            Pool::Sentinel(p, _) => {
                Connection::Node(deadpool_redis::sentinel::Connection::take(p.get().await?))
            }
            Pool::Cluster(p) => {
                Connection::Cluster(deadpool_redis::cluster::Connection::take(p.get().await?))
            }
        })
    }

    /// Sentinel: whether the Sentinels now name another master than when
    /// last asked (the first answer moves nothing). Asks within `timeout`;
    /// no answer moves nothing either (the calls tell whether Redis works).
    /// Always `false` for the other topologies.
    pub async fn master_moved(&self, timeout: std::time::Duration) -> bool {
        let Pool::Sentinel(_, watch) = self else {
            return false;
        };
        let Ok(Some(now)) = tokio::time::timeout(timeout, watch.ask()).await else {
            return false;
        };
        let mut seen = watch.master.lock().unwrap_or_else(|e| e.into_inner());
        match seen.replace(now.clone()) {
            Some(before) if before != now => {
                tracing::warn!(from = %before, to = %now, "Redis Sentinel names a new master; reconnecting");
                true
            }
            _ => false,
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Pool::Single(p) => p.status(),
            Pool::Sentinel(p, _) => p.status(),
            Pool::Cluster(p) => p.status(),
        }
    }
}

/// The data nodes' credentials and database, from `redis://[userinfo@]-/db`.
fn node_info(node: &str) -> anyhow::Result<deadpool_redis::sentinel::SentinelNodeConnectionInfo> {
    let info: redis::ConnectionInfo = node
        .into_connection_info()
        .map_err(|_| anyhow::anyhow!("GATEKEEPER_REDIS_URL: bad credentials or database"))?;
    Ok(deadpool_redis::sentinel::SentinelNodeConnectionInfo {
        tls_mode: None,
        redis_connection_info: Some(info.redis.into()),
    })
}
