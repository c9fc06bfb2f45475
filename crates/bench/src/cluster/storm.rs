//! The reconnect storm: every node of a cluster restarted at the same moment (SIGTERM, then
//! kill -9), so all `--sessions` (default 50,000) reconnect and resume in one burst — what a
//! listen backlog of 128 turned into clients waiting 1 s on a dropped SYN. Prints per session
//! the time from the signal to back `connected` (and how many took 1 s or more), lost
//! sessions, spurious kicks, and the kernel's counts of dropped connects and SYN retries.
//!
//! Layout: 10,000 sessions per node and per client process by default (5 + 5 for 50,000).
//! Half a process's 20,000 files, so a node or a client can hold a closing socket beside its
//! new one through the storm; and each node takes the same burst as the single-node
//! `tim-bench restart --sessions 10000`, all of them at once on the shared cores.

use std::time::{Duration, Instant};

use crate::redis::Redis;
use crate::restart::Mode;
use crate::stats::print_summary;
use crate::sys::{count_at_least, Drops};
use crate::timd::{Common, Timd};

use super::nodes::{cluster_flags, Nodes};
use super::workers::Workers;
use super::HoldArgs;

/// Sessions per node and per client process unless `--hold-nodes` / `--workers` say.
const PER_PROCESS: usize = 10_000;
/// The most one process can hold under its 20,000 files.
const MAX_PER_PROCESS: usize = 16_700;

pub async fn run(common: &Common, redis: &Redis, args: &HoldArgs, lease_ms: u32) -> bool {
    let n = args.sessions.unwrap_or(50_000);
    let least = n.div_ceil(MAX_PER_PROCESS).max(1);
    let node_count = args
        .hold_nodes
        .unwrap_or(n.div_ceil(PER_PROCESS))
        .max(least);
    let worker_count = args.workers.unwrap_or(node_count).max(least);
    let mut nodes = Nodes::start(common, node_count, &cluster_flags(&redis.url(), lease_ms)).await;
    let ips = args
        .ips_per_worker
        .unwrap_or_else(|| n.div_ceil(worker_count).div_ceil(5_000));
    println!(
        "  storm: {n} sessions (one Web user each) on {node_count} nodes ({}-{} each), \
         {worker_count} client processes ({ips} source addresses each), lease {lease_ms} ms; \
         every node restarted at the same moment",
        n / node_count,
        n.div_ceil(node_count)
    );
    let mut workers = Workers::spawn(
        worker_count,
        n,
        &nodes.urls(),
        ips,
        args.login_concurrency,
        args.lean,
    );
    let t = Instant::now();
    let (logged_in, failed) = workers.ready().await;
    println!(
        "    {logged_in} logged in ({failed} failed) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = workers.status().await;
    println!("    clients report {} connected", before.connected);
    let mut ok = failed == 0 && before.connected == n;
    let mut prev = before.clone();
    let mut not_back_total = 0;
    for &mode in &args.modes {
        let (name, signal) = match mode {
            Mode::Term => ("SIGTERM (close 1012)", libc::SIGTERM),
            Mode::Kill => ("kill -9", libc::SIGKILL),
        };
        // Let heartbeats and lease renewals settle between runs.
        tokio::time::sleep(Duration::from_secs(2)).await;
        workers.mark().await;
        let drops0 = Drops::read();
        let not_decided0 = count_in_logs(&nodes, NOT_DECIDED);
        let t0 = Instant::now();
        let (gone, listening) = restart_all(&mut nodes, signal).await;
        let deadline = t0 + Duration::from_secs(args.timeout_secs);
        let mut back;
        loop {
            back = workers.back(node_count).await.iter().sum::<usize>();
            if back >= n || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all_back = t0.elapsed();
        // A kick or a refused resume right after coming back shows within a moment.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let drops = drops0.zip(Drops::read()).map(|(a, b)| a.since(b));
        let now = workers.status().await;
        let not_back = n.saturating_sub(back);
        not_back_total += not_back;
        println!(
            "    all {node_count} nodes by {name}: last gone after {:.0} ms, last listening after {:.0} ms; \
             {back}/{n} back in {:.2} s",
            gone.as_secs_f64() * 1e3,
            listening.as_secs_f64() * 1e3,
            all_back.as_secs_f64()
        );
        let mut times: Vec<Duration> = now
            .times
            .iter()
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3))
            .collect();
        print_summary("      signal -> back connected, per session", &mut times);
        let within: Vec<String> = [1, 2, 5, 10, 30]
            .iter()
            .map(|&s| {
                let late = count_at_least(&times, Duration::from_secs(s));
                format!("{s} s {}", times.len() - late)
            })
            .collect();
        println!(
            "      back within {}; took 1 s or more: {} (besides a dropped SYN, the 0.5-1 s \
             reconnect jitter, a refused first attempt and the queue for 2 cores cost that)",
            within.join(", "),
            count_at_least(&times, Duration::from_secs(1))
        );
        match drops {
            Some(d) => println!("      connects dropped or retried: {}", d.describe()),
            None => println!("      connects dropped or retried: ? (no /proc/net/netstat)"),
        }
        println!(
            "      resumes the nodes put off (Redis slower than its 2 s timeout: closed 1013, \
             the client retries with backoff): {}",
            count_in_logs(&nodes, NOT_DECIDED).saturating_sub(not_decided0)
        );
        println!(
            "      not back {not_back}, resumes refused (logged in again) {}, spurious kicks {}, \
             SDK_NOT_READY {}, errors {}",
            now.relogins - prev.relogins,
            now.kicks - prev.kicks,
            now.not_ready - prev.not_ready,
            now.errors - prev.errors
        );
        prev = now;
    }
    // A kick a lease renewal would find shows within one renewal period.
    let wait = Duration::from_millis(lease_ms as u64 / 3) + Duration::from_secs(2);
    tokio::time::sleep(wait).await;
    let end = workers.status().await;
    let refused = end.relogins - before.relogins;
    let kicks = end.kicks - before.kicks;
    let not_ready = end.not_ready - before.not_ready;
    let errors = end.errors - before.errors;
    let lost = not_back_total + refused;
    println!(
        "  storm run: {} storms of {n}; lost sessions {lost} (not back {not_back_total}, resume refused \
         {refused}), spurious kicks {kicks}, SDK_NOT_READY {not_ready}, errors {errors} (after {:.0} s more \
         for late kicks); connected now {}/{n}",
        args.modes.len(),
        wait.as_secs_f64(),
        end.connected
    );
    ok &= lost == 0 && kicks == 0 && not_ready == 0 && end.connected == n;
    if !ok {
        println!("  timd logs: {}", nodes.logs());
    }
    workers.quit().await;
    ok
}

/// What a node logs when a resume's Redis call failed or timed out (`gateway.rs`).
const NOT_DECIDED: &str = "resume not decided";

/// Lines containing `needle` in the nodes' logs (appended to across restarts).
fn count_in_logs(nodes: &Nodes, needle: &str) -> usize {
    nodes
        .nodes
        .iter()
        .filter_map(|n| std::fs::read_to_string(&n.log).ok())
        .map(|text| text.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

/// Signals every node at once and starts each again as soon as it has exited; the slowest
/// node's (exit, listening) times after the signal.
async fn restart_all(nodes: &mut Nodes, signal: libc::c_int) -> (Duration, Duration) {
    let t0 = Instant::now();
    let tasks: Vec<_> = std::mem::take(&mut nodes.nodes)
        .into_iter()
        .map(|mut timd: Timd| {
            tokio::spawn(async move {
                let gone = timd.stop(signal).await;
                let up = timd.start().await;
                (timd, gone, up)
            })
        })
        .collect();
    let (mut gone, mut listening) = (Duration::ZERO, Duration::ZERO);
    for task in tasks {
        let (timd, g, up) = task.await.expect("restart task");
        gone = gone.max(g.saturating_duration_since(t0));
        listening = listening.max(up.saturating_duration_since(t0));
        nodes.nodes.push(timd);
    }
    (gone, listening)
}
