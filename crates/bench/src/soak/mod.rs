//! `tim-bench soak`: hours of steady churn against one `timd` (or, with `--cluster`, three
//! nodes on one Redis), sampling what could grow: memory, descriptors, threads, tasks, the
//! SQLite file and its WAL, and every internal map `/metrics` reports. What a leak looks like
//! is a slope after warm-up; the run prints each series' slope per hour, writes the samples
//! (CSV) and a chart (SVG), and fails on a lost session, a spurious kick, an error the mix
//! did not ask for, or (except in a `--smoke` run) a mix more than 1% behind its rate.
//!
//! The mix, at a fixed rate (see [`mix::CYCLE`]): logins then logouts, instance-limit kicks
//! (three Web logins over a limit of two), admin REST kicks, socket drops of steady sessions
//! and their resumes, malformed frames, and forged UserSigs. Beside it, `--steady` sessions
//! stay logged in for the whole run, renewing their short-lived UserSigs (the SDK's
//! `getUserSig` path): none of them may ever be kicked.

mod mix;
mod report;
mod sample;
mod steady;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::timd::Common;
use mix::{Mix, Tally};
use sample::Sample;
use steady::Steady;
use target::Target;

#[derive(Args)]
pub struct SoakArgs {
    #[command(flatten)]
    common: Common,
    /// How long the mix runs.
    #[arg(long, default_value_t = 5)]
    minutes: u64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// Mix operations started per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Sessions logged in for the whole run (dropped and resumed, UserSigs renewed).
    #[arg(long, default_value_t = 200)]
    steady: usize,
    /// Lifetime of the steady sessions' UserSigs: each renews at half of it.
    #[arg(long, default_value_t = 120)]
    usersig_secs: u64,
    /// Samples taken before this many seconds are left out of the slopes (default: the
    /// first quarter of the run, at most 15 minutes: the per-user bounds fill in about 9).
    #[arg(long)]
    warmup_secs: Option<u64>,
    /// Three nodes in cluster mode on a Redis of their own instead of one embedded timd.
    #[arg(long)]
    cluster: bool,
    /// Nodes with `--cluster`.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Lease with `--cluster` (renewals every third of it).
    #[arg(long, default_value_t = 6000)]
    lease_ms: u32,
    /// Where the samples (CSV) and the chart (SVG) go.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    /// A smoke run (CI, debug builds on a shared machine): the rate the mix achieved is
    /// printed but not checked; lost sessions, spurious kicks and unexpected errors still
    /// fail it. A real run also fails when the mix falls more than 1% behind its rate.
    #[arg(long)]
    smoke: bool,
}

/// Runs the soak; whether it saw nothing wrong.
pub async fn run(args: SoakArgs) -> bool {
    let mode = if args.cluster {
        format!("cluster ({} nodes on Redis)", args.nodes)
    } else {
        "embedded (one timd)".to_owned()
    };
    let target = Target::start(&args.common, args.cluster, args.nodes, args.lease_ms).await;
    println!(
        "soak, {mode}: {} min at {} ops/s, {} steady sessions (UserSigs of {} s), a sample every {} s",
        args.minutes, args.rate, args.steady, args.usersig_secs, args.sample_secs
    );
    let tally = Arc::new(Tally::default());
    let steady = Steady::log_in(&target.urls(), args.steady, args.usersig_secs, &tally).await;
    let mix = Mix::new(&target, steady.clone(), tally.clone());

    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let mut samples = vec![Sample::take(&target, 0).await];
    sample::print_header(&samples[0]);
    sample::print_row(&samples[0]);
    let driver = tokio::spawn(mix.run(args.rate, end));
    let mut next = started + Duration::from_secs(args.sample_secs.max(1));
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        let s = Sample::take(&target, started.elapsed().as_secs()).await;
        sample::print_row(&s);
        samples.push(s);
        next += Duration::from_secs(args.sample_secs.max(1));
    }
    driver.await.expect("mix task");
    steady.check_and_log_out(&tally).await;
    // The end state, once the steady sessions are gone: what is left is what the sweeps
    // have not reclaimed yet.
    let after = Sample::take(&target, started.elapsed().as_secs()).await;

    let warmup = args
        .warmup_secs
        .unwrap_or_else(|| (args.minutes * 60 / 4).min(900));
    let ok = tally.print(started.elapsed(), !args.smoke);
    report::print_slopes(&samples, warmup);
    println!(
        "  after the steady sessions logged out: online {}, tasks {}, fds {}",
        after.get("online"),
        after.get("tasks"),
        after.get("fds")
    );
    let name = if args.cluster {
        "soak-cluster"
    } else {
        "soak-embedded"
    };
    match report::write(&args.out, name, &mode, &samples, warmup) {
        Ok((csv, svg)) => println!("  samples: {}\n  chart: {}", csv.display(), svg.display()),
        Err(e) => println!("  could not write the samples or the chart: {e}"),
    }
    drop(target);
    if !ok {
        println!("  FAILED: see the lines above");
    }
    ok
}
