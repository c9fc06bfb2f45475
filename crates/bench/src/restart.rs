//! `tim-bench restart`: the issue-5 fault run: sessions logged in on one timd, then timd
//! restarted (SIGTERM → close 1012, and kill -9); the time until every session is back
//! `connected`, spurious kicks and lost sessions.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tim_client::{Client, Config, Event, NetState, Platform};
use tokio::sync::Semaphore;

use crate::stats::print_summary;
use crate::sys::{count_at_least, fd_limit, sig, Drops, APP};
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct RestartArgs {
    #[command(flatten)]
    common: Common,
    /// Sessions logged in during the restart (one user each, Web).
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Logins in flight at once while setting up.
    #[arg(long, default_value_t = 200)]
    login_concurrency: usize,
    /// Which restarts to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "term,kill")]
    modes: Vec<Mode>,
    /// A session not back within this after the restart counts as lost.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Graceful: SIGTERM (timd closes every socket with 1012 and exits).
    Term,
    /// Crash: SIGKILL.
    Kill,
}

/// What the monitor of one session saw since the current restart began.
#[derive(Default)]
struct Tally {
    back: AtomicUsize,
    kicks: AtomicUsize,
    not_ready: AtomicUsize,
    errors: AtomicUsize,
    /// The current restart's start, nanoseconds since `base` (0 before any).
    mark: AtomicU64,
    /// Per session: when it was last back `connected`, ns since `base` (0: not since mark).
    back_at: Vec<AtomicU64>,
}

pub async fn restart(args: RestartArgs) -> bool {
    let n = args.sessions;
    let need = 2 * n as u64 + 200;
    if fd_limit() < need / 2 + 100 {
        eprintln!(
            "warning: the open-file limit is {}; {n} sessions need about {} per process (ulimit -n)",
            fd_limit(),
            need / 2 + 100
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut timd = Timd::new(&args.common, dir.path(), &["--web-instances", "1"]);
    timd.start().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = timd.rss();
    let url = timd.url();
    println!(
        "restart: timd {} ({}), {n} sessions (one Web user each), fd limit {}",
        timd.binary.display(),
        timd.addr,
        fd_limit()
    );

    // Log everyone in, a bounded number at a time.
    let base = Instant::now();
    let tally = Arc::new(Tally {
        back_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
        ..Tally::default()
    });
    let gate = Arc::new(Semaphore::new(args.login_concurrency.max(1)));
    let started = Instant::now();
    let mut logins = Vec::with_capacity(n);
    for i in 0..n {
        let (url, gate) = (url.clone(), gate.clone());
        logins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let user = format!("r{i}");
            let mut c = Client::new(&url, Config::new(APP, Platform::Web, format!("dev-{i}")));
            let mut tries = 0;
            loop {
                match c.login(&user, &sig(&user)).await {
                    Ok(_) => break,
                    Err(e) if tries < 5 => {
                        tries += 1;
                        eprintln!("login r{i}: {e:?}; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("login r{i}: {e:?}"),
                }
            }
            while c.try_next_event().is_some() {}
            c
        }));
    }
    let mut clients = Vec::with_capacity(n);
    for l in logins {
        clients.push(l.await.expect("login task"));
    }
    let setup = started.elapsed();
    println!(
        "  {n} logged in in {:.2} s ({:.0} logins/s, first-time accounts)",
        setup.as_secs_f64(),
        n as f64 / setup.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let (Some(idle), Some(full)) = (rss_idle, timd.rss()) {
        println!(
            "  timd resident memory: {:.1} MiB idle, {:.1} MiB with {n} sessions: {:.1} KiB per session",
            idle as f64 / 1048576.0,
            full as f64 / 1048576.0,
            full.saturating_sub(idle) as f64 / 1024.0 / n as f64
        );
    }

    // One monitor per session.
    let mut handles = Vec::with_capacity(n);
    for (i, c) in clients.into_iter().enumerate() {
        let (handle, mut events) = c.split();
        handles.push(handle);
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Some((at, event)) = events.next_at().await {
                match event {
                    Event::NetState(NetState::Connected) => {
                        let at = at.saturating_duration_since(base).as_nanos() as u64 + 1;
                        if at > tally.mark.load(Ordering::Acquire)
                            && tally.back_at[i].swap(at, Ordering::AcqRel) == 0
                        {
                            tally.back.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    Event::Kicked(reason) => {
                        eprintln!("  dev-{i}: KICKED_OUT {}", reason.as_str());
                        tally.kicks.fetch_add(1, Ordering::AcqRel);
                    }
                    Event::NotReady => {
                        tally.not_ready.fetch_add(1, Ordering::AcqRel);
                    }
                    Event::Error(e) => {
                        eprintln!("  dev-{i}: ERROR {} {}", e.code, e.message);
                        tally.errors.fetch_add(1, Ordering::AcqRel);
                    }
                    _ => {}
                }
            }
        });
    }

    let mut ok = true;
    for mode in args.modes {
        // Let heartbeats and the store settle between runs.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for b in &tally.back_at {
            b.store(0, Ordering::Release);
        }
        tally.back.store(0, Ordering::Release);
        for c in [&tally.kicks, &tally.not_ready, &tally.errors] {
            c.store(0, Ordering::Release);
        }
        let t0 = Instant::now();
        tally.mark.store(
            t0.saturating_duration_since(base).as_nanos() as u64 + 1,
            Ordering::Release,
        );
        let (name, signal) = match mode {
            Mode::Term => ("SIGTERM (close 1012)", libc::SIGTERM),
            Mode::Kill => ("kill -9", libc::SIGKILL),
        };
        let drops0 = Drops::read();
        let exited = timd.stop(signal).await;
        let up = timd.start().await;
        let deadline = t0 + Duration::from_secs(args.timeout_secs);
        while tally.back.load(Ordering::Acquire) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let all_back = Instant::now();
        // Anything late (a kick right after resuming) shows within a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let back = tally.back.load(Ordering::Acquire);
        let mut times: Vec<Duration> = tally
            .back_at
            .iter()
            .filter_map(|b| match b.load(Ordering::Acquire) {
                0 => None,
                ns => Some((base + Duration::from_nanos(ns - 1)).saturating_duration_since(t0)),
            })
            .collect();
        let mut connected = 0;
        for h in &handles {
            if h.status().await.is_some_and(|s| s.connected) {
                connected += 1;
            }
        }
        let kicks = tally.kicks.load(Ordering::Acquire);
        let not_ready = tally.not_ready.load(Ordering::Acquire);
        let errors = tally.errors.load(Ordering::Acquire);
        let lost = n - back;
        println!("  restart by {name}:");
        println!(
            "    old timd gone after {:.0} ms, new timd listening after {:.0} ms",
            exited.saturating_duration_since(t0).as_secs_f64() * 1e3,
            up.saturating_duration_since(t0).as_secs_f64() * 1e3
        );
        if back == n {
            println!(
                "    all {n} back connected {:.2} s after the signal",
                all_back.saturating_duration_since(t0).as_secs_f64()
            );
        }
        print_summary(
            "    time from the signal to back connected, per session",
            &mut times,
        );
        println!(
            "    took 1 s or more: {} of {} (a connect whose SYN was dropped waits 1 s for its \
             retry; the reconnect jitter alone is 0.5-1 s)",
            count_at_least(&times, Duration::from_secs(1)),
            times.len()
        );
        if let Some(d) = drops0.zip(Drops::read()).map(|(a, b)| a.since(b)) {
            println!("    connects dropped or retried: {}", d.describe());
        }
        println!(
            "    back {back}/{n}, connected now {connected}, lost {lost}, spurious kicks {kicks}, \
             SDK_NOT_READY {not_ready}, errors {errors}"
        );
        ok &= lost == 0 && kicks == 0 && not_ready == 0 && connected == n;
    }
    println!(
        "restart: {}",
        if ok { "OK (0 kicks, 0 lost)" } else { "FAILED" }
    );
    drop(handles);
    ok
}
