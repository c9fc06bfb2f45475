//! A `timd serve` child process on a fixed loopback port: started, signalled, started again
//! on the same port, and measured (memory, CPU, `/metrics`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use crate::sys::{cpu_of, free_port, rss_of, APP_STR, KEY};

#[derive(Args, Clone)]
pub struct Common {
    /// The timd binary (default: `timd` beside this executable).
    #[arg(long)]
    pub timd: Option<PathBuf>,
    /// Keep timd's log (stderr) here instead of a temporary directory.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

impl Common {
    pub fn binary(&self) -> PathBuf {
        let binary = self.timd.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .expect("current exe")
                .with_file_name("timd")
        });
        assert!(
            binary.is_file(),
            "{} not found: build it (cargo build --profile server -p timd-bin) or pass --timd",
            binary.display()
        );
        binary
    }
}

pub struct Timd {
    pub binary: PathBuf,
    pub addr: SocketAddr,
    data_dir: PathBuf,
    pub log: PathBuf,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
    pub child: Option<Child>,
}

impl Timd {
    pub fn new(common: &Common, dir: &Path, extra: &[&str]) -> Timd {
        Timd {
            binary: common.binary(),
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: dir.join("data"),
            log: common.log.clone().unwrap_or_else(|| dir.join("timd.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
            child: None,
        }
    }

    /// Environment variables for the process (e.g. the keys an apps file names).
    pub fn with_envs(mut self, envs: Vec<(String, String)>) -> Timd {
        self.envs = envs;
        self
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Where timd keeps `timd.sqlite3` (and its WAL).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts timd and waits until it accepts connections; returns when it did.
    pub async fn start(&mut self) -> Instant {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("timd log file");
        // With an apps file, the file names every app.
        let single_app: &[&str] = if self.extra.iter().any(|a| a == "--apps") {
            &[]
        } else {
            &["--sdkappid", APP_STR, "--key", KEY]
        };
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", &self.addr.to_string()])
            .args(single_app)
            // One loopback client address opens 10,000 sessions: no per-address limits.
            .args([
                "--max-connections-per-addr",
                "0",
                "--connection-rate-per-addr",
                "0",
            ])
            // Benches log users in and out at their own pace: no per-user login rate either.
            .args(["--login-rate-per-addr", "0", "--login-rate-per-user", "0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn timd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Instant::now();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("timd exited at start: {status}; see {}", self.log.display());
            }
            assert!(Instant::now() < deadline, "timd did not start listening");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The child's resident memory (VmRSS), bytes, on Linux.
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid()?)
    }

    /// CPU time the child has used so far (user + system, all threads), on Linux.
    pub fn cpu(&self) -> Option<Duration> {
        cpu_of(self.pid()?)
    }

    /// Sends `signal` and waits for the process to exit; returns when it had.
    pub async fn stop(&mut self, signal: libc::c_int) -> Instant {
        let mut child = self.child.take().expect("timd running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait task")
            .expect("wait timd");
        Instant::now()
    }

    /// `GET /metrics`, the Prometheus text (None if timd does not answer).
    pub async fn metrics(&self) -> Option<String> {
        crate::http::get(self.addr, "/metrics").await
    }
}

impl Drop for Timd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
