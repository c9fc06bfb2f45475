//! `tim-bench callbacks`: State.StateChange callbacks against a local receiver (the tests'
//! `Receiver`, on loopback): login throughput with callbacks off and on (same run, the
//! ratio), delivery latency from the decision (`EventTime`) to the receiver, and how fast a
//! backlog drains (events/s delivered: 10,000 logins + logouts queued while the receiver was
//! down, then timd restarted on the same store with the receiver up).

use std::time::{Duration, Instant};

use clap::Args;
use tim_test_support::Receiver;

use crate::logins::{destroy_all, log_in_all};
use crate::stats::print_summary;
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct CallbacksArgs {
    #[command(flatten)]
    common: Common,
    /// Users logging in then out in each round (two events each).
    #[arg(long, default_value_t = 10_000)]
    logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
}

/// Waits until `n` callbacks were accepted; returns when the last one arrived, or `None`
/// after `within`.
async fn delivered(receiver: &Receiver, n: usize, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if receiver.accepted_count() >= n {
            return receiver.accepted().iter().map(|r| r.at).max();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// From each event (its first acceptance) to the receiver.
fn latencies(accepted: &[tim_test_support::receiver::Request]) -> Vec<Duration> {
    let mut seen = std::collections::HashSet::new();
    accepted
        .iter()
        .filter(|r| seen.insert(r.event_id()))
        .map(|r| Duration::from_millis(r.received_ms.saturating_sub(r.event_time())))
        .collect()
}

/// Logs `n` users in then out; returns the logins/s.
async fn round(url: &str, prefix: &str, n: usize, concurrency: usize) -> f64 {
    let t0 = Instant::now();
    let clients = log_in_all(&[url.to_owned()], prefix, n, concurrency, 0).await;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    destroy_all(clients, concurrency).await;
    rate
}

pub async fn run(args: CallbacksArgs) -> bool {
    let n = args.logins;
    let mut ok = true;
    let mut receiver = Receiver::start().await;
    let url = receiver.url();
    let dir_off = tempfile::tempdir().expect("temp dir");
    let dir_on = tempfile::tempdir().expect("temp dir");
    let mut off = Timd::new(&args.common, dir_off.path(), &["--web-instances", "1"]);
    let mut on = Timd::new(
        &args.common,
        dir_on.path(),
        &["--web-instances", "1", "--callback-url", &url],
    );
    off.start().await;
    on.start().await;
    println!(
        "callbacks: timd {}, {n} users log in then out per round, {} in flight",
        on.binary.display(),
        args.concurrency
    );

    // Login throughput, callbacks off vs on, interleaved rounds (first-time accounts each).
    let (mut r_off, mut r_on) = (Vec::new(), Vec::new());
    for i in 0..2 {
        r_off.push(round(&off.url(), &format!("off{i}-"), n, args.concurrency).await);
        r_on.push(round(&on.url(), &format!("on{i}-"), n, args.concurrency).await);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "  login throughput: callbacks off {:.0} logins/s, on {:.0} logins/s (best of 2 rounds each): on/off = {:.2}",
        best(&r_off),
        best(&r_on),
        best(&r_on) / best(&r_off)
    );
    let events = 2 * 2 * n;
    match delivered(&receiver, events, Duration::from_secs(120)).await {
        None => {
            println!(
                "  NOT DELIVERED: {} of {events} callbacks",
                receiver.accepted_count()
            );
            ok = false;
        }
        Some(_) => {
            let mut latency = latencies(&receiver.accepted());
            print_summary(
                "  delivery latency (decision -> receiver, during the rounds)",
                &mut latency,
            );
        }
    }
    // The same at a moderate rate (a few logins in flight): latency without a backlog.
    let paced = (n / 5).max(1);
    let before = receiver.accepted_count();
    let before_raw = receiver.accepted().len();
    let t0 = Instant::now();
    round(&on.url(), "paced-", paced, 4).await;
    let rate = paced as f64 / t0.elapsed().as_secs_f64();
    match delivered(&receiver, before + 2 * paced, Duration::from_secs(60)).await {
        None => {
            println!("  NOT DELIVERED (paced round)");
            ok = false;
        }
        Some(_) => {
            let mut latency = latencies(&receiver.accepted()[before_raw..]);
            print_summary(
                &format!("  delivery latency at a moderate rate ({paced} users, 4 in flight, {rate:.0} logins/s)"),
                &mut latency,
            );
        }
    }
    let events = events + 2 * paced;
    let requests = receiver.requests().len();
    let failed: f64 = on
        .metrics()
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("timd_callbacks_failed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!(
        "  {requests} requests for {events} events ({} sent again), {failed} requests failed (a timeout under this load: the receiver runs in the clients' process)",
        requests.saturating_sub(events)
    );
    if requests > events && failed == 0.0 {
        println!("  DUPLICATES WITHOUT A FAILURE");
        ok = false;
    }

    // A backlog: the receiver is down while 10,000 users log in and out; timd restarts on
    // its store with the receiver up, and delivers the backlog.
    off.stop(libc::SIGTERM).await;
    receiver.down();
    round(&on.url(), "backlog-", n, args.concurrency).await;
    on.stop(libc::SIGTERM).await;
    drop(receiver);
    // A new receiver (another port): the restarted timd is pointed at it.
    let receiver = Receiver::start().await;
    let mut on = Timd::new(
        &args.common,
        dir_on.path(),
        &["--web-instances", "1", "--callback-url", &receiver.url()],
    );
    let started = on.start().await;
    let backlog = 2 * n;
    match delivered(&receiver, backlog, Duration::from_secs(300)).await {
        None => {
            println!(
                "  BACKLOG NOT DELIVERED: {} of {backlog}",
                receiver.accepted_count()
            );
            ok = false;
        }
        Some(last) => {
            let first = receiver
                .accepted()
                .iter()
                .map(|r| r.at)
                .min()
                .unwrap_or(last);
            let secs = last.duration_since(first).as_secs_f64().max(1e-3);
            println!(
                "  backlog of {backlog} events (restart with the receiver up): delivered in {:.2} s after the restart, {:.0} events/s (first to last request)",
                last.duration_since(started).as_secs_f64(),
                backlog as f64 / secs
            );
        }
    }
    on.stop(libc::SIGTERM).await;
    ok
}
