//! The Redis topologies deployments run, from Debian's `redis-server`, on loopback: a
//! primary with a replica watched by three Sentinels (failover), and a Redis Cluster of
//! three primaries with a replica each (sharding, a shard's failover). Each node is a
//! [`RedisServer`] (AOF, `appendfsync always`), so a test can kill one and start it again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process;
use crate::redis::RedisServer;

/// The name the Sentinels monitor the primary under.
pub const SERVICE: &str = "tim";
/// How long a failover may take: Sentinel's `down-after-milliseconds` (1 s here), the
/// election and the promotion, on a loaded machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// A primary, one replica and three Sentinels (quorum 2).
pub struct SentinelGroup {
    /// `servers[0]` starts as the primary, `servers[1]` as its replica; after a failover
    /// [`SentinelGroup::primary_port`] says which is which.
    pub servers: Vec<RedisServer>,
    sentinels: Vec<(u16, Child)>,
    dir: TempDir,
}

impl SentinelGroup {
    pub fn start() -> SentinelGroup {
        let primary = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
        let dir = crate::redis::tempdir("sentinels-");
        let mut group = SentinelGroup {
            servers: vec![primary, replica],
            sentinels: Vec::new(),
            dir,
        };
        group.wait_replicated();
        for i in 0..3 {
            let port = free_port();
            let conf = group.dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 5000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    group.dir.path().display(),
                    group.servers[0].port()
                ),
            )
            .expect("sentinel config");
            let log = group.dir.path().join(format!("sentinel-{i}.log"));
            let (stdout, stderr) = process::log_to(&log);
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .expect("redis-server --sentinel");
            group.sentinels.push((port, child));
        }
        // Every Sentinel knows the primary, the replica and the other Sentinels.
        let deadline = Instant::now() + FAILOVER_BOUND;
        while !group.sentinels.iter().all(|(port, _)| {
            let info = cli(*port, &["SENTINEL", "MASTER", SERVICE]);
            field(&info, "num-slaves") == Some("1")
                && field(&info, "num-other-sentinels") == Some("2")
        }) {
            assert!(
                Instant::now() < deadline,
                "the sentinels did not see each other; logs in {}",
                group.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        group
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/tim/0`, as `timd --redis`
    /// takes it.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}/0", hosts.join(","))
    }

    /// The port of the primary, as the first Sentinel that answers says.
    pub fn primary_port(&self) -> u16 {
        for (port, _) in &self.sentinels {
            let out = cli(*port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
            if let Some(p) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                return p;
            }
        }
        panic!("no sentinel names a primary");
    }

    /// The server that is the primary now.
    pub fn primary(&mut self) -> &mut RedisServer {
        let port = self.primary_port();
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .expect("the primary is one of the group's servers")
    }

    /// Kills the primary (SIGKILL) and waits until the Sentinels have promoted the replica;
    /// returns the new primary's port. The old primary stays down ([`RedisServer::start_again`]
    /// brings it back; the Sentinels then make it a replica).
    pub fn fail_over(&mut self) -> u16 {
        let old = self.primary_port();
        self.primary().kill();
        let deadline = Instant::now() + FAILOVER_BOUND;
        loop {
            let now = self.primary_port();
            if now != old && cli(now, &["ROLE"]).starts_with("master") {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "no failover within {FAILOVER_BOUND:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The Sentinels' logs (to print when a test fails).
    pub fn log_paths(&self) -> Vec<PathBuf> {
        (0..self.sentinels.len())
            .map(|i| self.dir.path().join(format!("sentinel-{i}.log")))
            .collect()
    }

    fn wait_replicated(&self) {
        let deadline = Instant::now() + FAILOVER_BOUND;
        while !cli(self.servers[1].port(), &["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            process::kill9(child);
        }
    }
}

/// A slot being moved between primaries ([`ClusterGroup::begin_moving_slot_of`]).
pub struct SlotMove {
    slot: String,
    to_id: String,
}

/// A Redis Cluster: three primaries with a replica each, slots spread by `redis-cli
/// --cluster create`.
pub struct ClusterGroup {
    pub servers: Vec<RedisServer>,
}

impl ClusterGroup {
    pub fn start() -> ClusterGroup {
        let servers: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ])
            })
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(servers.iter().map(|s| format!("127.0.0.1:{}", s.port())));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let group = ClusterGroup { servers };
        group.wait_ok();
        group
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3` (three of the nodes: any
    /// one is enough to find the others).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.servers[..3]
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of(&self, key: &str) -> u16 {
        self.serving(key)
            .unwrap_or_else(|| panic!("no healthy primary serves {key}'s slot"))
    }

    /// The healthy primary serving `key`'s slot, if one does (none while a failure is being
    /// detected or a failover runs).
    fn serving(&self, key: &str) -> Option<u16> {
        let any = self.servers.iter().find(|s| cli_ok(s.port()));
        let port = any.expect("a cluster node answers").port();
        let slot = cli(port, &["CLUSTER", "KEYSLOT", key]);
        let slot: u16 = slot.trim().parse().expect("a slot");
        self.serving_slot(slot)
    }

    /// The healthy primary serving `slot`, as the first node that answers sees it.
    fn serving_slot(&self, slot: u16) -> Option<u16> {
        let any = self.servers.iter().find(|s| cli_ok(s.port()))?;
        primaries(&cli(any.port(), &["CLUSTER", "NODES"]))
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(&slot)))
            .map(|(port, _)| port)
    }

    /// The ports of the healthy primaries that serve slots now (one per shard).
    pub fn primary_ports(&self) -> Vec<u16> {
        let Some(any) = self.servers.iter().find(|s| cli_ok(s.port())) else {
            return Vec::new();
        };
        let mut ports: Vec<u16> = primaries(&cli(any.port(), &["CLUSTER", "NODES"]))
            .into_iter()
            .map(|(port, _)| port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// Kills (SIGKILL) the primary on `port` and waits until its replica took over its slots
    /// (`cluster_state:ok` again); returns the new primary's port. The old one stays down
    /// ([`ClusterGroup::heal`] brings it back as a replica).
    pub fn fail_over_primary(&mut self, port: u16) -> u16 {
        let nodes = cli(port, &["CLUSTER", "NODES"]);
        let slot = primaries(&nodes)
            .into_iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, ranges)| ranges.first().map(|r| *r.start()))
            .unwrap_or_else(|| panic!("port {port} is not a primary serving slots"));
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .expect("a group server")
            .kill();
        let deadline = Instant::now() + FAILOVER_BOUND;
        loop {
            if let Some(now) = self.serving_slot(slot).filter(|p| *p != port) {
                if self.state_ok() {
                    return now;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no shard failover within {FAILOVER_BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every server's log (to keep when a run fails).
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.servers.iter().map(RedisServer::log_path).collect()
    }

    /// Kills the primary of `key`'s shard and waits until its replica took over (the cluster
    /// answers `cluster_state:ok` again and another node serves the slot); returns the new
    /// primary's port.
    pub fn fail_over_shard_of(&mut self, key: &str) -> u16 {
        let old = self.primary_of(key);
        self.fail_over_primary(old)
    }

    /// Starts moving `key`'s slot, with its keys, from its primary to the primary on port
    /// `to` (`CLUSTER SETSLOT … IMPORTING / MIGRATING`, then `MIGRATE` of every key): until
    /// [`ClusterGroup::finish_moving`], the old primary answers `ASK` for the slot's keys.
    pub fn begin_moving_slot_of(&self, key: &str, to: u16) -> SlotMove {
        let from = self.primary_of(key);
        assert_ne!(from, to, "the slot is already there");
        let slot = cli(from, &["CLUSTER", "KEYSLOT", key]).trim().to_owned();
        let id = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id) = (id(from), id(to));
        let ok = |out: String| assert_eq!(out.trim(), "OK", "{out}");
        ok(cli(
            to,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
        ));
        ok(cli(
            from,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
        ));
        let to_port = to.to_string();
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|l| !l.trim().is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            ok(cli(from, &args));
        }
        SlotMove { slot, to_id }
    }

    /// Ends a move: every primary assigns the slot to its new primary (clients that still
    /// go to the old one get `MOVED`).
    pub fn finish_moving(&self, moving: SlotMove) {
        for server in &self.servers {
            let info = cli(server.port(), &["INFO", "replication"]);
            if info.contains("role:master") {
                let out = cli(
                    server.port(),
                    &["CLUSTER", "SETSLOT", &moving.slot, "NODE", &moving.to_id],
                );
                assert_eq!(out.trim(), "OK", "{out}");
            }
        }
        self.wait_ok();
    }

    /// Starts again every server that was killed (each rejoins as a replica of the primary
    /// that replaced it) and waits until every primary has its replica in sync again.
    pub fn heal(&mut self) {
        for server in &mut self.servers {
            if !server.is_running() {
                server.start_again();
            }
        }
        self.wait_ok();
    }

    fn state_ok(&self) -> bool {
        self.servers
            .iter()
            .filter(|s| cli_ok(s.port()))
            .all(|s| cli(s.port(), &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    }

    /// Until the cluster answers `cluster_state:ok` and every primary has its replica in
    /// sync (so `WAIT 1` can succeed).
    fn wait_ok(&self) {
        let deadline = Instant::now() + FAILOVER_BOUND;
        while !(self.state_ok()
            && self.servers.iter().all(|s| {
                let info = cli(s.port(), &["INFO", "replication"]);
                !info.contains("role:master")
                    || (info.contains("connected_slaves:1") && info.contains("state=online"))
            }))
        {
            assert!(Instant::now() < deadline, "the Redis Cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `redis-cli -p PORT ARGS...`, its output ("" if it could not run or connect).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The healthy primaries of a `CLUSTER NODES` answer with the slot ranges each serves
/// (a primary flagged `fail` or `fail?` is left out).
fn primaries(nodes: &str) -> Vec<(u16, Vec<std::ops::RangeInclusive<u16>>)> {
    let mut out = Vec::new();
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
            continue;
        }
        let ranges: Vec<_> = f[8..]
            .iter()
            .filter_map(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                Some(a.parse::<u16>().ok()?..=b.parse::<u16>().ok()?)
            })
            .collect();
        let port = f[1]
            .split('@')
            .next()
            .unwrap_or_default()
            .rsplit(':')
            .next();
        if let (Some(port), false) = (port.and_then(|p| p.parse().ok()), ranges.is_empty()) {
            out.push((port, ranges));
        }
    }
    out
}

fn cli_ok(port: u16) -> bool {
    cli(port, &["PING"]).trim() == "PONG"
}

/// `name`'s value in a `SENTINEL MASTER` answer (alternating name and value lines).
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    let lines: Vec<&str> = info.lines().map(str::trim).collect();
    lines
        .iter()
        .position(|l| *l == name)
        .and_then(|i| lines.get(i + 1).copied())
}

#[cfg(test)]
mod tests {
    use super::primaries;

    #[test]
    fn primaries_are_the_healthy_masters_with_slots() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922 12000
c3 127.0.0.1:7003@17003 master,fail - 0 1 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave b2 0 1 2 connected
e5 127.0.0.1:7005@17005 master - 0 1 7 connected
f6 127.0.0.1:7006@17006 master,fail? - 0 1 8 connected 13000-13001
";
        let p = primaries(nodes);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], (7001, vec![0..=5460]));
        assert_eq!(p[1], (7002, vec![5461..=10922, 12000..=12000]));
    }
}
