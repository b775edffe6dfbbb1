//! The second-level credential cache (DESIGN §6): API key records in Redis,
//! shared by every replica, between the in-process cache and PostgreSQL.
//!
//! # Layout
//!
//! - `<prefix>keys:generation` — a counter; every record name includes it.
//!   `flush` increments it, which orphans every record at once (they then
//!   expire): a replica does so whenever its PostgreSQL listener
//!   (re)connects, because notifications may have been missed.
//! - `<prefix>key:<generation>:<hex SHA-256 of the key>` — the record as
//!   JSON (`id`, `client`, `status`, `expires_at`); never the key itself.
//!   Its TTL slides: every hit resets it.
//! - `<prefix>gone:<hex digest>` — a tombstone written by `forget`
//!   (revocation, deletion). While it lives, no fill may write the record
//!   back, so a look-up that read PostgreSQL just before the revocation
//!   cannot resurrect the key after it.
//!
//! Each operation is one script, so one round trip and atomic. The record
//! names are built inside the scripts from the generation they read, so in
//! Redis Cluster every name of the cache carries one hash tag after the
//! prefix (`<prefix>{key-cache}keys:generation`, …): the whole cache lives
//! on one slot, which a script may touch at once. It is read only when the
//! in-process cache misses, so one node carries it easily.
//!
//! Only records PostgreSQL returned go in: an unknown key is never cached,
//! and the caller re-checks status and expiry on every hit.

use deadpool_redis::redis::{self, Script};
use serde::{Deserialize, Serialize};

use super::{Redis, Unavailable};
use crate::core::model::{Digest, KeyRecord, KeyStatus};

/// How long a tombstone blocks fills: longer than any look-up may take
/// (the caller does not fill from a look-up older than `FILL_DEADLINE`).
pub const TOMBSTONE_SECS: u64 = 60;
/// A look-up that took longer than this may have read a state older than a
/// tombstone: its result is used but not written to Redis.
pub const FILL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

const GET: &str = r"
local gen = redis.call('GET', KEYS[1]) or '0'
local v = redis.call('GETEX', ARGV[1] .. 'key:' .. gen .. ':' .. ARGV[2], 'EX', ARGV[3])
return {gen, v or ''}
";

const FILL: &str = r"
local gen = redis.call('GET', KEYS[1]) or '0'
if gen ~= ARGV[5] then return 0 end
if redis.call('EXISTS', ARGV[1] .. 'gone:' .. ARGV[2]) == 1 then return 0 end
redis.call('SET', ARGV[1] .. 'key:' .. gen .. ':' .. ARGV[2], ARGV[3], 'EX', ARGV[4])
return 1
";

const FORGET: &str = r"
local gen = redis.call('GET', KEYS[1]) or '0'
redis.call('SET', ARGV[1] .. 'gone:' .. ARGV[2], '1', 'EX', ARGV[3])
return redis.call('DEL', ARGV[1] .. 'key:' .. gen .. ':' .. ARGV[2])
";

/// A record as Redis holds it.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    client: String,
    status: String,
    expires_at: Option<i64>,
}

/// What a look-up found, and the generation to fill under on a miss.
pub enum Cached {
    Hit(KeyRecord),
    Miss { generation: String },
}

pub struct KeyCache {
    ttl_secs: u64,
    get: Script,
    fill: Script,
}

impl KeyCache {
    pub fn new(ttl: std::time::Duration) -> KeyCache {
        KeyCache {
            ttl_secs: ttl.as_secs().max(1),
            get: Script::new(GET),
            fill: Script::new(FILL),
        }
    }

    /// The record for `digest`, resetting its TTL. A record that does not
    /// parse is a miss (PostgreSQL will answer), never an allow.
    pub async fn get(&self, redis: &Redis, digest: &Digest) -> Result<Cached, Unavailable> {
        let (prefix, generation_key) = names(redis);
        let name = hex::encode(digest.0);
        let (generation, value): (String, String) = redis
            .call("key_cache_get", |mut conn| async move {
                self.get
                    .key(&generation_key)
                    .arg(&prefix)
                    .arg(&name)
                    .arg(self.ttl_secs)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        match serde_json::from_str::<Stored>(&value)
            .ok()
            .and_then(|s| record(s, digest))
        {
            Some(found) => Ok(Cached::Hit(found)),
            None => Ok(Cached::Miss { generation }),
        }
    }

    /// Writes what PostgreSQL returned, unless the generation moved or the
    /// key was forgotten meanwhile.
    pub async fn fill(
        &self,
        redis: &Redis,
        found: &KeyRecord,
        generation: &str,
    ) -> Result<(), Unavailable> {
        let stored = Stored {
            id: found.id.to_string(),
            client: found.client_id.to_string(),
            status: found.status.as_str().to_owned(),
            expires_at: found.expires_at,
        };
        let value = serde_json::to_string(&stored).map_err(|_| Unavailable)?;
        let (prefix, generation_key) = names(redis);
        let name = hex::encode(found.digest.0);
        redis
            .call("key_cache_fill", |mut conn| async move {
                self.fill
                    .key(&generation_key)
                    .arg(&prefix)
                    .arg(&name)
                    .arg(&value)
                    .arg(self.ttl_secs)
                    .arg(generation)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(drop)
    }
}

/// Removes the record of `digest` and blocks fills for a while: revocation
/// and deletion. Usable without a `KeyCache` (the CLI).
pub async fn forget(redis: &Redis, digest: &Digest) -> Result<(), Unavailable> {
    let (prefix, generation_key) = names(redis);
    let name = hex::encode(digest.0);
    redis
        .call("key_cache_forget", |mut conn| async move {
            Script::new(FORGET)
                .key(&generation_key)
                .arg(&prefix)
                .arg(&name)
                .arg(TOMBSTONE_SECS)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
}

/// Orphans every record: after notifications may have been missed.
pub async fn flush(redis: &Redis) -> Result<(), Unavailable> {
    let (_, generation_key) = names(redis);
    redis
        .call("key_cache_flush", |mut conn| async move {
            redis::cmd("INCR")
                .arg(&generation_key)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
}

/// The prefix of every name of the cache (the Redis prefix, and in a
/// cluster the cache's hash tag) and the generation counter's name.
fn names(redis: &Redis) -> (String, String) {
    let prefix = format!("{}{}", redis.prefix(), redis.hash_tag("key-cache"));
    let generation = format!("{prefix}keys:generation");
    (prefix, generation)
}

fn record(s: Stored, digest: &Digest) -> Option<KeyRecord> {
    Some(KeyRecord {
        id: s.id.parse().ok()?,
        client_id: s.client.parse().ok()?,
        digest: *digest,
        status: KeyStatus::parse(&s.status)?,
        expires_at: s.expires_at,
    })
}
