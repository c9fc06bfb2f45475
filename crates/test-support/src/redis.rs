//! A real `redis-server` (Debian's, installed by scripts/setup.sh) on a free loopback
//! port, persisting every write to its append-only file before answering
//! (`appendfsync always`) and never snapshotting, in its own temporary directory, so a
//! test can stop, kill and restart it and see exactly what that persistence promises.
//!
//! The directory is on tmpfs (`/dev/shm`) where there is one: a process killed loses
//! nothing written there either, and Redis's `fsync` cannot stall behind other processes'
//! disk writes (on a loaded machine a stall of half a second fenced the tests' nodes, whose
//! leases are 900 ms).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process;

/// How long Redis may take to answer PING after a (re)start (AOF replay included).
const START_BOUND: Duration = Duration::from_secs(20);
/// How long a SIGTERM'd Redis may take to exit.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// A `redis-server` process. Dropping it kills it (and removes its directory).
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    /// Arguments beyond the defaults (`--replicaof`, `--cluster-enabled yes`, ...), kept
    /// for restarts.
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts Redis on a free loopback port and returns once it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// [`RedisServer::start`] with extra `redis-server` arguments (a replica's
    /// `--replicaof HOST PORT`, a Redis Cluster node's `--cluster-enabled yes`), which a
    /// restart passes again.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempdir("redis-");
        let mut redis = RedisServer {
            port: 0,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        for attempt in 1.. {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                // Another process took the port between our probe and Redis's bind.
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("redis-server did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT/0`, as `timd serve --redis` takes it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its working directory (append-only files under `appendonlydir/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its stdout/stderr, appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self
            .child
            .as_mut()
            .map(|c| c.try_wait().expect("wait for redis"))
        {
            Some(None) => true,
            Some(Some(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Graceful stop (SIGTERM, as `systemctl stop` does) and waits for the exit. The
    /// directory stays: [`RedisServer::start_again`] replays the append-only file.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::signal(&child, libc::SIGTERM);
            if process::wait_exit(&mut child, STOP_BOUND).is_none() {
                process::kill9(&mut child);
                panic!("redis-server ignored SIGTERM for {STOP_BOUND:?}");
            }
        }
    }

    /// Crash (SIGKILL): nothing runs on the way out. The directory stays; with
    /// `appendfsync always` every acknowledged write is in it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill9(&mut child);
        }
    }

    /// Starts Redis again on the same port and directory (after [`RedisServer::stop`] or
    /// [`RedisServer::kill`]) and returns once it answers PING, its data replayed.
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "start_again while redis-server runs");
        // A port in TIME_WAIT does not stop Redis (SO_REUSEADDR); another process
        // grabbing it meanwhile would, and then the test cannot go on anyway.
        if let Err(log) = self.spawn() {
            panic!(
                "redis-server did not start again on port {}:\n{log}",
                self.port
            );
        }
    }

    /// Runs `redis-cli -p PORT ARGS...` and returns its output, trimmed (errors come
    /// back as text, e.g. `ERR unknown command ...`). For `CLIENT KILL TYPE pubsub`,
    /// `DBSIZE`, `KEYS *`, `INFO memory`...
    pub fn command(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (scripts/setup.sh installs redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Spawns redis-server on `self.port` and waits for PONG; on failure, the process is
    /// gone and the error is its log tail.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let (stdout, stderr) = process::log_to(&log);
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--daemonize", "no", "--logfile", ""])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let deadline = Instant::now() + START_BOUND;
        loop {
            if ping(self.addr()) {
                self.child = Some(child);
                return Ok(());
            }
            if child.try_wait().expect("wait for redis").is_some() || Instant::now() > deadline {
                process::kill9(&mut child);
                return Err(process::tail(&log, 20));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        process::print_tail_if_panicking("redis-server", &self.log_path());
        self.kill();
    }
}

/// Whether Redis at `addr` answers PING with PONG (not `-LOADING` while it replays).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"+PONG"))
}

/// A temporary directory for a Redis process: on tmpfs if the machine has one (see above).
pub(crate) fn tempdir(prefix: &str) -> TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let shm = Path::new("/dev/shm");
    let on_tmpfs = if shm.is_dir() {
        builder.tempdir_in(shm).ok()
    } else {
        None
    };
    on_tmpfs.unwrap_or_else(|| builder.tempdir().expect("a temp dir"))
}
