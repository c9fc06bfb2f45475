//! The faults a chaos run injects, one at a time, each logged as a window from its start to
//! the moment everything it broke is running again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::actors::{Log, Rng};
use super::history::Op;
use super::topology::{Kind, Topology};
use crate::timd::Timd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 a node, start it again on its port after a moment.
    KillNode,
    /// SIGSTOP a node (a partition from everyone: its sockets stay open, nothing answers),
    /// then SIGCONT.
    FreezeNode,
    /// `CLIENT PAUSE ms ALL`: Redis (in a Redis Cluster, one shard's primary) answers nobody
    /// for a while.
    PauseRedis,
    /// `CLIENT KILL TYPE pubsub` (in a Redis Cluster, on every server): every node's
    /// subscription connections cut.
    KillSubscriptions,
    /// kill -9 the Redis primary: one server starts again from its append-only file; behind
    /// Sentinel the replica is promoted (a failover) and the old primary returns as a replica;
    /// in a Redis Cluster, one shard's primary, whose replica takes over (the shard's
    /// failover), the old one back as its replica.
    KillRedis,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::KillNode,
        Fault::FreezeNode,
        Fault::PauseRedis,
        Fault::KillSubscriptions,
        Fault::KillRedis,
    ];

    /// What the fault does on this Redis.
    pub fn name(self, redis: Kind) -> &'static str {
        let cluster = redis == Kind::Cluster;
        match self {
            Fault::KillNode => "kill -9 a node",
            Fault::FreezeNode => "SIGSTOP a node",
            Fault::PauseRedis if cluster => "CLIENT PAUSE a shard's primary",
            Fault::PauseRedis => "CLIENT PAUSE Redis",
            Fault::KillSubscriptions if cluster => "CLIENT KILL TYPE pubsub on every shard",
            Fault::KillSubscriptions => "CLIENT KILL TYPE pubsub",
            Fault::KillRedis if cluster => "kill -9 a shard's primary",
            Fault::KillRedis => "kill -9 the Redis primary",
        }
    }
}

fn signal(node: &Timd, sig: libc::c_int) {
    if let Some(pid) = node.pid() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// Injects a fault every `every` (± a third) until `end`; returns how many of each ran.
pub async fn run(
    log: Arc<Log>,
    nodes: &mut [Timd],
    redis: &mut Topology,
    kind: Kind,
    every: Duration,
    end: Instant,
    seed: u64,
) -> [usize; 5] {
    let mut rng = Rng::new(seed);
    let mut counts = [0usize; 5];
    let third = (every.as_millis() / 3) as u64;
    loop {
        let wait = every.as_millis() as u64 - third + rng.below(2 * third + 1);
        let wait = Duration::from_millis(wait);
        if Instant::now() + wait >= end {
            break;
        }
        tokio::time::sleep(wait).await;
        let i = rng.below(Fault::ALL.len() as u64) as usize;
        let fault = Fault::ALL[i];
        counts[i] += 1;
        let k = rng.below(nodes.len() as u64) as usize;
        let name = match fault {
            Fault::KillNode | Fault::FreezeNode => format!("{} ({k})", fault.name(kind)),
            _ => fault.name(kind).to_owned(),
        };
        let started = log.elapsed();
        log.push(Op::FaultStart { name: name.clone() });
        let mut note = String::new();
        match fault {
            Fault::KillNode => {
                nodes[k].stop(libc::SIGKILL).await;
                tokio::time::sleep(rng.millis(500, 2_500)).await;
                nodes[k].start().await;
            }
            Fault::FreezeNode => {
                signal(&nodes[k], libc::SIGSTOP);
                tokio::time::sleep(rng.millis(1_000, 5_000)).await;
                signal(&nodes[k], libc::SIGCONT);
            }
            Fault::PauseRedis => {
                let ms = rng.millis(500, 2_500);
                let pick = rng.below(u64::MAX);
                note = tokio::task::block_in_place(|| redis.pause(ms.as_millis() as u64, pick));
                tokio::time::sleep(ms).await;
            }
            Fault::KillSubscriptions => {
                tokio::task::block_in_place(|| redis.kill_subscriptions());
            }
            Fault::KillRedis => {
                let down = rng.millis(300, 2_000);
                let pick = rng.below(u64::MAX);
                let what = tokio::task::block_in_place(|| redis.kill_primary(down, pick));
                note = format!(": {what}");
            }
        }
        println!(
            "    {:>6.1} s  {name}{note} (until {:.1} s)",
            started.as_secs_f64(),
            log.elapsed().as_secs_f64()
        );
        log.push(Op::FaultEnd { name });
    }
    counts
}
