//! `tim-bench chaos`: an invariant checker under faults. SDK instances, an admin and a ticket
//! thief act against `--nodes` nodes on one Redis while faults run one after another (a node
//! killed with kill -9 and started again, a node frozen with SIGSTOP, Redis paused, the nodes'
//! subscriptions cut, Redis killed and started again from its append-only file; with
//! `--sentinel` a killed primary is a failover, with `--redis-cluster` the Redis faults hit one
//! shard of a 3-primary/3-replica Redis Cluster, a kill being that shard's failover). Everything
//! done and seen is logged with its time; afterwards the log is checked against the rules the
//! docs promise ([`history`]): the instance limits (beyond the kick bound), revocation by REST
//! kicks, dead tickets, kicks with a cause, every session online or told why not, and every
//! client back within a bound after the last fault. It prints the operations, the faults and
//! each rule's verdict, and fails if one is broken.

mod actors;
mod faults;
pub mod history;
mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tim_client::Handle;
use tim_proto::Platform;

use crate::cluster::nodes::Nodes;
use crate::sys::{now_secs, APP, KEY};
use crate::timd::Common;
use actors::{user_name, Log};
use history::{Instance, Op, Rules, Verdict};
use topology::{Kind, Topology};

#[derive(Args)]
pub struct ChaosArgs {
    #[command(flatten)]
    common: Common,
    /// How long the clients act; faults stop a quarter before the end (at least 20 s), so
    /// the run ends quiet.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Users, each with 3 Web instances (limit 2) and an Android and a Windows one (policy
    /// dual: one of them at a time).
    #[arg(long, default_value_t = 12)]
    users: usize,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// A fault every this many seconds (± a third).
    #[arg(long, default_value_t = 8)]
    fault_every_secs: u64,
    /// The nodes' `--lease-ms`.
    #[arg(long, default_value_t = 3_000)]
    lease_ms: u64,
    /// The nodes' `--heartbeat-ms` (how soon clients of a frozen node notice).
    #[arg(long, default_value_t = 2_000)]
    heartbeat_ms: u64,
    /// How long more instances than allowed may stay online while connected and fault-free
    /// (default: the documented lease/3, plus 1 s for a loaded machine).
    #[arg(long)]
    kick_bound_ms: Option<u64>,
    /// Every client that is logged in is connected again within this after the last fault.
    #[arg(long, default_value_t = 30)]
    recovery_bound_secs: u64,
    /// Seeds the actors and the fault schedule (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Also inject, a third into the run, a loss the docs say timd does not survive
    /// (`flushall`: Redis loses every tombstone and kick time), to show the checker flags what
    /// it breaks: dead tickets resume, revoked UserSigs log in. The run then fails.
    #[arg(long, value_enum)]
    break_with: Option<Break>,
    /// The nodes on a primary and a replica behind three Sentinels (`redis+sentinel://`):
    /// killing the primary is then a failover.
    #[arg(long)]
    sentinel: bool,
    /// The nodes on a Redis Cluster of 3 primaries with a replica each (`redis+cluster://`):
    /// killing a shard's primary is that shard's failover (the old primary comes back as its
    /// replica), a pause is one shard's primary's, subscriptions are cut on every server.
    #[arg(long, conflicts_with = "sentinel")]
    redis_cluster: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Break {
    Flushall,
}

const INSTANCES_PER_USER: [Platform; 5] = [
    Platform::Web,
    Platform::Web,
    Platform::Web,
    Platform::Android,
    Platform::Windows,
];

pub async fn run(args: ChaosArgs) -> bool {
    let seed = args.seed.unwrap_or_else(tim_client::random_u64);
    let dir = tempfile::Builder::new()
        .prefix("tim-chaos-")
        .tempdir()
        .expect("temp dir");
    let kind = if args.redis_cluster {
        Kind::Cluster
    } else if args.sentinel {
        Kind::Sentinel
    } else {
        Kind::Single
    };
    let mut redis = tokio::task::block_in_place(|| Topology::start(dir.path(), kind));
    let flags = [
        "--redis".to_owned(),
        redis.url(),
        "--lease-ms".to_owned(),
        args.lease_ms.to_string(),
        "--heartbeat-ms".to_owned(),
        args.heartbeat_ms.to_string(),
        "--web-instances".to_owned(),
        "2".to_owned(),
        "--platform-instances".to_owned(),
        "1".to_owned(),
        "--login-policy".to_owned(),
        "dual".to_owned(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut nodes = Nodes::start_with(&args.common, args.nodes, &flags).await;
    let rules = Rules {
        web_limit: 2,
        native_limit: 1,
        kick_bound: Duration::from_millis(args.kick_bound_ms.unwrap_or(args.lease_ms / 3 + 1_000)),
        cause_slack: Duration::from_secs(5),
    };
    let quiet = Duration::from_secs((args.seconds / 4).max(20));
    println!(
        "  chaos: {} nodes on {}, lease {} ms, heartbeat {} ms; {} users x 3 Web + Android + Windows \
         (limits: Web 2, policy dual), an admin kicking, a ticket thief; {} s, a fault every ~{} s until the last {} s; seed {seed}",
        args.nodes,
        redis.describe(),
        args.lease_ms,
        args.heartbeat_ms,
        args.users,
        args.seconds,
        args.fault_every_secs,
        quiet.as_secs()
    );

    let log = Arc::new(Log::new());
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let addrs: Vec<_> = nodes.nodes.iter().map(|n| n.addr).collect();
    let urls = nodes.urls();
    let mut instances = Vec::new();
    let mut tasks = Vec::new();
    for user in 0..args.users {
        for platform in INSTANCES_PER_USER {
            let inst = instances.len();
            instances.push(Instance {
                user,
                web: platform == Platform::Web,
            });
            let url = urls[inst % urls.len()].clone();
            tasks.push(tokio::spawn(actors::instance(
                log.clone(),
                inst,
                user,
                platform,
                url,
                end,
                seed ^ (inst as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )));
        }
    }
    let admin = tokio::spawn(actors::admin(
        log.clone(),
        addrs.clone(),
        args.users,
        end,
        seed ^ 0xad,
    ));
    let thief = tokio::spawn(actors::thief(log.clone(), addrs.clone(), end, seed ^ 0x7f));
    let breaker = args.break_with.map(|Break::Flushall| {
        let (log, primaries) = (log.clone(), redis.primaries());
        let at = start + Duration::from_secs(args.seconds / 3);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let name = "FLUSHALL (a loss the docs do not promise to survive)".to_owned();
            println!("    {:>6.1} s  {name}", log.elapsed().as_secs_f64());
            log.push(Op::FaultStart { name: name.clone() });
            // Retried until each primary took it: a fault of the schedule may have the
            // primary down at this moment (a kill -9 until its restart), and a FLUSHALL that
            // never ran leaves the checker nothing to flag.
            let flushed = tokio::task::spawn_blocking(move || {
                primaries.into_iter().all(|primary| {
                    let within = Duration::from_secs(30);
                    crate::redis::command_until(primary, &["FLUSHALL"], "OK", within)
                })
            })
            .await
            .unwrap_or(false);
            println!(
                "    {:>6.1} s  FLUSHALL {}",
                log.elapsed().as_secs_f64(),
                if flushed {
                    "done"
                } else {
                    "NOT DONE: Redis never took it"
                }
            );
            log.push(Op::FaultEnd { name });
        })
    });
    println!("  faults:");
    let counts = faults::run(
        log.clone(),
        &mut nodes.nodes,
        &mut redis,
        kind,
        Duration::from_secs(args.fault_every_secs),
        end - quiet,
        seed ^ 0xfa,
    )
    .await;
    let last_fault = log.elapsed();
    let mut handles: Vec<Handle> = Vec::new();
    for t in tasks {
        handles.push(t.await.expect("instance task"));
    }
    let _ = admin.await;
    let _ = thief.await;
    if let Some(b) = breaker {
        let _ = b.await;
    }

    // Recovery: the instances logged in but away when the last fault ended are connected
    // again within the bound (from the history), and every instance still logged in at the
    // end is connected (from the clients themselves).
    let recovery_bound = Duration::from_secs(args.recovery_bound_secs);
    let settle = Instant::now() + recovery_bound;
    let mut recovery = Verdict {
        checked: handles.len(),
        ..Verdict::default()
    };
    loop {
        let mut away = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            if h.status().await.is_some_and(|s| s.ready && !s.connected) {
                away.push(i);
            }
        }
        if away.is_empty() {
            break;
        }
        if Instant::now() > settle {
            recovery.broken.push(format!(
                "instances {away:?} logged in but not connected {} s after the run",
                recovery_bound.as_secs()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Online or told why not: once kicks in flight have landed, the server's view of each
    // user equals what its instances believe.
    tokio::time::sleep(rules.kick_bound).await;
    for h in &handles {
        let _ = h.round_trip().await;
    }
    let told = told_why(&handles, &instances, &addrs, args.users).await;

    let history = log.sorted();
    let (back, never) = history::back_after(&history, instances.len(), last_fault);
    if back > recovery_bound || !never.is_empty() {
        recovery.broken.push(format!(
            "after the last fault: the longest wait {:.1} s (bound {} s), never back {never:?}",
            back.as_secs_f64(),
            recovery_bound.as_secs()
        ));
    }
    print_operations(&history, &counts, kind, back, last_fault);
    let verdicts = [
        (
            "never more instances online than the limits allow (beyond the kick bound)",
            history::limits(&history, &instances, &rules),
        ),
        (
            "no login with a UserSig revoked by an acknowledged REST kick",
            history::revocation(&history, &instances),
        ),
        (
            "no resume after a logout or kick was acknowledged",
            history::dead_tickets(&history),
        ),
        (
            "every kick has a cause (a login of the user, or a REST kick)",
            history::kicks_explained(&history, &instances, &rules),
        ),
        (
            "every session online, or told why not (clients and server agree)",
            told,
        ),
        ("every client back after the last fault", recovery),
    ];
    println!("  verdicts:");
    let mut ok = true;
    for (rule, v) in &verdicts {
        if v.broken.is_empty() {
            println!("    ok      {rule} ({} cases)", v.checked);
        } else {
            ok = false;
            println!(
                "    BROKEN  {rule}: {} of {} cases",
                v.broken.len(),
                v.checked
            );
            for b in v.broken.iter().take(10) {
                println!("              {b}");
            }
        }
    }
    if !ok {
        let kept = dir.keep();
        for (i, path) in redis.log_paths().iter().enumerate() {
            let _ = std::fs::copy(path, kept.join(format!("redis-{i}.log")));
        }
        println!(
            "  to look closer: the same run again with --seed {seed} --log DIR/timd.log (each node's log kept there); Redis's logs kept in {}",
            kept.display()
        );
    }
    ok
}

/// The server's count of online instances per user and kind against the clients'.
async fn told_why(
    handles: &[Handle],
    instances: &[Instance],
    nodes: &[std::net::SocketAddr],
    users: usize,
) -> Verdict {
    let mut v = Verdict::default();
    let mut believed: HashMap<(usize, bool), usize> = HashMap::new();
    for (i, h) in handles.iter().enumerate() {
        if h.status().await.is_some_and(|s| s.ready) {
            *believed
                .entry((instances[i].user, instances[i].web))
                .or_default() += 1;
        }
    }
    let accounts: Vec<String> = (0..users).map(user_name).collect();
    let path = format!(
        "/v4/openim/query_online_status?sdkappid={APP}&identifier=administrator&usersig={}&random=1&contenttype=json",
        tim_usersig::generate(APP, KEY, "administrator", now_secs(), 86_400)
    );
    let body = serde_json::json!({ "To_Account": accounts, "IsNeedDetail": 1 }).to_string();
    let Some(answer) = crate::http::post(nodes[0], &path, &body).await else {
        v.broken.push("query_online_status: no answer".into());
        return v;
    };
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let mut seen: HashMap<(usize, bool), usize> = HashMap::new();
    for r in json["QueryResult"].as_array().into_iter().flatten() {
        let Some(user) = r["To_Account"]
            .as_str()
            .and_then(|a| a.strip_prefix("chaos-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        for d in r["Detail"].as_array().into_iter().flatten() {
            let web = d["Platform"] == "Web";
            *seen.entry((user, web)).or_default() += 1;
        }
    }
    for user in 0..users {
        for web in [true, false] {
            v.checked += 1;
            let (b, s) = (
                believed.get(&(user, web)).copied().unwrap_or(0),
                seen.get(&(user, web)).copied().unwrap_or(0),
            );
            if b != s {
                v.broken.push(format!(
                    "user {user}: {b} {} instances believe they are online, the server has {s}",
                    if web { "Web" } else { "native" }
                ));
            }
        }
    }
    v
}

fn print_operations(
    history: &[history::Entry],
    faults: &[usize; 5],
    kind: Kind,
    back: Duration,
    last_fault: Duration,
) {
    let mut logins = 0;
    let mut ok = 0;
    let mut failed: HashMap<u32, usize> = HashMap::new();
    let mut kicked: HashMap<String, usize> = HashMap::new();
    let (mut logouts, mut kicks_sent, mut kicks_acked, mut ended, mut resumes, mut drops) =
        (0, 0, 0, 0, 0, 0);
    for e in history {
        match &e.op {
            Op::LoginSent { .. } => logins += 1,
            Op::LoginOk { .. } => ok += 1,
            Op::LoginFailed { code, .. } => *failed.entry(*code).or_default() += 1,
            Op::LoggedOut { .. } => logouts += 1,
            Op::Kicked { reason, .. } => *kicked.entry(format!("{reason:?}")).or_default() += 1,
            Op::KickSent { .. } => kicks_sent += 1,
            Op::KickAck { .. } => kicks_acked += 1,
            Op::TicketEnded { .. } => ended += 1,
            Op::ResumeAnswered { .. } => resumes += 1,
            Op::Net {
                connected: false, ..
            } => drops += 1,
            _ => {}
        }
    }
    let mut failed: Vec<_> = failed.into_iter().collect();
    failed.sort();
    let mut kicked: Vec<_> = kicked.into_iter().collect();
    kicked.sort();
    println!("  operations ({} logged):", history.len());
    println!("    logins {logins}: {ok} ok, refused {failed:?} (code, count)");
    println!("    logouts {logouts}; kicks seen by instances {kicked:?}; connections lost {drops}");
    println!("    REST kicks {kicks_sent} sent, {kicks_acked} acknowledged; raw sessions ended {ended}, their tickets presented {resumes} times");
    println!(
        "    faults: {}",
        faults::Fault::ALL
            .iter()
            .zip(faults)
            .map(|(f, n)| format!("{} x{n}", f.name(kind)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "    the last fault ended at {:.1} s; the instances it left away were all connected again {:.1} s later",
        last_fault.as_secs_f64(),
        back.as_secs_f64()
    );
}
