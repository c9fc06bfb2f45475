//! One client process of the cluster hold run (`tim-bench cluster-worker`, started by
//! `tim-bench cluster`): logs in its share of the users (one Web session each, user `g` on
//! node `g % nodes`, its sockets bound to its own 127.0.0.x source addresses), then holds
//! them — heartbeats, reconnects, resumes with their tickets — and answers one line per
//! command read on stdin:
//!
//! - `mark` → `marked`: a restart begins; forget who came back before.
//! - `back` → `back N0,N1,…`: per node, the sessions back `connected` since the mark.
//! - `status` → `status connected=… relogins=… kicks=… not_ready=… errors=… rss=… times=…`:
//!   counts since the sessions logged in (relogins: sessions that sent a `login` frame
//!   again, i.e. whose resume was refused), and the ms from the mark to back, per session.
//! - `quit` → `bye`.
//!
//! With `--lean`, `lean.rs` holds the sessions instead (same commands).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tim_client::{Client, Config, Event, Handle, NetState, Options, Platform};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;

use crate::sys::{rss_of, sig, APP};

#[derive(Args)]
pub struct WorkerArgs {
    /// The nodes' URLs (user g connects to node g % count).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(super) urls: Vec<String>,
    /// First user index of this process's share.
    #[arg(long)]
    pub(super) first: usize,
    /// How many users.
    #[arg(long)]
    pub(super) count: usize,
    /// Source addresses to bind the sockets to, round-robin (none: the kernel picks).
    #[arg(long, value_delimiter = ',')]
    pub(super) bind: Vec<IpAddr>,
    /// User names are PREFIX + index.
    #[arg(long, default_value = "h")]
    pub(super) prefix: String,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 50)]
    pub(super) concurrency: usize,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The lean generator (`lean.rs`): a small task per session over a raw socket instead
    /// of a full `tim-client`.
    #[arg(long)]
    pub(super) lean: bool,
}

/// What the sessions saw; `back_at[i]`: ns after `base` (+1) when session `i` was last back
/// `connected` since the mark (0: not since).
struct Tally {
    base: Instant,
    mark: AtomicU64,
    back_at: Vec<AtomicU64>,
    kicks: AtomicUsize,
    not_ready: AtomicUsize,
    errors: AtomicUsize,
}

pub async fn run(args: WorkerArgs) -> bool {
    if args.lean {
        return super::lean::run(args).await;
    }
    let nodes = args.urls.len();
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let tasks: Vec<_> = (0..args.count)
        .map(|i| {
            let g = args.first + i;
            let url = args.urls[g % nodes].clone();
            let options = Options {
                bind: (!args.bind.is_empty()).then(|| args.bind[i % args.bind.len()]),
                ..Options::default()
            };
            let user = format!("{}{g}", args.prefix);
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                let mut c = Client::with_options(
                    &url,
                    Config::new(APP, Platform::Web, format!("h{g}")),
                    options,
                );
                for tries in 0.. {
                    match c.login(&user, &sig(&user)).await {
                        Ok(_) => break,
                        Err(e) if tries < 5 => {
                            eprintln!("login {user}: {e:?}; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(e) => {
                            eprintln!("login {user}: {e:?}; giving up");
                            return None;
                        }
                    }
                }
                while c.try_next_event().is_some() {}
                Some((g, c))
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(args.count);
    for t in tasks {
        if let Some(c) = t.await.expect("login task") {
            clients.push(c);
        }
    }
    println!(
        "ready {} {} {:.3}",
        clients.len(),
        args.count - clients.len(),
        t0.elapsed().as_secs_f64()
    );

    let tally = Arc::new(Tally {
        base: Instant::now(),
        mark: AtomicU64::new(0),
        back_at: (0..clients.len()).map(|_| AtomicU64::new(0)).collect(),
        kicks: AtomicUsize::new(0),
        not_ready: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
    });
    let mut sessions: Vec<(usize, Handle, Option<Instant>)> = Vec::with_capacity(clients.len());
    for (i, (g, c)) in clients.into_iter().enumerate() {
        let (handle, events) = c.split();
        let sent = handle.last_login_sent();
        sessions.push((g, handle, sent));
        tokio::spawn(monitor(tally.clone(), i, g, events));
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.trim() {
            "mark" => {
                let now = tally.base.elapsed().as_nanos() as u64 + 1;
                tally.mark.store(now, Ordering::Release);
                for b in &tally.back_at {
                    b.store(0, Ordering::Release);
                }
                "marked".to_owned()
            }
            "back" => {
                let mut per_node = vec![0usize; nodes];
                for (i, (g, _, _)) in sessions.iter().enumerate() {
                    if tally.back_at[i].load(Ordering::Acquire) != 0 {
                        per_node[g % nodes] += 1;
                    }
                }
                format!("back {}", join(&per_node))
            }
            "status" => status(&tally, &sessions).await,
            "quit" => {
                println!("bye");
                return true;
            }
            other => format!("error unknown command {other:?}"),
        };
        println!("{answer}");
    }
    true
}

async fn monitor(tally: Arc<Tally>, i: usize, g: usize, mut events: tim_client::Events) {
    while let Some((at, event)) = events.next_at().await {
        match event {
            Event::NetState(NetState::Connected) => {
                let at = at.saturating_duration_since(tally.base).as_nanos() as u64 + 1;
                if at > tally.mark.load(Ordering::Acquire) {
                    tally.back_at[i].store(at, Ordering::Release);
                }
            }
            Event::Kicked(reason) => {
                let seen = tally.kicks.fetch_add(1, Ordering::AcqRel);
                // The first few name the session; the count says the rest.
                if seen < 20 {
                    eprintln!("  session h{g}: KICKED_OUT {}", reason.as_str());
                }
            }
            Event::NotReady => {
                tally.not_ready.fetch_add(1, Ordering::AcqRel);
            }
            Event::Error(e) => {
                let seen = tally.errors.fetch_add(1, Ordering::AcqRel);
                if seen < 20 {
                    eprintln!("  session h{g}: ERROR {} {}", e.code, e.message);
                }
            }
            _ => {}
        }
    }
}

async fn status(tally: &Tally, sessions: &[(usize, Handle, Option<Instant>)]) -> String {
    let (mut connected, mut relogins) = (0, 0);
    for (_, h, sent) in sessions {
        if h.status().await.is_some_and(|s| s.connected) {
            connected += 1;
        }
        if h.last_login_sent() != *sent {
            relogins += 1;
        }
    }
    let times = back_times(tally.mark.load(Ordering::Acquire), &tally.back_at);
    format!(
        "status connected={connected} relogins={relogins} kicks={} not_ready={} errors={} rss={} times={}",
        tally.kicks.load(Ordering::Acquire),
        tally.not_ready.load(Ordering::Acquire),
        tally.errors.load(Ordering::Acquire),
        rss_of(std::process::id()).unwrap_or(0),
        times
    )
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// The `times=` field of a `status` answer: ms after `mark` each session that is back came
/// back, one decimal, comma-separated (the lean generator answers the same).
pub(super) fn back_times(mark: u64, back_at: &[AtomicU64]) -> String {
    let times: Vec<String> = back_at
        .iter()
        .filter_map(|b| match b.load(Ordering::Acquire) {
            0 => None,
            at => Some(format!("{:.1}", at.saturating_sub(mark) as f64 / 1e6)),
        })
        .collect();
    times.join(",")
}
