//! Several apps in one timd, measured:
//!
//! - `tim-bench apps`: login throughput and timd CPU per login with one app (the single-app
//!   flags) and with 100 apps (an apps file; the logins spread over all of them, each
//!   UserSig signed with its app's key), in interleaved rounds of the same run — the per-app
//!   lookup must not cost measurably.
//! - `tim-bench settings`: 3 nodes on one Redis; 100 login-settings changes through node 1's
//!   REST API: how long each call takes to answer, and how many nodes were not yet deciding
//!   with the new version when it answered (read from each node's
//!   `timd_login_settings_version` gauge right after the answer; Tencent: up to 5 minutes).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;

use crate::logins::{destroy_all, log_in_all_to};
use crate::redis::{Persistence, Redis};
use crate::sys::{now_secs, APP, KEY};
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct AppsArgs {
    #[command(flatten)]
    common: Common,
    /// Logins per round (one Web session each), spread over the apps.
    #[arg(long, default_value_t = 5_000)]
    logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Apps in the apps file of the second server.
    #[arg(long, default_value_t = 100)]
    apps: u32,
    /// Rounds per server (interleaved: 1 app, many apps, 1 app, ...).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    common: Common,
    /// Settings changes through node 1.
    #[arg(long, default_value_t = 100)]
    changes: usize,
}

/// The key of app `n` of the apps file (app 0 is the bench's own app).
fn key_of(n: u32) -> String {
    if n == 0 {
        KEY.to_owned()
    } else {
        format!("tim-bench-app-{n}-key")
    }
}

fn app_id(n: u32) -> u32 {
    APP + n
}

/// Writes an apps file of `count` apps (`APP`, `APP + 1`, ...) with their keys in the
/// environment variables it names; returns its path and those variables.
fn write_apps_file(dir: &Path, count: u32) -> (std::path::PathBuf, Vec<(String, String)>) {
    let mut text = String::new();
    let mut envs = Vec::new();
    for n in 0..count {
        let var = format!("TIM_BENCH_APP_KEY_{n}");
        text.push_str(&format!(
            "[[app]]\nsdkappid = {}\nkey_env = \"{var}\"\nweb_instances = 1\n\n",
            app_id(n)
        ));
        envs.push((var, key_of(n)));
    }
    let path = dir.join("apps.toml");
    std::fs::write(&path, text).expect("write the apps file");
    (path, envs)
}

struct Round {
    per_second: f64,
    cpu_us: Option<f64>,
}

async fn round(timd: &Timd, n: usize, apps: u32, concurrency: usize, r: usize) -> Round {
    let cpu0 = timd.cpu();
    let t0 = Instant::now();
    // User `i` logs into app `i % apps`, with that app's key.
    let clients = log_in_all_to(&[timd.url()], "u", n, concurrency, r, |i| {
        let app = (i as u32) % apps;
        (app_id(app), Some(key_of(app)))
    })
    .await;
    let wall = t0.elapsed();
    let cpu = timd.cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    destroy_all(clients, concurrency).await;
    Round {
        per_second: n as f64 / wall.as_secs_f64(),
        cpu_us: cpu.map(|c| c.as_secs_f64() * 1e6 / n as f64),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn apps(args: AppsArgs) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, envs) = write_apps_file(dir.path(), args.apps);
    let one_dir = dir.path().join("one");
    let many_dir = dir.path().join("many");
    for d in [&one_dir, &many_dir] {
        std::fs::create_dir_all(d).expect("a server's directory");
    }
    let mut one = Timd::new(&args.common, &one_dir, &["--web-instances", "1"]);
    let file = file.to_string_lossy().into_owned();
    let mut many = Timd::new(&args.common, &many_dir, &["--apps", &file]).with_envs(envs);
    one.start().await;
    many.start().await;
    println!(
        "apps: {} logins per round ({} in flight), 1 app vs {} apps (logins spread over all of them), {} interleaved rounds after a warm-up",
        args.logins, args.concurrency, args.apps, args.rounds
    );
    // Warm-up: first-time accounts; the counted rounds are returning users.
    round(&one, args.logins, 1, args.concurrency, 0).await;
    round(&many, args.logins, args.apps, args.concurrency, 0).await;
    let (mut rates, mut cpus) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for r in 1..=args.rounds {
        let a = round(&one, args.logins, 1, args.concurrency, r).await;
        let b = round(&many, args.logins, args.apps, args.concurrency, r).await;
        let us = |x: Option<f64>| x.map_or("?".into(), |v| format!("{v:.1} µs"));
        println!(
            "  round {r}: 1 app {:.0} logins/s, CPU {} per login | {} apps {:.0} logins/s, CPU {} per login",
            a.per_second,
            us(a.cpu_us),
            args.apps,
            b.per_second,
            us(b.cpu_us)
        );
        rates.0.push(a.per_second);
        rates.1.push(b.per_second);
        if let (Some(x), Some(y)) = (a.cpu_us, b.cpu_us) {
            cpus.0.push(x);
            cpus.1.push(y);
        }
    }
    let (r1, rn) = (median(rates.0), median(rates.1));
    println!(
        "  median: 1 app {r1:.0} logins/s, {} apps {rn:.0} logins/s ({:.2}x)",
        args.apps,
        rn / r1
    );
    if !cpus.0.is_empty() {
        let (c1, cn) = (median(cpus.0), median(cpus.1));
        println!(
            "  median timd CPU per login: 1 app {c1:.1} µs, {} apps {cn:.1} µs ({:+.1} µs)",
            args.apps,
            cn - c1
        );
    }
    true
}

/// `timd_login_settings_version{app="APP"}` from `/metrics`.
async fn version_on(timd: &Timd) -> Option<u64> {
    let text = timd.metrics().await?;
    let series = format!("timd_login_settings_version{{app=\"{APP}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn admin_query() -> String {
    let sig = tim_usersig::generate(APP, KEY, "administrator", now_secs(), 600);
    format!(
        "sdkappid={APP}&identifier=administrator&usersig={sig}&random={}&contenttype=json",
        now_secs()
    )
}

pub async fn settings(args: SettingsArgs) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(dir.path(), Persistence::None);
    let url = redis.url();
    let mut nodes: Vec<Timd> = (0..3)
        .map(|i| {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("a node's directory");
            Timd::new(
                &args.common,
                &node_dir,
                &["--redis", &url, "--web-instances", "1"],
            )
        })
        .collect();
    for n in &mut nodes {
        n.start().await;
    }
    // Every node has announced itself (its first lease round) before the first change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "settings: 3 nodes on one Redis, {} changes of the Web limit through node 1's REST API",
        args.changes
    );
    let mut answered = Vec::with_capacity(args.changes);
    let mut behind_total = 0;
    let mut failed = 0;
    for i in 0..args.changes {
        let web = 1 + (i % 10);
        let path = format!("/v4/timd/set_login_settings?{}", admin_query());
        let t0 = Instant::now();
        let answer = crate::http::post(
            nodes[0].addr,
            &path,
            &format!("{{\"WebInstances\": {web}}}"),
        )
        .await;
        let took = t0.elapsed();
        let version = answer
            .as_deref()
            .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
            .and_then(|v| v["Version"].as_u64());
        let Some(version) = version else {
            failed += 1;
            println!("  change {i}: no answer: {answer:?}");
            continue;
        };
        answered.push(took);
        for n in &nodes {
            if version_on(n).await.is_none_or(|v| v < version) {
                behind_total += 1;
            }
        }
    }
    crate::stats::print_summary(
        "  set_login_settings answered (stored, announced, applied by every node)",
        &mut answered,
    );
    println!(
        "  nodes not yet deciding with the new version when the call answered: {behind_total} of {} (node x change); Tencent: up to 5 minutes",
        3 * (args.changes - failed)
    );
    failed == 0 && behind_total == 0
}
