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
//!
//! `scripts/bench.sh` builds both binaries (profile `server`) and runs them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use tim_client::{Client, Config, Event, NetState, OpOk, Platform};
use tokio::sync::Semaphore;

const APP: u32 = 1_400_000_077;
const KEY: &str = "tim-bench-key";

#[derive(Parser)]
#[command(name = "tim-bench", about = "timd benchmarks with native clients")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Kick delivery latency: new login's frame sent -> KICKED_OUT in the old instance.
    Kick(KickArgs),
    /// Restart timd under N logged-in sessions (SIGTERM, then kill -9): time until all are
    /// back connected, spurious kicks, lost sessions.
    Restart(RestartArgs),
    /// Login throughput and timd CPU time per login (first-time, then returning accounts).
    Logins(LoginsArgs),
}

#[derive(Args)]
struct LoginsArgs {
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

#[derive(Args, Clone)]
struct Common {
    /// The timd binary (default: `timd` beside this executable).
    #[arg(long)]
    timd: Option<PathBuf>,
    /// Keep timd's log (stderr) here instead of a temporary directory.
    #[arg(long)]
    log: Option<PathBuf>,
}

#[derive(Args)]
struct KickArgs {
    #[command(flatten)]
    common: Common,
    /// Kicks to measure (after the warm-up).
    #[arg(long, default_value_t = 1000)]
    kicks: usize,
    /// Kicks before measuring (connections, caches, the account row).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Pairs of instances kicking each other at the same time (1: one kick at a time).
    #[arg(long, default_value_t = 1)]
    pairs: usize,
}

#[derive(Args)]
struct RestartArgs {
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
enum Mode {
    /// Graceful: SIGTERM (timd closes every socket with 1012 and exits).
    Term,
    /// Crash: SIGKILL.
    Kill,
}

fn main() {
    let cli = Cli::parse();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = match cli.command {
        Bench::Kick(args) => runtime.block_on(kick(args)),
        Bench::Restart(args) => runtime.block_on(restart(args)),
        Bench::Logins(args) => runtime.block_on(logins(args)),
    };
    // Thousands of client tasks: do not wait for them to wind down.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if !ok {
        std::process::exit(1);
    }
}

/// Sockets are files: raise the soft limit to the hard one (timd inherits it).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
fn fd_limit() -> u64 {
    // SAFETY: as above.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur as u64
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sig(user: &str) -> String {
    tim_usersig::generate(APP, KEY, user, now_secs(), 86_400)
}

/// A `timd serve` child process on a fixed loopback port.
struct Timd {
    binary: PathBuf,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Timd {
    fn new(common: &Common, dir: &Path, extra: &[&str]) -> Timd {
        let binary = common.timd.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .expect("current exe")
                .with_file_name("timd")
        });
        assert!(
            binary.is_file(),
            "{} not found: build it (cargo build --profile server -p timd-bin) or pass --timd",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Timd {
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir: dir.join("data"),
            log: common.log.clone().unwrap_or_else(|| dir.join("timd.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Starts timd and waits until it accepts connections; returns when it did.
    async fn start(&mut self) -> Instant {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("timd log file");
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", &self.addr.to_string()])
            .args(["--sdkappid", &APP.to_string(), "--key", KEY])
            // One loopback client address opens 10,000 sessions: no per-address limits.
            .args([
                "--max-connections-per-addr",
                "0",
                "--connection-rate-per-addr",
                "0",
            ])
            .args(["--login-rate-per-addr", "0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn timd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Instant::now();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("timd exited at start: {status}; see {}", self.log.display());
            }
            assert!(Instant::now() < deadline, "timd did not start listening");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The child's resident memory (VmRSS), bytes, on Linux.
    fn rss(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// CPU time the child has used so far (user + system, all threads), on Linux.
    fn cpu(&self) -> Option<Duration> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at its closing ')'.
        let rest = stat.rsplit_once(')')?.1;
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        // SAFETY: sysconf only reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
    }

    /// Sends `signal` and waits for the process to exit; returns when it had.
    async fn stop(&mut self, signal: libc::c_int) -> Instant {
        let mut child = self.child.take().expect("timd running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait task")
            .expect("wait timd");
        Instant::now()
    }
}

impl Drop for Timd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `(p50, p90, p99, max, mean)` of `samples`, in milliseconds.
fn summary(samples: &mut [Duration]) -> (f64, f64, f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        ms(samples[i])
    };
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    (
        at(0.50),
        at(0.90),
        at(0.99),
        ms(samples[samples.len() - 1]),
        mean,
    )
}

fn print_summary(what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("{what}: no samples");
        return;
    }
    let (p50, p90, p99, max, mean) = summary(samples);
    println!(
        "{what}: n={} p50={p50:.3} ms p90={p90:.3} ms p99={p99:.3} ms max={max:.3} ms mean={mean:.3} ms",
        samples.len()
    );
}

async fn kick(args: KickArgs) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut timd = Timd::new(
        &args.common,
        dir.path(),
        &["--web-instances", "1", "--login-policy", "dual"],
    );
    timd.start().await;
    let url = timd.url();
    let pairs = args.pairs.max(1);
    let per_pair = (args.kicks + args.warmup).div_ceil(pairs);
    let warmup_per_pair = args.warmup.div_ceil(pairs);
    println!(
        "kick: timd {} ({}), {pairs} pair(s) of Web instances with a limit of 1, {} kicks + {} warm-up",
        timd.binary.display(),
        timd.addr,
        args.kicks,
        args.warmup
    );
    let tasks: Vec<_> = (0..pairs)
        .map(|p| {
            let url = url.clone();
            tokio::spawn(kick_pair(url, p, per_pair, warmup_per_pair))
        })
        .collect();
    let mut kicks = Vec::new();
    let mut logins = Vec::new();
    let mut wrong = 0;
    for t in tasks {
        let (k, l, w) = t.await.expect("pair task");
        kicks.extend(k);
        logins.extend(l);
        wrong += w;
    }
    print_summary(
        "kick delivery (login frame sent -> KICKED_OUT in the old instance)",
        &mut kicks,
    );
    print_summary(
        "login round trip (login frame sent -> login resolved)",
        &mut logins,
    );
    let p99 = summary(&mut kicks).2;
    println!(
        "kick p99 {p99:.3} ms: {} (target < 5 ms); unexpected events: {wrong}",
        if p99 < 5.0 { "OK" } else { "OVER TARGET" }
    );
    wrong == 0
}

/// Two Web instances of one user, limit 1, taking turns: each login kicks the other.
/// Returns the kick latencies, the login round trips and the count of unexpected events.
async fn kick_pair(
    url: String,
    pair: usize,
    rounds: usize,
    warmup: usize,
) -> (Vec<Duration>, Vec<Duration>, usize) {
    let user = format!("kick-{pair}");
    let usersig = sig(&user);
    let mut a = Client::new(&url, Config::new(APP, Platform::Web, format!("{user}-a")));
    let mut b = Client::new(&url, Config::new(APP, Platform::Web, format!("{user}-b")));
    a.login(&user, &usersig).await.expect("first login");
    while a.try_next_event().is_some() {}
    let (mut kicks, mut logins, mut wrong) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        let (new, old) = if round % 2 == 0 {
            (&mut b, &mut a)
        } else {
            (&mut a, &mut b)
        };
        let result = new.login(&user, &usersig).await;
        let resolved = Instant::now();
        if result != Ok(OpOk::Login { repeat: false }) {
            eprintln!("login {round}: {result:?}");
            wrong += 1;
            continue;
        }
        let sent = new.last_login_sent().expect("a login frame went out");
        let kicked = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some((at, event)) = old.next_event_at().await {
                if matches!(event, Event::Kicked(_)) {
                    return Some(at);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        while new.try_next_event().is_some() {}
        let Some(at) = kicked else {
            eprintln!("round {round}: no KICKED_OUT within 5 s");
            wrong += 1;
            continue;
        };
        if round >= warmup {
            kicks.push(at.saturating_duration_since(sent));
            logins.push(resolved.saturating_duration_since(sent));
        }
    }
    (kicks, logins, wrong)
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

async fn restart(args: RestartArgs) -> bool {
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
        let overflows0 = listen_overflows();
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
        if let Some((a, b)) = overflows0.zip(listen_overflows()) {
            println!(
                "    connects dropped on a full accept queue (TcpExtListenOverflows, whole \
                 network namespace): {}",
                b.saturating_sub(a)
            );
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

/// Logs `n` users in, `concurrency` at a time; returns the clients (held connected).
async fn log_in_all(url: &str, n: usize, concurrency: usize, round: usize) -> Vec<Client> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (url, gate) = (url.to_owned(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                let user = format!("l{i}");
                let c = Client::new(
                    &url,
                    Config::new(APP, Platform::Web, format!("d{round}-{i}")),
                );
                if let Err(e) = c.login(&user, &sig(&user)).await {
                    panic!("login {user}: {e:?}");
                }
                c
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for t in tasks {
        clients.push(t.await.expect("login task"));
    }
    clients
}

async fn logins(args: LoginsArgs) -> bool {
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
        let clients = log_in_all(&url, n, args.concurrency, round).await;
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
        let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
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
    if let Some(p) = perf.as_mut() {
        // SAFETY: kill(2) on our own child's pid; perf writes its file on SIGINT.
        unsafe {
            libc::kill(p.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = p.wait();
    }
    true
}

/// The kernel's count of connects dropped because a listener's accept queue was full
/// (`TcpExtListenOverflows` in /proc/net/netstat): each such client waits for a SYN retry.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}
