//! `GATEKEEPER_REDIS_URL`: which Redis topology, read from the URL's scheme.
//!
//! - `redis://[[user]:password@]host[:port][/db]`, `rediss://…`,
//!   `unix:///path` — one node, parsed by the Redis client as before.
//! - `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master[/db]`
//!   — ask the Sentinels (port 26379 by default) for the master named
//!   `master`, and again after a failover. The form redis-py's ecosystem
//!   uses (Redis-Sentinel-Url, Prefect, RedisVL). The user and password
//!   authenticate to the data nodes; the Sentinels are asked without.
//! - `redis+cluster://[[user]:password@]host[:port][,host[:port]…][/]` —
//!   a Redis Cluster (or Valkey cluster), `host`s being seed nodes (port
//!   6379 by default); the client learns the slot map from them and follows
//!   `MOVED`/`ASK`. A cluster has database 0 only.
//!
//! Nothing here connects, and no error repeats the URL (it may hold a
//! password).

/// Where the Redis state lives. `Debug` prints no credential.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One node: the URL as given.
    Single(String),
    /// The Sentinels (`redis://host:port` each), the master's name, and
    /// `redis://[userinfo@]-/db` for the data nodes' credentials and db.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        node: String,
    },
    /// Seed nodes, each `redis://[userinfo@]host:port`.
    Cluster { nodes: Vec<String> },
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Single(_) => f.write_str("Single"),
            RedisTarget::Sentinel {
                sentinels, master, ..
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .finish_non_exhaustive(),
            RedisTarget::Cluster { nodes } => {
                write!(f, "Cluster {{ {} seed nodes }}", nodes.len())
            }
        }
    }
}

const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

/// What a bad URL is told (never the URL itself).
pub const EXPECTED: &str = "expected redis://[user:password@]host[:port][/db], unix:///path, \
     redis+sentinel://[user:password@]host[:port][,host[:port]...]/master[/db] or \
     redis+cluster://[user:password@]host[:port][,host[:port]...]";

/// The topology `url` names, checked as far as can be without connecting.
pub fn parse(url: &str) -> Result<RedisTarget, &'static str> {
    if let Some(rest) = strip_scheme(url, "redis+sentinel://") {
        return sentinel(rest);
    }
    if let Some(rest) = strip_scheme(url, "redis+cluster://") {
        return cluster(rest);
    }
    if url.contains("+sentinel://") || url.contains("+cluster://") {
        return Err("TLS to Sentinel or Cluster (rediss+…) is not supported");
    }
    match deadpool_redis::redis::IntoConnectionInfo::into_connection_info(url) {
        Ok(_) => Ok(RedisTarget::Single(url.to_owned())),
        Err(_) => Err(EXPECTED),
    }
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// `userinfo@hosts` and the path after them (without its `/`).
struct Parts<'a> {
    userinfo: Option<&'a str>,
    hosts: Vec<String>,
    path: &'a str,
}

fn parts(rest: &str, default_port: u16) -> Result<Parts<'_>, &'static str> {
    if rest.contains(['?', '#']) {
        return Err("options (?…) are not supported in a Sentinel or Cluster URL");
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let hosts = hosts
        .split(',')
        .map(|h| host_port(h, default_port))
        .collect::<Option<Vec<_>>>()
        .ok_or("expected host[:port] for every node, separated by commas")?;
    Ok(Parts {
        userinfo,
        hosts,
        path,
    })
}

/// `host[:port]` or `[v6][:port]` as `host:port`; `None` when malformed.
fn host_port(text: &str, default_port: u16) -> Option<String> {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (format!("[{host}]"), port)
        }
        None => match text.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        },
    };
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b))
    };
    if !valid_host(&host) {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    Some(format!("{host}:{port}"))
}

fn with_userinfo(userinfo: Option<&str>, host: &str) -> String {
    match userinfo {
        Some(u) => format!("redis://{u}@{host}"),
        None => format!("redis://{host}"),
    }
}

fn sentinel(rest: &str) -> Result<RedisTarget, &'static str> {
    let p = parts(rest, SENTINEL_PORT)?;
    let (master, db) = p.path.split_once('/').unwrap_or((p.path, ""));
    if master.is_empty() {
        return Err("a Sentinel URL names its master: redis+sentinel://hosts/master[/db]");
    }
    if db.contains('/') || (!db.is_empty() && db.parse::<u32>().is_err()) {
        return Err("expected /master[/db] after the Sentinel hosts");
    }
    let node = format!("{}/{}", with_userinfo(p.userinfo, &p.hosts[0]), db);
    // The client checks the credentials' encoding; the address is a stand-in.
    if deadpool_redis::redis::IntoConnectionInfo::into_connection_info(node.as_str()).is_err() {
        return Err(EXPECTED);
    }
    let sentinels = p.hosts.iter().map(|h| format!("redis://{h}")).collect();
    Ok(RedisTarget::Sentinel {
        sentinels,
        master: master.to_owned(),
        node,
    })
}

fn cluster(rest: &str) -> Result<RedisTarget, &'static str> {
    let p = parts(rest, REDIS_PORT)?;
    if !matches!(p.path, "" | "0") {
        return Err("a Redis Cluster has database 0 only");
    }
    let nodes: Vec<String> = p
        .hosts
        .iter()
        .map(|h| with_userinfo(p.userinfo, h))
        .collect();
    for node in &nodes {
        if deadpool_redis::redis::IntoConnectionInfo::into_connection_info(node.as_str()).is_err() {
            return Err(EXPECTED);
        }
    }
    Ok(RedisTarget::Cluster { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_is_one_node_as_before() {
        let url = "redis://:pw@cache:6380/5";
        assert_eq!(parse(url), Ok(RedisTarget::Single(url.into())));
        assert!(matches!(
            parse("unix:///run/redis.sock"),
            Ok(RedisTarget::Single(_))
        ));
        assert_eq!(parse("http://cache"), Err(EXPECTED));
    }

    #[test]
    fn a_sentinel_url_lists_sentinels_and_names_the_master() {
        let t = parse("redis+sentinel://u:p%40w@s1,s2:26380,[::1]:1/mymaster/3").unwrap();
        let RedisTarget::Sentinel {
            sentinels,
            master,
            node,
        } = t
        else {
            panic!("not sentinel");
        };
        assert_eq!(
            sentinels,
            ["redis://s1:26379", "redis://s2:26380", "redis://[::1]:1"]
        );
        assert_eq!(master, "mymaster");
        assert_eq!(node, "redis://u:p%40w@s1:26379/3");
        assert!(matches!(
            parse("REDIS+SENTINEL://s1/m"),
            Ok(RedisTarget::Sentinel { .. })
        ));
    }

    #[test]
    fn a_cluster_url_lists_seed_nodes() {
        let t = parse("redis+cluster://:pw@n1,n2:7001").unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster {
                nodes: vec!["redis://:pw@n1:6379".into(), "redis://:pw@n2:7001".into()]
            }
        );
        assert!(!format!("{t:?}").contains("pw"));
    }

    #[test]
    fn malformed_topologies_are_refused() {
        for bad in [
            "redis+sentinel://s1",
            "redis+sentinel://s1/",
            "redis+sentinel://s1/m/x",
            "redis+sentinel://s1:0/m",
            "redis+sentinel://s1,,s2/m",
            "redis+sentinel://s1/m?x=1",
            "redis+cluster://",
            "redis+cluster://n1/2",
            "redis+cluster://n1:99999",
            "rediss+cluster://n1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
