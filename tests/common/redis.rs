//! The real Redis, shared by tests running in parallel: each test gets a
//! key prefix of its own (`gktest:<random>:`), looks only at its own keys,
//! and deletes them when it ends.
//!
//! The server is `GATEKEEPER_TEST_REDIS` (a `redis://host:port` URL without
//! a database number), by default `redis://127.0.0.1:6379`.

use std::time::Duration;

use deadpool_redis::redis::{self, Connection};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The server's URL, without a database number.
pub fn server_url() -> String {
    std::env::var("GATEKEEPER_TEST_REDIS").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The server's address, for a proxy in front of it.
pub fn server_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs as _;
    let url = server_url();
    let host_port = url.trim_start_matches("redis://").trim_end_matches('/');
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("GATEKEEPER_TEST_REDIS must be redis://host:port, not {url}"))
}

/// One test's slice of Redis: a prefix in one logical database.
pub struct TestRedis {
    pub prefix: String,
    pub db: u8,
}

impl TestRedis {
    /// A fresh prefix in database 0.
    pub fn new() -> TestRedis {
        TestRedis::in_db(0)
    }

    /// A fresh prefix in logical database `db`, whose nonce memory began
    /// a minute ago (its epoch marker, README "Redis"): signatures made
    /// now are judged as by a Redis that kept its data.
    pub fn in_db(db: u8) -> TestRedis {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).expect("random bytes");
        let slice = TestRedis {
            prefix: format!("gktest:{}:", hex::encode(bytes)),
            db,
        };
        slice.set_nonce_epoch(super::hmac::unix_now() - 60);
        slice
    }

    /// Records that this slice's nonce memory began at Unix second `at`,
    /// and that the server has the nonce script (else gatekeeper's first
    /// call would begin a new epoch, as after a Redis restart).
    pub fn set_nonce_epoch(&self, at: i64) {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(gatekeeper::state::redis::NONCE_SCRIPT)
            .query(&mut self.connect())
            .expect("SCRIPT LOAD");
        let _: () = redis::cmd("SET")
            .arg(format!("{}nonce-epoch", self.prefix))
            .arg(at)
            .query(&mut self.connect())
            .expect("SET the nonce epoch");
    }

    /// `GATEKEEPER_REDIS_URL` for gatekeeper: this database on the server.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.db)
    }

    /// The same database reached through `addr` (a proxy) instead.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("redis://{addr}/{}", self.db)
    }

    /// `GATEKEEPER_REDIS_URL` and `GATEKEEPER_REDIS_PREFIX` for this slice.
    /// The settings of a gatekeeper using this slice. The timeout is 1 s,
    /// not the default 100 ms: on a loaded 2-core CI machine a first
    /// connection can take longer than 100 ms, and a replica that falls
    /// back to in-process state would fail tests about shared state for a
    /// reason they do not test (the outage tests set their own timeout).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GATEKEEPER_REDIS_URL", self.url()),
            ("GATEKEEPER_REDIS_PREFIX", self.prefix.clone()),
            ("GATEKEEPER_REDIS_TIMEOUT", "1s".to_owned()),
        ]
    }

    pub fn connect(&self) -> Connection {
        connect(self.db)
    }

    /// The keys of this slice matching `prefix` + `pattern` (a SCAN glob).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        keys_in(&mut self.connect(), &format!("{}{pattern}", self.prefix))
    }

    /// The keys matching `prefix` + `pattern` in another database.
    pub fn keys_in_db(&self, db: u8, pattern: &str) -> Vec<String> {
        keys_in(&mut connect(db), &format!("{}{pattern}", self.prefix))
    }

    /// `TTL` of `prefix` + `name`: seconds, -1 without expiry, -2 if absent.
    pub fn ttl(&self, name: &str) -> i64 {
        redis::cmd("TTL")
            .arg(format!("{}{name}", self.prefix))
            .query(&mut self.connect())
            .expect("TTL")
    }

    /// `TTL` of a full key name (as `keys` returns it).
    pub fn ttl_of(&self, key: &str) -> i64 {
        redis::cmd("TTL")
            .arg(key)
            .query(&mut self.connect())
            .expect("TTL")
    }

    pub fn get(&self, name: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(format!("{}{name}", self.prefix))
            .query(&mut self.connect())
            .expect("GET")
    }

    pub fn exists(&self, name: &str) -> bool {
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("{}{name}", self.prefix))
            .query(&mut self.connect())
            .expect("EXISTS");
        n == 1
    }

    /// Deletes every key of this slice (in its database and in database 0).
    pub fn clear(&self) {
        for db in [self.db, 0] {
            let mut conn = connect(db);
            let keys = keys_in(&mut conn, &format!("{}*", self.prefix));
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query(&mut conn).expect("DEL");
            }
        }
    }
}

impl Drop for TestRedis {
    /// Best effort: keys left by a killed run carry the `gktest:` prefix.
    fn drop(&mut self) {
        let cleared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.clear()));
        if cleared.is_err() {
            eprintln!("warning: could not delete the keys of {}", self.prefix);
        }
    }
}

fn connect(db: u8) -> Connection {
    let url = format!("{}/{db}", server_url());
    let client = redis::Client::open(url.as_str()).expect("a Redis URL (GATEKEEPER_TEST_REDIS)");
    client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to the test Redis ({url}): {e}"))
}

fn keys_in(conn: &mut Connection, pattern: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .expect("SCAN");
        found.extend(batch);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}
