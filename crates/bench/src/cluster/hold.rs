//! Sessions held at scale: `--sessions` logged-in users (one Web session each, so no policy
//! kicks) over `--hold-nodes` nodes on one Redis, driven by `--workers` client processes.
//! Prints timd's and Redis's memory per session, the steady load on Redis (heartbeats and
//! node rounds), then the restart run, and how far the same setup would go.

use std::time::{Duration, Instant};

use std::collections::HashMap;

use crate::redis::Redis;
use crate::sys::{cpu_of, mib};
use crate::timd::Common;

use super::kernel::Kernel;
use super::nodes::{cluster_flags, Load, Nodes};
use super::workers::Workers;
use super::{restarts, HoldArgs};

/// This machine's memory, for "how far": from /proc/meminfo.
fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Calls per command from `INFO commandstats` (`cmdstat_get:calls=N,…` → `get` → N).
fn command_calls(redis: &Redis) -> HashMap<String, u64> {
    redis
        .info("commandstats")
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?;
            let calls = v.split(',').next()?.strip_prefix("calls=")?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

pub async fn run(common: &Common, redis: &Redis, args: &HoldArgs, lease_ms: u32) -> bool {
    let n = args.sessions.unwrap_or(100_000);
    // Every process may open 20,000 files at most: ≤ 16,700 sessions per node and per client.
    let per_process = 16_700;
    let node_count = args.hold_nodes.unwrap_or(6).max(n.div_ceil(per_process));
    let worker_count = args.workers.unwrap_or(6).max(n.div_ceil(per_process));
    let nodes_flags = cluster_flags(&redis.url(), lease_ms);
    let mut nodes = Nodes::start(common, node_count, &nodes_flags).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = nodes.rss();
    let mem0 = redis.info_u64("memory", "used_memory");
    let per_node: Vec<usize> = (0..node_count)
        .map(|i| (0..n).filter(|g| g % node_count == i).count())
        .collect();
    println!(
        "  hold: {n} sessions (one Web user each) on {node_count} nodes, {worker_count} client processes \
         ({}-{} sessions each), lease {lease_ms} ms (node rounds every {} ms), heartbeat 25 s (timd's default)",
        n / worker_count,
        n.div_ceil(worker_count),
        lease_ms / 6
    );
    let kernel0 = Kernel::read();
    let ips = args
        .ips_per_worker
        .unwrap_or_else(|| n.div_ceil(worker_count).div_ceil(5_000));
    let mut workers = Workers::spawn(
        worker_count,
        n,
        &nodes.urls(),
        ips,
        args.login_concurrency,
        args.lean,
    );
    match (workers.binds[0].first(), workers.binds[worker_count - 1].last()) {
        (Some(first), Some(last)) => println!(
            "    client source addresses: {first} … {last} ({ips} per process, bound before connect)"
        ),
        _ => println!("    client source address: 127.0.0.1 (the kernel picks; no bind)"),
    }
    let t0 = Instant::now();
    let (ok_logins, failed) = workers.ready().await;
    let wall = t0.elapsed();
    println!(
        "    {ok_logins} logged in ({failed} failed) in {:.1} s: {:.0} logins/s over {node_count} nodes",
        wall.as_secs_f64(),
        ok_logins as f64 / wall.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let online = nodes.metric("timd_sessions_online", "").await as usize;
    let conns = nodes.metric("timd_ws_connections", "").await as usize;
    let full_rss = nodes.rss();
    let mem1 = redis.info_u64("memory", "used_memory");
    let kernel1 = Kernel::read();
    let status = workers.status().await;
    let per = |b: u64| b as f64 / 1024.0 / n as f64;
    println!(
        "    nodes report {online} sessions online, {conns} connections; clients report {} connected",
        status.connected
    );
    let timd_b = full_rss.saturating_sub(idle_rss);
    let redis_b = mem1.saturating_sub(mem0);
    let redis_rss = redis.rss().unwrap_or(0);
    let tcp_b = kernel1.tcp_mem.saturating_sub(kernel0.tcp_mem);
    let slab_b = kernel1.slab_total().saturating_sub(kernel0.slab_total());
    let gen_b = status.rss;
    let all_b = timd_b + redis_b + tcp_b + slab_b + gen_b;
    let fell = kernel0.mem_available.saturating_sub(kernel1.mem_available);
    let grew: Vec<String> = kernel1
        .slab_growth(&kernel0, 8)
        .iter()
        .map(|(name, b)| format!("{name} {:.2}", *b as f64 / 1024.0 / n as f64))
        .collect();
    println!(
        "    memory per session, whole machine (both ends of every socket are on it), {n} sessions:"
    );
    println!(
        "      timd       {:>6.2} KiB  (RSS summed over {node_count} nodes: {:.0} MiB idle -> {:.0} MiB held; \
         {:.2} KiB per session counting the idle RSS)",
        per(timd_b),
        mib(idle_rss),
        mib(full_rss),
        per(full_rss)
    );
    println!(
        "      Redis      {:>6.2} KiB  (used_memory {:.1} -> {:.1} MiB: {:.0} B per session; RSS {:.0} MiB: {:.0} B per session)",
        per(redis_b),
        mib(mem0),
        mib(mem1),
        redis_b as f64 / n as f64,
        mib(redis_rss),
        redis_rss as f64 / n as f64
    );
    println!(
        "      kernel     {:>6.2} KiB  TCP buffers (/proc/net/sockstat TCP mem: {:.1} -> {:.1} MiB; TCP inuse {} -> {})",
        per(tcp_b),
        mib(kernel0.tcp_mem),
        mib(kernel1.tcp_mem),
        kernel0.tcp_inuse,
        kernel1.tcp_inuse
    );
    println!(
        "      kernel     {:>6.2} KiB  socket objects (/proc/slabinfo growth, both ends, KiB per session: {})",
        per(slab_b),
        grew.join(", ")
    );
    println!(
        "      generator  {:>6.2} KiB  (RSS of {worker_count} {} processes: {:.0} MiB)",
        per(gen_b),
        if args.lean {
            "lean generator"
        } else {
            "tim-client"
        },
        mib(gen_b)
    );
    println!(
        "      all told   {:>6.2} KiB  per session; the machine's MemAvailable fell {:.0} MiB \
         ({:.2} KiB per session; the whole machine, other work included)",
        per(all_b),
        mib(fell),
        per(fell)
    );

    // Steady state: heartbeats go to the nodes only; the node rounds (one script per node
    // every lease/6) are the Redis load.
    let window = Duration::from_millis(lease_ms as u64).max(Duration::from_secs(args.window_secs));
    let renew0 = nodes.metric("timd_lease_renewals", "result=\"ok\"").await;
    let failed0 = nodes
        .metric("timd_lease_renewals", "result=\"failed\"")
        .await;
    let pids = workers.pids();
    let gen_cpu = || -> f64 {
        pids.iter()
            .filter_map(|&p| cpu_of(p))
            .map(|d| d.as_secs_f64())
            .sum()
    };
    let stats0 = command_calls(redis);
    let gcpu0 = gen_cpu();
    let load = Load::measure(redis, &nodes, tokio::time::sleep(window)).await;
    let gcpu = gen_cpu() - gcpu0;
    let stats1 = command_calls(redis);
    let (secs, cmds, evalsha, rcpu, tcpu) = (
        load.secs,
        load.commands,
        load.evalsha,
        load.redis_cpu,
        load.nodes_cpu,
    );
    let renewals = nodes.metric("timd_lease_renewals", "result=\"ok\"").await - renew0;
    let renew_failed = nodes
        .metric("timd_lease_renewals", "result=\"failed\"")
        .await
        - failed0;
    let mut per_command: Vec<(String, u64)> = stats1
        .iter()
        .map(|(c, &v)| {
            (
                c.clone(),
                v.saturating_sub(stats0.get(c).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    per_command.sort_by_key(|c| std::cmp::Reverse(c.1));
    let per_command: Vec<String> = per_command
        .iter()
        .map(|(c, d)| format!("{c} {:.1}", *d as f64 / secs))
        .collect();
    println!(
        "    steady load over {secs:.0} s (>= 1 lease): Redis {:.1} commands/s (total_commands_processed; \
         {:.1} EVALSHA/s; INFO commandstats, calls/s: {}), {:.1} node lease renewals/s ({renew_failed} failed)",
        cmds as f64 / secs,
        evalsha as f64 / secs,
        if per_command.is_empty() { "none".to_owned() } else { per_command.join(", ") },
        renewals / secs,
    );
    println!(
        "    steady CPU (/proc/PID/stat over the window): Redis {:.2}% of a core, timd {:.2}% of a core \
         (all {node_count} nodes: heartbeats + rounds; {:.3} µs per second per session), generator {:.2}% \
         of a core (all {worker_count} processes: pongs)",
        rcpu * 100.0 / secs,
        tcpu * 100.0 / secs,
        tcpu * 1e6 / secs / n as f64,
        gcpu * 100.0 / secs
    );

    let mut ok = failed == 0 && status.connected == n && online == n;
    if !args.no_restart {
        let rcpu0 = redis.cpu();
        let evalsha0 = redis.calls("evalsha");
        let t0 = Instant::now();
        ok &= restarts::run(
            &mut nodes,
            &mut workers,
            &per_node,
            &args.modes,
            Duration::from_secs(args.timeout_secs),
            Duration::from_millis(lease_ms as u64 / 3),
        )
        .await;
        // Every session came back once per mode (resumed with its ticket): what Redis spent
        // on each, the run's steady load included.
        let resumes = n * args.modes.len();
        let spent = redis
            .cpu()
            .zip(rcpu0)
            .map_or(0.0, |(b, a)| b.saturating_sub(a).as_secs_f64());
        println!(
            "    Redis during the restart run ({:.0} s, {resumes} sessions back): {:.1} µs of Redis CPU and \
             {:.2} EVALSHA per session back",
            t0.elapsed().as_secs_f64(),
            spent * 1e6 / resumes as f64,
            redis.calls("evalsha").saturating_sub(evalsha0) as f64 / resumes as f64
        );
    }

    // How far: what each session costs on this machine, and what runs out first.
    let per_session = all_b as f64 / n as f64;
    let redis_core = rcpu / secs;
    println!(
        "  how far: {:.2} KiB per session all told (timd + Redis + kernel, both ends + the generator) -> {:.0} \
         sessions in this machine's {:.0} GiB; Redis at {:.2}% of its one core for {n} idle sessions; \
         1,000,000 sessions need >= {} nodes and >= {} client processes at 20,000 files each",
        per_session / 1024.0,
        mem_total() as f64 / per_session,
        mem_total() as f64 / 1073741824.0,
        redis_core * 100.0,
        1_000_000usize.div_ceil(per_process),
        1_000_000usize.div_ceil(per_process)
    );
    if !ok {
        println!("  timd logs: {}", nodes.logs());
    }
    workers.quit().await;
    ok
}
