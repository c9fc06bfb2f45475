//! A `redis-server` child process for the cluster bench, on a free loopback port, and the
//! few commands the bench sends it (INFO, PING) over a plain RESP connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::{cpu_of, free_port, rss_of};

/// How the bench's Redis persists: nothing (the default: a cache-like setup, figures of the
/// nodes and Redis alone), or an append-only file fsynced every second.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Persistence {
    /// `--save '' --appendonly no`.
    None,
    /// `--save '' --appendonly yes --appendfsync everysec`.
    Aof,
    /// `--save '' --appendonly yes --appendfsync always`: every acknowledged write survives
    /// a kill -9 (the chaos run kills Redis).
    AofAlways,
}

impl Persistence {
    pub fn describe(self) -> &'static str {
        match self {
            Persistence::None => "no persistence (--save '' --appendonly no)",
            Persistence::Aof => {
                "AOF fsynced every second (--appendonly yes --appendfsync everysec)"
            }
            Persistence::AofAlways => "AOF fsynced at every write (--appendfsync always)",
        }
    }
}

pub struct Redis {
    pub addr: SocketAddr,
    dir: std::path::PathBuf,
    persistence: Persistence,
    child: Child,
}

impl Redis {
    /// Starts redis-server in `dir` and returns once it answers PING.
    pub fn start(dir: &Path, persistence: Persistence) -> Redis {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Redis::spawn(dir, addr.port(), persistence);
        let redis = Redis {
            addr,
            dir: dir.to_owned(),
            persistence,
            child,
        };
        redis.wait_ping();
        redis
    }

    fn spawn(dir: &Path, port: u16, persistence: Persistence) -> Child {
        let aof: &[&str] = match persistence {
            Persistence::None => &["--appendonly", "no"],
            Persistence::Aof => &["--appendonly", "yes", "--appendfsync", "everysec"],
            Persistence::AofAlways => &["--appendonly", "yes", "--appendfsync", "always"],
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("redis.log"))
            .expect("redis log");
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--protected-mode", "no", "--save", ""])
            .args(aof)
            .arg("--dir")
            .arg(dir)
            // 100,000 sessions on 6+ nodes: every node has a few connections only, but
            // leave room.
            .args([
                "--maxclients",
                "10000",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)")
    }

    fn wait_ping(&self) {
        assert!(
            command_until(self.addr, &["PING"], "PONG", Duration::from_secs(20)),
            "redis-server did not answer PING"
        );
    }

    /// kill -9, then the same server again on the same port and files (what its
    /// persistence kept); returns once it answers PING.
    pub fn kill9_and_restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = Redis::spawn(&self.dir, self.addr.port(), self.persistence);
        self.wait_ping();
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    pub fn rss(&self) -> Option<u64> {
        rss_of(self.child.id())
    }

    pub fn cpu(&self) -> Option<Duration> {
        cpu_of(self.child.id())
    }

    /// `INFO section` as name -> value.
    pub fn info(&self, section: &str) -> HashMap<String, String> {
        self.command(&["INFO", section])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// One integer field of `INFO section`.
    pub fn info_u64(&self, section: &str, field: &str) -> u64 {
        self.info(section)
            .get(field)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The calls of one command from `INFO commandstats` (`cmdstat_evalsha:calls=N,...`).
    pub fn calls(&self, command: &str) -> u64 {
        self.info("commandstats")
            .get(&format!("cmdstat_{command}"))
            .and_then(|v| v.split(',').next()?.strip_prefix("calls=")?.parse().ok())
            .unwrap_or(0)
    }

    /// Sends one command; a simple or bulk string answer (None on error or no answer).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        command(self.addr, args)
    }

    pub fn version() -> String {
        Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| "redis-server ?".into())
    }
}

/// Sends `args` to the Redis at `addr` until it answers `want` (it may be down or starting),
/// for at most `within`; whether it did.
pub fn command_until(addr: SocketAddr, args: &[&str], want: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if command(addr, args).as_deref() == Some(want) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one command to the Redis at `addr` on a connection of its own; a simple or bulk
/// string answer (None on error or no answer).
pub fn command(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let line = line.trim_end();
    if let Some(simple) = line.strip_prefix('+') {
        return Some(simple.to_owned());
    }
    if let Some(int) = line.strip_prefix(':') {
        return Some(int.to_owned());
    }
    let len: usize = line.strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; len + 2];
    r.read_exact(&mut body).ok()?;
    body.truncate(len);
    String::from_utf8(body).ok()
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
