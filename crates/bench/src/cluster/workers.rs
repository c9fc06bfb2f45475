//! The cluster hold run's client processes, seen from `tim-bench cluster`: spawned with a
//! share of the users each (every process is limited to 20,000 open files), spoken to one
//! line at a time (see `worker.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

pub struct Workers {
    workers: Vec<Worker>,
    /// Per worker, its source addresses.
    pub binds: Vec<Vec<IpAddr>>,
}

/// What one `status` line says, summed over workers.
#[derive(Default, Clone)]
pub struct Status {
    pub connected: usize,
    pub relogins: usize,
    pub kicks: usize,
    pub not_ready: usize,
    pub errors: usize,
    /// Resumes and logins the nodes put off (lean generator only): tried again later.
    pub put_off: usize,
    pub rss: u64,
    /// ms from the mark to back, per session back since the mark.
    pub times: Vec<f64>,
}

impl Workers {
    /// Starts `count` workers sharing users `0..sessions`, worker `k` bound to
    /// its own `ips` addresses from 127.0.0.2 on (127.0.0.2, .3, … for one each); `lean`:
    /// the lean generator (`lean.rs`) instead of full clients.
    pub fn spawn(
        count: usize,
        sessions: usize,
        urls: &[String],
        ips: usize,
        concurrency: usize,
        lean: bool,
    ) -> Workers {
        let exe = std::env::current_exe().expect("current exe");
        let mut workers = Vec::with_capacity(count);
        let mut binds = Vec::with_capacity(count);
        for k in 0..count {
            let first = k * sessions / count;
            let end = (k + 1) * sessions / count;
            let ip: Vec<IpAddr> = (0..ips)
                .map(|j| {
                    let n = k * ips + j;
                    IpAddr::V4(Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250) as u8 + 2))
                })
                .collect();
            let list = |v: &[IpAddr]| {
                v.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut child = Command::new(&exe)
                .arg("cluster-worker")
                .args(["--urls", &urls.join(",")])
                .args([
                    "--first",
                    &first.to_string(),
                    "--count",
                    &(end - first).to_string(),
                ])
                .args(if ip.is_empty() {
                    vec![]
                } else {
                    vec!["--bind".to_owned(), list(&ip)]
                })
                .args(["--concurrency", &concurrency.to_string()])
                .args(lean.then_some("--lean"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a cluster-worker");
            let stdin = child.stdin.take().expect("worker stdin");
            let lines = BufReader::new(child.stdout.take().expect("worker stdout")).lines();
            workers.push(Worker {
                child,
                stdin,
                lines,
            });
            binds.push(ip);
        }
        Workers { workers, binds }
    }

    /// Waits for every worker's `ready` line: (logged in, failed), and the slowest's seconds.
    pub async fn ready(&mut self) -> (usize, usize) {
        let (mut ok, mut failed) = (0, 0);
        for w in &mut self.workers {
            let line = w.lines.next_line().await.ok().flatten().unwrap_or_default();
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["ready", n, bad, _] => {
                    ok += n.parse::<usize>().unwrap_or(0);
                    failed += bad.parse::<usize>().unwrap_or(0);
                }
                _ => panic!("a cluster-worker said {line:?} instead of ready"),
            }
        }
        (ok, failed)
    }

    /// Sends `command` to every worker, then reads one answer line from each.
    pub async fn ask(&mut self, command: &str) -> Vec<String> {
        for w in &mut self.workers {
            w.stdin
                .write_all(format!("{command}\n").as_bytes())
                .await
                .expect("write to a cluster-worker");
        }
        let mut answers = Vec::with_capacity(self.workers.len());
        for w in &mut self.workers {
            answers.push(w.lines.next_line().await.ok().flatten().unwrap_or_default());
        }
        answers
    }

    /// The processes' ids (for their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    pub async fn mark(&mut self) {
        self.ask("mark").await;
    }

    /// Per node, the sessions back `connected` since the mark.
    pub async fn back(&mut self, nodes: usize) -> Vec<usize> {
        let mut sum = vec![0; nodes];
        for line in self.ask("back").await {
            let counts = line.strip_prefix("back ").unwrap_or_default();
            for (i, c) in counts.split(',').enumerate().take(nodes) {
                sum[i] += c.parse::<usize>().unwrap_or(0);
            }
        }
        sum
    }

    pub async fn status(&mut self) -> Status {
        let mut total = Status::default();
        for line in self.ask("status").await {
            let fields: HashMap<&str, &str> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.split_once('='))
                .collect();
            let n = |k: &str| {
                fields
                    .get(k)
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            total.connected += n("connected");
            total.relogins += n("relogins");
            total.kicks += n("kicks");
            total.not_ready += n("not_ready");
            total.errors += n("errors");
            total.put_off += n("put_off");
            total.rss += n("rss") as u64;
            if let Some(t) = fields.get("times") {
                total
                    .times
                    .extend(t.split(',').filter_map(|x| x.parse::<f64>().ok()));
            }
        }
        total
    }

    pub async fn quit(mut self) {
        self.ask("quit").await;
        for w in &mut self.workers {
            let _ = w.child.wait().await;
        }
    }
}
