//! A real `timd serve` process on a free loopback port, in its own temporary directory
//! (store in `data/`, stdout and stderr in `timd.log`), for the tests that need what only
//! a process gives: `kill -9`, SIGTERM, restarts, several nodes on one Redis.
//!
//! The executable is [`crate::timd_bin`] unless [`TimdNodeBuilder::bin`] names one (tests
//! in the `timd-bin` crate can pass `env!("CARGO_BIN_EXE_timd")`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::{process, APP, KEY};

/// How long a node may take to answer `/healthz` after a (re)start.
const START_BOUND: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd node may take to exit (its shutdown grace included).
const TERM_BOUND: Duration = Duration::from_secs(15);

/// How to start a [`TimdNode`]: app [`APP`]/[`KEY`], `RUST_LOG=info`, and any extra
/// `timd serve` flags and environment.
#[derive(Debug, Clone)]
pub struct TimdNodeBuilder {
    bin: Option<PathBuf>,
    sdkappid: u32,
    key: String,
    redis: Option<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
}

impl TimdNodeBuilder {
    /// The executable to run instead of [`crate::timd_bin`].
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// The app (`TIMD_SDKAPPID`, `TIMD_KEY`); default [`APP`]/[`KEY`]; `0`: none (an
    /// `--apps` file names them).
    pub fn app(mut self, sdkappid: u32, key: &str) -> Self {
        self.sdkappid = sdkappid;
        self.key = key.to_owned();
        self
    }

    /// Cluster mode: `--redis URL`.
    pub fn redis(mut self, url: &str) -> Self {
        self.redis = Some(url.to_owned());
        self
    }

    /// An extra `timd serve` argument (e.g. `--lease-ms`, `900`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the process (overrides the fixture's own, e.g.
    /// `RUST_LOG`).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// Runs the node with its wall clock shifted by `offset` (libfaketime, e.g. `"-5s"`;
    /// Debian's `faketime` package, installed by scripts/setup.sh). Only the wall clock:
    /// monotonic time (timers, deadlines) stays real.
    pub fn clock_offset(self, offset: &str) -> Self {
        let lib = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
            .iter()
            .map(|arch| PathBuf::from(format!("/usr/lib/{arch}/faketime/libfaketime.so.1")))
            .find(|p| p.exists())
            .expect("libfaketime (scripts/setup.sh installs the faketime package)");
        self.env("LD_PRELOAD", lib)
            .env("FAKETIME", offset)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    }

    /// Starts the node and returns once `GET /healthz` answers 200.
    pub fn start(self) -> TimdNode {
        let dir = tempfile::Builder::new()
            .prefix("timd-node-")
            .tempdir()
            .expect("a temp dir");
        let mut node = TimdNode {
            bin: self.bin.clone().unwrap_or_else(crate::timd_bin),
            spec: self,
            port: 0,
            dir,
            child: None,
        };
        for attempt in 1.. {
            node.port = free_port();
            match node.spawn() {
                Ok(()) => return node,
                // Another process took the port between our probe and timd's bind.
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("timd did not start ({}):\n{log}", node.bin.display()),
            }
        }
        unreachable!()
    }
}

/// A `timd serve` process. Dropping it kills it (SIGKILL); a failing test also prints
/// the tail of its log.
pub struct TimdNode {
    bin: PathBuf,
    spec: TimdNodeBuilder,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl TimdNode {
    pub fn builder() -> TimdNodeBuilder {
        TimdNodeBuilder {
            bin: None,
            sdkappid: APP,
            key: KEY.to_owned(),
            redis: None,
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// A node alone on its embedded store.
    pub fn start() -> TimdNode {
        TimdNode::builder().start()
    }

    /// A cluster node on the Redis at `url`.
    pub fn with_redis(url: &str) -> TimdNode {
        TimdNode::builder().redis(url).start()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://ADDR`: the base URL native clients (`tim_client`, `timd client --url`) take.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr())
    }

    /// `ws://ADDR/ws`: the WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }

    /// `http://ADDR`: REST, `/healthz`, `/metrics`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The node's own directory (log, store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `TIMD_DATA_DIR`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its stdout and stderr, appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("timd.log")
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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
            .map(|c| c.try_wait().expect("wait for timd"))
        {
            Some(None) => true,
            Some(Some(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Whether `GET /healthz` answers 200 within a second.
    pub fn healthz(&self) -> bool {
        matches!(
            crate::http::get(self.addr(), "/healthz", Duration::from_secs(1)),
            Some((200, _))
        )
    }

    /// `kill -9`: no shutdown code runs, sockets are reset, leases are left to expire.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill9(&mut child);
        }
    }

    /// SIGTERM, and waits for the graceful shutdown to end; its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("terminate a running node");
        process::signal(&child, libc::SIGTERM);
        match process::wait_exit(&mut child, TERM_BOUND) {
            Some(status) => status,
            None => {
                process::kill9(&mut child);
                panic!("timd ignored SIGTERM for {TERM_BOUND:?}");
            }
        }
    }

    /// SIGSTOP: the process stays, but answers nothing and renews nothing (a hung node).
    pub fn freeze(&self) {
        process::signal(self.child.as_ref().expect("a running node"), libc::SIGSTOP);
    }

    /// SIGCONT after [`TimdNode::freeze`].
    pub fn thaw(&self) {
        process::signal(self.child.as_ref().expect("a running node"), libc::SIGCONT);
    }

    /// Starts the node again on the same port, directory, arguments and environment
    /// (after [`TimdNode::kill9`] or [`TimdNode::terminate`]); returns once it is healthy.
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "start_again while timd runs");
        if let Err(log) = self.spawn() {
            panic!("timd did not start again on port {}:\n{log}", self.port);
        }
    }

    /// Spawns `timd serve` on `self.port` and waits for `/healthz`; on failure the process
    /// is gone and the error is its log tail.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let (stdout, stderr) = process::log_to(&log);
        let mut cmd = Command::new(&self.bin);
        // Only what the test says: no TIMD_* leaking in from the developer's shell.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TIMD_") {
                cmd.env_remove(name);
            }
        }
        cmd.arg("serve");
        // App 0: no single app (the test names its apps with `--apps`).
        if self.spec.sdkappid != 0 {
            cmd.env("TIMD_SDKAPPID", self.spec.sdkappid.to_string())
                .env("TIMD_KEY", &self.spec.key);
        }
        cmd.env("TIMD_LISTEN", self.addr().to_string())
            .env("TIMD_DATA_DIR", self.data_dir())
            .env("RUST_LOG", "info");
        if let Some(url) = &self.spec.redis {
            cmd.args(["--redis", url]);
        }
        cmd.args(&self.spec.args)
            .envs(self.spec.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // The log is appended to across restarts: this start's line is one more.
        let listening =
            || std::fs::read_to_string(&log).map_or(0, |l| l.matches("timd listening").count());
        let listened_before = listening();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        let deadline = Instant::now() + START_BOUND;
        loop {
            let exited = child.try_wait().expect("wait for timd").is_some();
            // Ours, not another process that took the port meanwhile (ours then fails to
            // bind and exits): it said it listens, and it still runs.
            if !exited
                && self.healthz()
                && listening() > listened_before
                && child.try_wait().expect("wait for timd").is_none()
            {
                self.child = Some(child);
                return Ok(());
            }
            if exited || Instant::now() > deadline {
                process::kill9(&mut child);
                return Err(process::tail(&log, 30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TimdNode {
    fn drop(&mut self) {
        process::print_tail_if_panicking(&format!("timd on {}", self.addr()), &self.log_path());
        self.kill9();
    }
}
