//! Private Redis topologies (a 3-master Cluster, a master, a replica and
//! three Sentinels) started by `scripts/redis_topologies.sh` on loopback
//! ports of the test's choosing, and stopped on drop.

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/redis_topologies.sh")
}

/// Whether `redis-server` (and so the topologies) can run here.
pub fn available() -> bool {
    let found = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    found("redis-server") && found("redis-cli")
}

/// One running topology; stopped when dropped.
pub struct Topology {
    kind: &'static str,
    dir: tempfile::TempDir,
    base: u16,
    /// Cluster: a replica for each master, on `base`+3..`base`+5.
    replicas: bool,
}

impl Topology {
    /// A Cluster on `base`..`base`+2, or `None` (with a message) when
    /// redis-server is missing.
    pub fn cluster(base: u16) -> Option<Topology> {
        Topology::start("cluster", base, false)
    }

    /// A Cluster of 3 masters on `base`..`base`+2 and their replicas on
    /// `base`+3..`base`+5 (which is which may change with failovers).
    pub fn cluster_with_replicas(base: u16) -> Option<Topology> {
        Topology::start("cluster", base, true)
    }

    /// Master `base`, replica `base`+1, Sentinels `base`+10..`base`+12.
    pub fn sentinel(base: u16) -> Option<Topology> {
        Topology::start("sentinel", base, false)
    }

    fn start(kind: &'static str, base: u16, replicas: bool) -> Option<Topology> {
        if !available() {
            eprintln!("SKIPPED: redis-server or redis-cli not found; no {kind} to test against");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let topology = Topology {
            kind,
            dir,
            base,
            replicas,
        };
        let out = topology.run("start");
        assert!(out.0, "starting the {kind} failed: {}", out.1);
        Some(topology)
    }

    fn run(&self, action: &str) -> (bool, String) {
        let out = Command::new("bash")
            .arg(script())
            .args([action, self.kind])
            .arg(self.dir.path())
            .arg(self.base.to_string())
            .env(
                "TOPOLOGY_CLUSTER_REPLICAS",
                if self.replicas { "1" } else { "0" },
            )
            .output()
            .expect("run redis_topologies.sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// `GATEKEEPER_REDIS_URL` for this topology.
    pub fn url(&self) -> String {
        let b = self.base;
        match self.kind {
            "cluster" => format!(
                "redis+cluster://127.0.0.1:{b},127.0.0.1:{},127.0.0.1:{}",
                b + 1,
                b + 2
            ),
            _ => format!(
                "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/mymaster",
                b + 10,
                b + 11,
                b + 12
            ),
        }
    }

    /// The data nodes' ports (of a cluster: every node; master and replica).
    pub fn nodes(&self) -> Vec<u16> {
        let b = self.base;
        match (self.kind, self.replicas) {
            ("cluster", false) => vec![b, b + 1, b + 2],
            ("cluster", true) => (b..b + 6).collect(),
            _ => vec![b, b + 1],
        }
    }

    /// Sentinel: the master's port now.
    pub fn master(&self) -> u16 {
        let (ok, out) = self.run("master");
        assert!(ok, "no master: {out}");
        out.trim().parse().expect("a port")
    }

    /// A `SENTINEL FAILOVER` or (cluster with replicas) a `CLUSTER
    /// FAILOVER` on a replica, waited for; the new master's port.
    pub fn failover(&self) -> u16 {
        let (ok, out) = self.run("failover");
        assert!(ok, "failover: {out}");
        out.trim().parse().expect("a port")
    }

    /// `redis-cli -p port args…`, its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys of `node` that start with `prefix`.
    pub fn keys(&self, node: u16, prefix: &str) -> Vec<String> {
        let pattern = format!("{prefix}*");
        self.cli(node, &["--scan", "--pattern", &pattern])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let (ok, out) = self.run("stop");
        if !ok {
            eprintln!("stopping the {}: {out}", self.kind);
        }
    }
}
