//! The connections for the topology `GATEKEEPER_REDIS_URL` names
//! (`config::redis_url`): one node, a master found through Sentinel, or a
//! Redis Cluster. Everything above sees one [`Connection`], a
//! `ConnectionLike`, so the callers of `Redis::call` never ask which.
//!
//! - One node: a multiplexed connection, as before.
//! - Sentinel: the pool asks the Sentinels for the master (the client
//!   checks its `ROLE`) each time it opens a connection. After a failover
//!   the old master refuses writes (`READONLY`) or stops answering; either
//!   is a failed call, which drops every thread's connection
//!   (`Redis::failed`), so the next ones are opened to the new master.
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
    Sentinel(deadpool_redis::sentinel::Pool),
    Cluster(deadpool_redis::cluster::Pool),
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
                Pool::Sentinel(config.create_pool(runtime).map_err(failed)?)
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
            Pool::Sentinel(p) => {
                Connection::Node(deadpool_redis::sentinel::Connection::take(p.get().await?))
            }
            Pool::Cluster(p) => {
                Connection::Cluster(deadpool_redis::cluster::Connection::take(p.get().await?))
            }
        })
    }

    pub fn status(&self) -> Status {
        match self {
            Pool::Single(p) => p.status(),
            Pool::Sentinel(p) => p.status(),
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
