//! `tim-bench logins`: login throughput and timd's CPU time per login, for first-time
//! accounts (registered in the store) and for returning ones; `--perf FILE` samples timd
//! with `perf record` during the logins. The login rounds are shared with the cluster bench.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tim_client::{Client, Config, Platform};
use tokio::sync::Semaphore;

use crate::sys::{now_secs, sig, APP};
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct LoginsArgs {
    #[command(flatten)]
    common: Common,
    /// Users logging in (one Web session each), held connected.
    #[arg(long, default_value_t = 10_000)]
    logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Record timd with `perf record -g` into FILE while the logins run.
    #[arg(long, value_name = "FILE")]
    perf: Option<PathBuf>,
}

/// Logs `n` users (`{prefix}0..`) in, `concurrency` at a time, user `i` on `urls[i %
/// urls.len()]`; returns the clients (held connected).
pub async fn log_in_all(
    urls: &[String],
    prefix: &str,
    n: usize,
    concurrency: usize,
    round: usize,
) -> Vec<Client> {
    log_in_all_to(urls, prefix, n, concurrency, round, |_| (APP, None)).await
}

/// [`log_in_all`], user `i` into the app `app_of(i)` names: its SDKAppID, and its key
/// (`None`: the bench's own app key).
pub async fn log_in_all_to(
    urls: &[String],
    prefix: &str,
    n: usize,
    concurrency: usize,
    round: usize,
    app_of: impl Fn(usize) -> (u32, Option<String>),
) -> Vec<Client> {
    let logins = (0..n)
        .map(|i| {
            let user = format!("{prefix}{i}");
            let (app, key) = app_of(i);
            let usersig = match key {
                Some(key) => tim_usersig::generate(app, &key, &user, now_secs(), 3600),
                None => sig(&user),
            };
            Signed { app, user, usersig }
        })
        .collect();
    log_in_signed(urls, logins, concurrency, round, 0).await
}

/// One login to make: the user, its app and the UserSig it presents.
pub struct Signed {
    pub app: u32,
    pub user: String,
    pub usersig: String,
}

/// Logs `logins` in, `concurrency` at a time, login `i` on `urls[i % urls.len()]` as instance
/// `d{round}-{first + i}`; returns the clients (held connected).
pub async fn log_in_signed(
    urls: &[String],
    logins: Vec<Signed>,
    concurrency: usize,
    round: usize,
    first: usize,
) -> Vec<Client> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = logins
        .into_iter()
        .enumerate()
        .map(|(i, login)| {
            let (url, gate) = (urls[i % urls.len()].clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                let Signed { app, user, usersig } = login;
                let c = Client::new(
                    &url,
                    Config::new(app, Platform::Web, format!("d{round}-{}", first + i)),
                );
                if let Err(e) = c.login(&user, &usersig).await {
                    panic!("login {user} in app {app}: {e:?}");
                }
                c
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    for t in tasks {
        clients.push(t.await.expect("login task"));
    }
    clients
}

/// Destroys every client (logout: frees its slot), `concurrency` at a time.
pub async fn destroy_all(clients: Vec<Client>, concurrency: usize) {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let outs: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                let _ = c.destroy().await;
            })
        })
        .collect();
    for o in outs {
        let _ = o.await;
    }
}

pub async fn logins(args: LoginsArgs) -> bool {
    let n = args.logins;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut timd = Timd::new(&args.common, dir.path(), &["--web-instances", "1"]);
    timd.start().await;
    let url = timd.url();
    println!(
        "logins: timd {} ({}), {n} Web users, {} in flight",
        timd.binary.display(),
        timd.addr,
        args.concurrency
    );
    let pid = timd.child.as_ref().expect("timd running").id();
    let mut perf = args.perf.as_ref().map(|file| {
        Command::new("perf")
            .args(["record", "-g", "-F", "1999", "-p", &pid.to_string(), "-o"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn perf (Debian: linux-perf)")
    });
    if perf.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (round, what) in ["first-time accounts", "returning accounts"]
        .iter()
        .enumerate()
    {
        let cpu0 = timd.cpu();
        let t0 = Instant::now();
        let clients = log_in_all(std::slice::from_ref(&url), "l", n, args.concurrency, round).await;
        let wall = t0.elapsed();
        let cpu = timd.cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
        println!(
            "  {what}: {n} logins in {:.2} s: {:.0} logins/s, timd CPU {}",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            cpu.map_or("?".into(), |c| format!(
                "{:.2} s = {:.1} µs per login",
                c.as_secs_f64(),
                c.as_secs_f64() * 1e6 / n as f64
            ))
        );
        // Log out (frees each slot) before the next round.
        destroy_all(clients, args.concurrency).await;
    }
    if let Some(p) = perf.as_mut() {
        // SAFETY: kill(2) on our own child's pid; perf writes its file on SIGINT.
        unsafe {
            libc::kill(p.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = p.wait();
    }
    true
}
