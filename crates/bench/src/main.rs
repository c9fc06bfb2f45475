//! `tim-bench`: figures for timd with native clients on loopback, against the real `timd`
//! binary run as a child process. Not timed tests: they print what they measure.
//!
//! - `tim-bench kick`: kick delivery latency, from the moment the new instance writes its
//!   `login` frame to the moment the old instance's session emits `KICKED_OUT`; p50 / p99 /
//!   max over `--kicks` kicks (default 1000).
//! - `tim-bench restart`: the issue-5 fault run: `--sessions` native sessions (default
//!   10,000) logged in, then timd restarted (SIGTERM → close 1012, and kill -9); the time
//!   until every session is back `connected`, spurious kicks and lost sessions.
//! - `tim-bench logins`: login throughput and timd's CPU time per login, for first-time
//!   accounts (registered in the store) and for returning ones; `--perf FILE` samples timd
//!   with `perf record` during the logins.
//! - `tim-bench cluster`: cluster mode on one Redis: cross-node vs same-node kicks, logins/s
//!   embedded vs 1–3 nodes, and 100,000 sessions held over 6 nodes by 6 client processes
//!   (memory, Redis load, a restart of every node); with `--lean --sessions 300000` the lean
//!   load generator holds 300,000 over 18 nodes and the memory per session is split by where
//!   it goes (`scripts/bench.sh hold`).
//! - `tim-bench sidebyside`: timd's logins/s and CPU per login against a bare axum WebSocket
//!   server that only answers the frames a login needs (`tim-bench bare-server`, hidden),
//!   in interleaved rounds.
//!
//! - `tim-bench chaos`: clients, an admin and a ticket thief against 3 nodes on Redis while
//!   faults run (kill -9, SIGSTOP, Redis paused or killed, subscriptions cut); the recorded
//!   history checked against the rules the docs promise.
//! - `tim-bench soak`: a fixed-rate mix of logins, logouts, kicks, drops, resumes, renewals
//!   and bad input for `--minutes`, sampling memory, descriptors, tasks, SQLite and every
//!   internal map: slopes per hour, a CSV and an SVG chart.
//!
//! `scripts/bench.sh` builds both binaries (profile `server`) and runs them.

mod apps;
mod bare;
mod callbacks;
mod chaos;
mod cluster;
mod http;
mod kick;
mod logins;
mod perf_categories;
mod redis;
mod restart;
mod sidebyside;
mod soak;
mod stats;
mod sys;
mod timd;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tim-bench", about = "timd benchmarks with native clients")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Kick delivery latency: new login's frame sent -> KICKED_OUT in the old instance.
    Kick(kick::KickArgs),
    /// An invariant checker under faults: clients against nodes on Redis while nodes and
    /// Redis are killed, frozen and paused; the history checked against the docs' rules.
    /// The last of a repeated option wins (`scripts/bench.sh chaos` passes `--seconds 600`
    /// before the caller's arguments).
    #[command(args_override_self = true)]
    Chaos(chaos::ChaosArgs),
    /// Login throughput with 1 app and with 100 apps (same run, interleaved rounds).
    Apps(apps::AppsArgs),
    /// 3 nodes on Redis: login-settings changes, how long each takes to answer and whether
    /// every node decides with it when it does.
    Settings(apps::SettingsArgs),
    /// Restart timd under N logged-in sessions (SIGTERM, then kill -9): time until all are
    /// back connected, spurious kicks, lost sessions.
    Restart(restart::RestartArgs),
    /// Login throughput and timd CPU time per login (first-time, then returning accounts).
    Logins(logins::LoginsArgs),
    /// State.StateChange callbacks to a local receiver: login throughput with callbacks off
    /// vs on, delivery latency p50/p99 from the decision, a 10,000-login backlog's events/s.
    Callbacks(callbacks::CallbacksArgs),
    /// Cluster mode on one Redis: cross-node kicks, logins/s per node, sessions held at
    /// scale through a restart of every node.
    Cluster(cluster::ClusterArgs),
    /// One client process of `cluster` (started by it): holds a share of the sessions and
    /// answers commands on stdin.
    #[command(hide = true)]
    ClusterWorker(cluster::worker::WorkerArgs),
    /// timd vs a bare axum WebSocket login server, interleaved rounds: logins/s, server CPU
    /// per login, the ratios.
    Sidebyside(sidebyside::SideBySideArgs),
    /// Steady churn for `--minutes` while sampling what could leak: slopes per hour, lost
    /// sessions, spurious kicks, unexpected errors.
    Soak(soak::SoakArgs),
    /// One client process of `sidebyside` (started by it): logs its share of the users in
    /// and out when told on stdin.
    #[command(hide = true)]
    SidebysideClient(sidebyside::ClientArgs),
    /// The bare server of `sidebyside` (started by it): login_ok without any check.
    #[command(hide = true)]
    BareServer(bare::BareArgs),
}

fn main() {
    let cli = Cli::parse();
    sys::raise_fd_limit();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Bench::ClusterWorker(w) = &cli.command {
        // Several worker processes share two cores: one thread each is plenty.
        builder.worker_threads(w.threads);
    }
    if let Bench::SidebysideClient(_) = &cli.command {
        builder.worker_threads(1);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let ok = match cli.command {
        Bench::Kick(args) => runtime.block_on(kick::kick(args)),
        Bench::Chaos(args) => runtime.block_on(chaos::run(args)),
        Bench::Apps(args) => runtime.block_on(apps::apps(args)),
        Bench::Settings(args) => runtime.block_on(apps::settings(args)),
        Bench::Restart(args) => runtime.block_on(restart::restart(args)),
        Bench::Logins(args) => runtime.block_on(logins::logins(args)),
        Bench::Callbacks(args) => runtime.block_on(callbacks::run(args)),
        Bench::Cluster(args) => runtime.block_on(cluster::run(args)),
        Bench::ClusterWorker(args) => runtime.block_on(cluster::worker::run(args)),
        Bench::Sidebyside(args) => runtime.block_on(sidebyside::run(args)),
        Bench::SidebysideClient(args) => runtime.block_on(sidebyside::client(args)),
        Bench::Soak(args) => runtime.block_on(soak::run(args)),
        Bench::BareServer(args) => runtime.block_on(bare::run(args)),
    };
    // Thousands of client tasks: do not wait for them to wind down.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if !ok {
        std::process::exit(1);
    }
}
