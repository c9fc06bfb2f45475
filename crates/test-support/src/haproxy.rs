//! A real `haproxy` (Debian's, installed by scripts/setup.sh) in front of several `timd`
//! nodes on a free loopback port, as deployments run them: round robin, health checks on
//! `/healthz`, and a connect that fails on a dead node retried on another.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process;

const START_BOUND: Duration = Duration::from_secs(10);

/// A `haproxy` process. Dropping it kills it.
pub struct Haproxy {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Haproxy {
    /// Balances WebSocket and HTTP connections over `backends` (round robin).
    pub fn start(backends: &[SocketAddr]) -> Haproxy {
        Haproxy::start_with(backends, "", "")
    }

    /// As [`Haproxy::start`], with extra lines for the backend section (e.g. `option
    /// forwardfor`) and extra options on each `server` line (e.g. `source 127.0.0.2`).
    pub fn start_with(
        backends: &[SocketAddr],
        backend_lines: &str,
        server_options: &str,
    ) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("haproxy-")
            .tempdir()
            .expect("a temp dir");
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(n, addr)| format!("  server node{n} {addr} check {server_options}\n"))
            .collect();
        let config = format!(
            "global\n  maxconn 8000\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  \
             timeout server 60s\n  timeout tunnel 1h\n  retries 3\n  option redispatch 1\n\
             frontend ws\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
             backend nodes\n  balance roundrobin\n  option httpchk GET /healthz\n  \
             default-server inter 200ms fall 1 rise 2\n{backend_lines}\n{servers}"
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).expect("write haproxy.cfg");
        let (out, err) = process::log_to(&dir.path().join("haproxy.log"));
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("haproxy (scripts/setup.sh installs it)");
        let proxy = Haproxy {
            port,
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        while TcpStream::connect(proxy.addr()).is_err() {
            assert!(
                started.elapsed() < START_BOUND,
                "haproxy did not listen:\n{}",
                process::tail(&proxy.dir.path().join("haproxy.log"), 20)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::print_tail_if_panicking("haproxy", &self.dir.path().join("haproxy.log"));
            process::kill9(&mut child);
        }
    }
}
