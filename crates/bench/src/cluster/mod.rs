//! `tim-bench cluster`: timd's cluster mode on one Redis (started here, on a free loopback
//! port): cross-node against same-node kick delivery, logins/s embedded against 1–3
//! cluster nodes, sessions held at scale over several nodes and client processes through a
//! restart of every node in turn, and the reconnect storm: every node restarted at once
//! (`--parts storm`, 50,000 sessions by default), and what idle sessions cost with per-node
//! liveness against per-session leases (`--parts liveness --old-timd PATH`). Figures, not assertions; fails only when a run saw
//! something wrong (a missing kick, a spurious kick, a lost session).

mod hold;
mod kernel;
mod kick;
mod lean;
mod liveness;
mod logins;
pub mod nodes;
mod restarts;
mod storm;
mod wire;
pub mod worker;
mod workers;

use clap::Args;

use crate::redis::{Persistence, Redis};
use crate::restart::Mode;
use crate::timd::Common;

use self::nodes::{cluster_flags, Nodes};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Cross-node vs same-node kick delivery.
    Kick,
    /// Logins/s: embedded vs cluster x1..x3.
    Logins,
    /// Sessions held at scale, memory, Redis load, restart run.
    Hold,
    /// Every node restarted at the same moment (SIGTERM, then kill -9): all sessions
    /// reconnect in one storm.
    Storm,
    /// What idle sessions cost (Redis commands/s and CPU, node CPU), cross-node kick
    /// delivery and the kill -9 bound: this build against `--old-timd` (per-session
    /// leases), in one run.
    Liveness,
}

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    common: Common,
    /// Which parts to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "kick,logins,hold")]
    parts: Vec<Part>,
    /// Redis persistence.
    #[arg(long, value_enum, default_value = "none")]
    persistence: Persistence,
    /// The nodes' lease (`timd serve --lease-ms`).
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u32,
    /// Nodes for the kick and logins parts.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Kicks of each kind (same-node, cross-node) to measure.
    #[arg(long, default_value_t = 1000)]
    kicks: usize,
    /// Warm-up kicks of each kind.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Users per logins configuration.
    #[arg(long, default_value_t = 10_000)]
    logins: usize,
    /// Logins in flight at once (logins part).
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// The build to compare with in the liveness part (per-session leases: e.g. `timd`
    /// built at commit 34c5648).
    #[arg(long)]
    old_timd: Option<std::path::PathBuf>,
    /// Idle sessions held in the liveness part, per measurement.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000,100000")]
    idle_sizes: Vec<usize>,
    #[command(flatten)]
    hold: HoldArgs,
}

#[derive(Args)]
pub struct HoldArgs {
    /// Sessions held (one Web user each) [default: 100,000 (hold), 50,000 (storm)].
    #[arg(long)]
    sessions: Option<usize>,
    /// Nodes holding them, at least sessions / 16,700 (20,000 files per process)
    /// [default: 6 (hold), sessions / 10,000 (storm)].
    #[arg(long)]
    hold_nodes: Option<usize>,
    /// Client processes, at least sessions / 16,700 [default: as the nodes].
    #[arg(long)]
    workers: Option<usize>,
    /// Source addresses (127.0.0.2, .3, …) per client process; 0: no bind (the kernel
    /// picks 127.0.0.1 and the port). Default: one per 5,000 sessions — a bind to port 0
    /// searches the odd half of the ephemeral range first (Linux keeps the even half for
    /// connect), so past ~14,000 sockets on one address every bind scans the whole range.
    #[arg(long)]
    ips_per_worker: Option<usize>,
    /// Logins in flight at once per client process.
    #[arg(long, default_value_t = 50)]
    login_concurrency: usize,
    /// The lean load generator: one small task per session over a raw socket (login, pong,
    /// resume) instead of a full `tim-client` each, so the memory goes to the server side.
    #[arg(long)]
    lean: bool,
    /// Steady-load window, seconds (at least one lease).
    #[arg(long, default_value_t = 0)]
    window_secs: u64,
    /// Restarts of every node (hold: in turn; storm: all at once), in order.
    #[arg(long, value_delimiter = ',', default_value = "term,kill")]
    modes: Vec<Mode>,
    /// Hold and measure only: no restart run.
    #[arg(long)]
    no_restart: bool,
    /// Sessions of a restarted node not back within this count as lost.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

pub async fn run(args: ClusterArgs) -> bool {
    println!(
        "cluster: timd {}, {}, Redis {}",
        args.common.binary().display(),
        Redis::version(),
        args.persistence.describe()
    );
    let mut ok = true;
    for part in &args.parts {
        // A fresh Redis per part: the hold part's memory figures start from empty.
        let dir = tempfile::Builder::new()
            .prefix("tim-bench-redis-")
            .tempdir()
            .expect("temp dir");
        let redis = Redis::start(dir.path(), args.persistence);
        match part {
            Part::Kick => {
                let nodes = Nodes::start(
                    &args.common,
                    args.nodes.max(2),
                    &cluster_flags(&redis.url(), args.lease_ms),
                )
                .await;
                ok &= kick::run(&nodes.urls(), args.kicks, args.warmup).await;
            }
            Part::Logins => {
                logins::run(
                    &args.common,
                    &redis,
                    args.lease_ms,
                    args.nodes,
                    args.logins,
                    args.concurrency,
                )
                .await
            }
            Part::Hold => ok &= hold::run(&args.common, &redis, &args.hold, args.lease_ms).await,
            Part::Storm => ok &= storm::run(&args.common, &redis, &args.hold, args.lease_ms).await,
            Part::Liveness => {
                let old = args.old_timd.clone().map(|timd| Common {
                    timd: Some(timd),
                    log: None,
                });
                ok &= liveness::run(liveness::LivenessArgs {
                    new: &args.common,
                    old: old.as_ref(),
                    sizes: &args.idle_sizes,
                    lease_ms: args.lease_ms,
                    window: std::time::Duration::from_millis(args.lease_ms.into())
                        .max(std::time::Duration::from_secs(args.hold.window_secs)),
                    kicks: args.kicks.min(1000),
                    login_concurrency: args.hold.login_concurrency,
                })
                .await
            }
        }
    }
    println!("cluster: {}", if ok { "OK" } else { "FAILED" });
    ok
}
