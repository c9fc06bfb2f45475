//! The listen backlog in effect on the real `timd` binary: with timd stopped (SIGSTOP, so it
//! accepts nothing), connects complete only while the kernel's accept queue has room. A
//! restart storm needs far more than the 128 that `TcpListener::bind` gives.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use timd::listener::{effective_backlog, kernel_max_backlog, DEFAULT_LISTEN_BACKLOG};

/// What `TcpListener::bind` listens with (std, mio): the backlog timd no longer uses.
const OLD_BACKLOG: usize = 128;
/// Simultaneous connects the default backlog must queue.
const BURST: usize = 1000;

/// A stopped `timd serve`, and what it logged at start. Dropping it kills it.
struct Stopped {
    child: Child,
    addr: SocketAddr,
    log: Vec<String>,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts timd with `envs`, waits until it listens, then SIGSTOPs it.
fn start_stopped(envs: &[(&str, &str)]) -> Stopped {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(tim_test_support::timd_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sdkappid",
            "1",
            "--key",
            "k",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timd starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let listening = line.contains("timd listening");
            log.push(line);
            if listening {
                let _ = tx.send(log.clone());
            }
        }
    });
    let log = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("timd logs that it listens");
    let addr = log
        .last()
        .unwrap()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("an addr= field")
        .parse()
        .unwrap();
    let status = Command::new("kill")
        .args(["-STOP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Keeps the data dir until the process is gone.
    std::mem::forget(dir);
    Stopped { child, addr, log }
}

/// Opens `n` connections at once to `addr`; how many completed within 900 ms of their own
/// start (a queued connect completes at once; one whose SYN was dropped waits a second for
/// the retry). Each bound starts when its task runs, so a slow start of many tasks on a
/// busy machine does not count against the last ones.
async fn connects(addr: SocketAddr, n: usize) -> (usize, Vec<tokio::net::TcpStream>) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(900),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
            })
        })
        .collect();
    let mut open = Vec::new();
    for t in tasks {
        if let Ok(Ok(stream)) = t.await.unwrap() {
            open.push(stream);
        }
    }
    (open.len(), open)
}

#[tokio::test]
async fn the_default_backlog_queues_a_restart_burst_and_the_flag_sets_it() {
    let cap = kernel_max_backlog();
    let effective = effective_backlog(DEFAULT_LISTEN_BACKLOG, cap) as usize;
    let timd = start_stopped(&[]);
    let listening = timd.log.last().unwrap();
    assert!(
        listening.contains(&format!("backlog={effective}")),
        "{listening}"
    );
    let warned = timd.log.iter().any(|l| l.contains("net.core.somaxconn"));
    assert_eq!(
        warned,
        effective < DEFAULT_LISTEN_BACKLOG as usize,
        "{:?}",
        timd.log
    );
    // 1,000 simultaneous connects (8x the old 128) all complete while nothing accepts. A
    // kernel that caps backlogs lower gets a burst of its cap; at or below the old 128 the
    // test could not tell the default from `TcpListener::bind`'s: it fails, saying why.
    assert!(
        effective > OLD_BACKLOG,
        "the kernel caps listen backlogs at {cap:?} (net.core.somaxconn): a backlog of \
         {effective} cannot show that timd asks for more than the old {OLD_BACKLOG}; raise it \
         (sysctl -w net.core.somaxconn=4096) to run this test"
    );
    let burst = effective.min(BURST);
    if burst < BURST {
        println!(
            "note: the kernel caps listen backlogs at {cap:?}: checking a burst of {burst}, \
             not {BURST}"
        );
    }
    let (done, _open) = connects(timd.addr, burst).await;
    assert_eq!(
        done, burst,
        "connects queued by a stopped timd (backlog {effective})"
    );
    println!(
        "checked: {done} simultaneous connects queued by a stopped timd (backlog {effective}, \
         kernel cap {cap:?}, the old default {OLD_BACKLOG})"
    );
    drop(timd);

    // The environment twin of --listen-backlog, and the control: a small backlog does
    // drop the SYNs beyond it (Linux queues backlog + 1).
    let timd = start_stopped(&[("TIMD_LISTEN_BACKLOG", "16")]);
    assert!(timd.log.last().unwrap().contains("backlog=16"));
    let (done, _open) = connects(timd.addr, 60).await;
    assert!((16..=17).contains(&done), "{done} of 60 connects completed");
}
