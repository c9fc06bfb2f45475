//! `tim-bench sidebyside`: timd's login rate and CPU per login against a bare axum WebSocket
//! server ([`crate::bare`]) that only answers the frames a login needs, both as child
//! processes on loopback, measured in interleaved rounds so that the machine's noise falls on
//! both alike. What timd spends above the bare server is its own work (UserSig check, store,
//! policy, ticket, metrics, logs).
//!
//! The logins come from `--clients` client processes (`tim-bench sidebyside-client`, one
//! tokio thread each, UserSigs signed before the clock starts), and every run prints how busy
//! they and the machine were, so that a rate bound by the client is seen as such. Three
//! kinds of timd login: a first-time account; a returning one presenting the UserSig it
//! logged in with before (an app that keeps its users' UserSigs until they expire); and a
//! returning one with a newly issued UserSig (an app that signs one per login).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::logins::{destroy_all, log_in_signed, Signed};
use crate::perf_categories;
use crate::sys::{
    cpu_of, cpu_split_of, free_port, listen_overflows, minor_faults_of, now_secs, APP, KEY,
};
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct SideBySideArgs {
    #[command(flatten)]
    common: Common,
    /// Users logging in per measurement (one Web session each), held until it ends.
    #[arg(long, default_value_t = 10_000)]
    logins: usize,
    /// Logins in flight at once (over all client processes).
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Client processes the logins are spread over (one tokio thread each).
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Rounds, after a warm-up run on each server; each measures timd first-time, returning
    /// with the same UserSig and returning with a new one, each followed by bare (every
    /// other round starting with bare).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Record the server of every counted run with `perf record --call-graph dwarf` during
    /// its logins only, into DIR/NN-r{round}-{timd-first|timd-returning|bare}.data (the
    /// figures then include perf's overhead), and print where the CPU went by category.
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
}

/// The bare server as a child process (`tim-bench bare-server`).
struct Bare {
    addr: SocketAddr,
    child: Child,
}

impl Bare {
    async fn start() -> Bare {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(std::env::current_exe().expect("current exe"))
            .args(["bare-server", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn tim-bench bare-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "bare server did not start");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Bare { addr, child }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    TimdFirst,
    /// Returning, presenting the UserSig of its first login.
    TimdReturning,
    /// Returning, with a UserSig issued since.
    TimdNewSig,
    Bare,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::TimdFirst,
        Kind::TimdReturning,
        Kind::TimdNewSig,
        Kind::Bare,
    ];

    fn slug(self) -> &'static str {
        match self {
            Kind::TimdFirst => "timd-first",
            Kind::TimdReturning => "timd-returning",
            Kind::TimdNewSig => "timd-newsig",
            Kind::Bare => "bare",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::TimdFirst => "timd first-time",
            Kind::TimdReturning => "timd returning",
            Kind::TimdNewSig => "timd ret. new sig",
            Kind::Bare => "bare axum",
        }
    }
}

/// One measurement: logins/s and server CPU µs per login.
struct Sample {
    kind: Kind,
    rate: f64,
    cpu_us: Option<f64>,
    /// Minor page faults per login: memory the server touched afresh (first use, or again
    /// after its allocator gave it back to the kernel), each one zeroed by the kernel.
    faults: Option<f64>,
    /// Cores the client processes kept busy, and the machine's idle share, over the logins.
    client_cores: Option<f64>,
    idle: Option<f64>,
    /// The run's `perf record` file (with `--perf`).
    perf_file: Option<PathBuf>,
}

/// The machine's busy and total CPU time so far (/proc/stat, clock ticks).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let t: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = t.iter().take(8).sum();
    let idle = t.get(3)? + t.get(4)?;
    Some((total - idle, total))
}

/// The client processes of one run, each logging in a share of the users.
struct Clients {
    procs: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

impl Clients {
    /// Starts `args.clients` processes for `logins` (users `{prefix}0..`), signing every
    /// UserSig (issued at `issued`) before they report ready.
    fn start(url: &str, prefix: &str, issued: u64, args: &SideBySideArgs, round: usize) -> Clients {
        let k = args.clients.max(1);
        let exe = std::env::current_exe().expect("current exe");
        let procs = (0..k)
            .map(|p| {
                let (first, end) = (args.logins * p / k, args.logins * (p + 1) / k);
                let mut child = Command::new(&exe)
                    .arg("sidebyside-client")
                    .args(["--url", url, "--prefix", prefix])
                    .args(["--first", &first.to_string()])
                    .args(["--count", &(end - first).to_string()])
                    .args(["--concurrency", &(args.concurrency / k).max(1).to_string()])
                    .args(["--round", &round.to_string()])
                    .args(["--issued", &issued.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn tim-bench sidebyside-client");
                let stdin = child.stdin.take().expect("stdin");
                let stdout = BufReader::new(child.stdout.take().expect("stdout"));
                (child, stdin, stdout)
            })
            .collect();
        let mut clients = Clients { procs };
        clients.expect_all("ready");
        clients
    }

    fn say(&mut self, line: &str) {
        for (_, stdin, _) in &mut self.procs {
            writeln!(stdin, "{line}").expect("client process stdin");
        }
    }

    fn expect_all(&mut self, want: &str) {
        for (_, _, stdout) in &mut self.procs {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("client process stdout");
            assert_eq!(line.trim(), want, "client process answered");
        }
    }

    fn cpu(&self) -> Option<Duration> {
        self.procs.iter().map(|(c, _, _)| cpu_of(c.id())).sum()
    }

    fn finish(mut self) {
        self.say("destroy");
        self.expect_all("destroyed");
        for (child, _, _) in &mut self.procs {
            let _ = child.wait();
        }
    }
}

#[derive(Args)]
pub struct ClientArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    concurrency: usize,
    #[arg(long)]
    round: usize,
    /// The UserSigs' issue time, unix seconds.
    #[arg(long)]
    issued: u64,
}

/// One client process (`tim-bench sidebyside-client`): signs its users' UserSigs, says
/// `ready`; on `go` logs them all in and says `done`; on `destroy` logs them out and says
/// `destroyed`.
pub async fn client(args: ClientArgs) -> bool {
    let logins: Vec<Signed> = (args.first..args.first + args.count)
        .map(|i| {
            let user = format!("{}{i}", args.prefix);
            let usersig = tim_usersig::generate(APP, KEY, &user, args.issued, 86_400);
            Signed {
                app: APP,
                user,
                usersig,
            }
        })
        .collect();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
    let mut next = async || lines.next_line().await.ok().flatten().unwrap_or_default();
    println!("ready");
    if next().await != "go" {
        return false;
    }
    let clients = log_in_signed(
        std::slice::from_ref(&args.url),
        logins,
        args.concurrency,
        args.round,
        args.first,
    )
    .await;
    println!("done");
    if next().await != "destroy" {
        return false;
    }
    destroy_all(clients, args.concurrency).await;
    println!("destroyed");
    true
}

/// Waits until process `pid` has used no CPU for 200 ms (at most 5 s): the previous run's
/// logouts and closes must not be counted in the next one.
async fn settle(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = cpu_of(pid);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cpu_of(pid);
        if now == last {
            return;
        }
        last = now;
    }
}

/// `round` None: the warm-up.
#[allow(clippy::too_many_arguments)]
async fn measure(
    kind: Kind,
    url: &str,
    pid: u32,
    prefix: &str,
    issued: u64,
    args: &SideBySideArgs,
    round: Option<usize>,
) -> Sample {
    let n = args.logins;
    settle(pid).await;
    let instances = round.map_or(0, |r| r + 1);
    let clients = Clients::start(url, prefix, issued, args, instances);
    let mut perf = match (&args.perf, round) {
        (Some(dir), Some(r)) => {
            static RUNS: AtomicUsize = AtomicUsize::new(1);
            let at = RUNS.fetch_add(1, Ordering::Relaxed);
            let file = dir.join(format!("{at:02}-r{}-{}.data", r + 1, kind.slug()));
            let p = spawn_perf(pid, file.clone());
            // perf needs a moment to attach; its start-up is not counted.
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((p, file))
        }
        _ => None,
    };
    let mut clients = clients;
    let (cpu0, client0, machine0) = (cpu_split_of(pid), clients.cpu(), machine_ticks());
    let faults0 = minor_faults_of(pid);
    let t0 = Instant::now();
    clients.say("go");
    clients.expect_all("done");
    let wall = t0.elapsed();
    let split = cpu_split_of(pid)
        .zip(cpu0)
        .map(|((u1, s1), (u0, s0))| (u1.saturating_sub(u0), s1.saturating_sub(s0)));
    let cpu = split.map(|(user, system)| user + system);
    let faults = minor_faults_of(pid)
        .zip(faults0)
        .map(|(b, a)| b.saturating_sub(a));
    let client_cpu = clients.cpu().zip(client0).map(|(b, a)| b.saturating_sub(a));
    let idle = machine_ticks()
        .zip(machine0)
        .map(|((b1, t1), (b0, t0))| 1.0 - (b1 - b0) as f64 / (t1 - t0).max(1) as f64);
    if let Some((p, _)) = perf.as_mut() {
        stop_perf(p);
    }
    let sample = Sample {
        kind,
        rate: n as f64 / wall.as_secs_f64(),
        cpu_us: cpu.map(|c| c.as_secs_f64() * 1e6 / n as f64),
        faults: faults.map(|f| f as f64 / n as f64),
        client_cores: client_cpu.map(|c| c.as_secs_f64() / wall.as_secs_f64()),
        idle,
        perf_file: perf.map(|(_, file)| file),
    };
    let name = match (round, kind) {
        (Some(_), kind) => kind.name(),
        (None, Kind::Bare) => "bare axum",
        (None, _) => "timd",
    };
    let per_login = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "  {}: {name:<17} {n} logins in {:.2} s: {:>6.0} logins/s, server CPU {}, {} page faults per login; clients {}, machine idle {}",
        round.map_or("warm-up".into(), |r| format!("round {}", r + 1)),
        wall.as_secs_f64(),
        sample.rate,
        split.map_or("?".into(), |(user, system)| format!(
            "{:.1} µs per login ({:.1} user, {:.1} system)",
            per_login(user + system),
            per_login(user),
            per_login(system)
        )),
        sample.faults.map_or("?".into(), |f| format!("{f:.2}")),
        sample.client_cores.map_or("?".into(), |c| format!(
            "{c:.2} of {} cores{}",
            args.clients,
            if c >= 0.9 * args.clients as f64 { " (saturated)" } else { "" }
        )),
        sample.idle.map_or("?".into(), |i| format!("{:.0}%", i * 100.0)),
    );
    clients.finish();
    sample
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

/// Median logins/s, CPU µs per login and page faults per login of one kind.
fn medians(samples: &[Sample], kind: Kind) -> (Option<f64>, Option<f64>, Option<f64>) {
    let of = |f: fn(&Sample) -> Option<f64>| {
        median(
            samples
                .iter()
                .filter(|s| s.kind == kind)
                .filter_map(f)
                .collect(),
        )
    };
    (of(|s| Some(s.rate)), of(|s| s.cpu_us), of(|s| s.faults))
}

/// Each run of `kind`'s CPU per login over that of the bare run beside it (each round runs
/// its six in pairs: a timd run and a bare one, in either order). The host's speed drifts
/// between runs by more than the gap measured; a pair's two runs share most of it.
fn paired_cpu_ratios(samples: &[Sample], kind: Kind) -> Vec<f64> {
    samples
        .chunks_exact(2)
        .filter_map(|pair| {
            let timd = pair.iter().find(|s| s.kind == kind)?;
            let bare = pair.iter().find(|s| s.kind == Kind::Bare)?;
            Some(timd.cpu_us? / bare.cpu_us?)
        })
        .collect()
}

/// `perf record` of process `pid`, with DWARF call chains (release builds keep no frame
/// pointers) at 999 Hz, so that `perf report --children` can sum costs by caller.
fn spawn_perf(pid: u32, file: PathBuf) -> Child {
    Command::new("perf")
        .args(["record", "--call-graph", "dwarf,16384", "-F", "999"])
        .args(["-p", &pid.to_string(), "-o"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn perf (Debian: linux-perf)")
}

fn stop_perf(p: &mut Child) {
    // SAFETY: kill(2) on our own child's pid; perf writes its file on SIGINT.
    unsafe {
        libc::kill(p.id() as libc::pid_t, libc::SIGINT);
    }
    let _ = p.wait();
}

pub async fn run(args: SideBySideArgs) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut timd = Timd::new(&args.common, dir.path(), &["--web-instances", "1"]);
    timd.start().await;
    let bare = Bare::start().await;
    let (timd_url, bare_url) = (timd.url(), format!("ws://{}", bare.addr));
    let timd_pid = timd.pid().expect("timd running");
    let bare_pid = bare.child.id();
    println!(
        "sidebyside: timd {} ({}) vs bare axum server ({}), {} Web users per run, {} in \
         flight from {} client processes, {} rounds",
        timd.binary.display(),
        timd.addr,
        bare.addr,
        args.logins,
        args.concurrency,
        args.clients,
        args.rounds
    );
    // Every UserSig of the run is issued at this second, so a returning user presents
    // the one it logged in with; `TimdNewSig` presents one issued a second earlier.
    let issued = now_secs();
    if let Some(dir) = &args.perf {
        std::fs::create_dir_all(dir).expect("perf output directory");
    }
    // Not counted: a fresh process first grows its heap, the store its file and caches.
    measure(
        Kind::TimdFirst,
        &timd_url,
        timd_pid,
        "warmu",
        issued,
        &args,
        None,
    )
    .await;
    measure(
        Kind::Bare,
        &bare_url,
        bare_pid,
        "warmu",
        issued,
        &args,
        None,
    )
    .await;
    let overflows0 = listen_overflows();
    let mut samples = Vec::new();
    for round in 0..args.rounds {
        use Kind::*;
        let order = if round % 2 == 0 {
            [TimdFirst, Bare, TimdReturning, Bare, TimdNewSig, Bare]
        } else {
            [Bare, TimdFirst, Bare, TimdReturning, Bare, TimdNewSig]
        };
        for kind in order {
            // First-time accounts are new to timd's store each round; returning ones are
            // the same users again.
            let prefix = format!("sbs{round}u");
            let (url, pid) = match kind {
                Bare => (&bare_url, bare_pid),
                _ => (&timd_url, timd_pid),
            };
            let issued = if kind == TimdNewSig {
                issued - 1
            } else {
                issued
            };
            let sample = measure(kind, url, pid, &prefix, issued, &args, Some(round)).await;
            samples.push(sample);
        }
    }
    let (bare_rate, bare_cpu, _) = medians(&samples, Kind::Bare);
    println!("  medians:");
    for kind in Kind::ALL {
        let (rate, cpu, faults) = medians(&samples, kind);
        let ratio = |a: Option<f64>, b: Option<f64>| {
            a.zip(b)
                .map_or("?".into(), |(a, b)| format!("{:.2}×", a / b))
        };
        let extra = match (kind, cpu, bare_cpu) {
            (Kind::Bare, _, _) => String::new(),
            (_, Some(c), Some(b)) => format!(
                "; vs bare: {} the rate, {} the CPU ({:+.1} µs per login)",
                ratio(rate, bare_rate),
                ratio(cpu, bare_cpu),
                c - b
            ),
            _ => format!("; vs bare: {} the rate", ratio(rate, bare_rate)),
        };
        println!(
            "    {:<16} {:>6.0} logins/s, server CPU {}, {} page faults per login{extra}",
            kind.name(),
            rate.unwrap_or(f64::NAN),
            cpu.map_or("?".into(), |c| format!("{c:.1} µs per login")),
            faults.map_or("?".into(), |f| format!("{f:.2}")),
        );
    }
    println!("  CPU per login vs the bare run beside it (median of the pairs, range):");
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Bare) {
        let ratios = paired_cpu_ratios(&samples, kind);
        let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
        match median(ratios.clone()) {
            Some(m) => println!(
                "    {:<16} {m:.2}× ({lo:.2}–{hi:.2}×, {} pairs)",
                kind.name(),
                ratios.len()
            ),
            None => println!("    {:<16} ?", kind.name()),
        }
    }
    let busiest = samples
        .iter()
        .filter_map(|s| s.client_cores)
        .fold(0.0, f64::max);
    let least_idle = samples.iter().filter_map(|s| s.idle).fold(1.0, f64::min);
    println!(
        "  clients: at most {busiest:.2} cores busy of the {} client processes' {} ({}); \
         machine idle at least {:.0}% of the time{}",
        args.clients,
        args.clients,
        if busiest >= 0.9 * args.clients as f64 {
            "saturated in some run: the rate there is the client's"
        } else {
            "never saturated"
        },
        least_idle * 100.0,
        if least_idle < 0.05 {
            " (the machine was saturated: logins/s says how the cores were shared)"
        } else {
            ""
        }
    );
    if let Some((a, b)) = overflows0.zip(listen_overflows()) {
        println!(
            "  connects dropped on a full accept queue (TcpExtListenOverflows): {}",
            b.saturating_sub(a)
        );
    }
    if let Some(out) = &args.perf {
        print_profile(&samples, args.logins);
        println!(
            "  perf data: {}/NN-r*-*.data (perf report -i FILE --no-children --sort symbol; \
             --children)",
            out.display()
        );
    }
    true
}

/// The recorded runs' CPU by category (`perf_categories.rs`), µs per login, per kind, and
/// timd's above the bare server's.
fn print_profile(samples: &[Sample], logins: usize) {
    let per_login: Vec<Option<Vec<f64>>> = Kind::ALL
        .iter()
        .map(|&kind| {
            let files: Vec<&PathBuf> = samples
                .iter()
                .filter(|s| s.kind == kind)
                .filter_map(|s| s.perf_file.as_ref())
                .collect();
            let mut total: Option<Vec<u64>> = None;
            for file in &files {
                let ns = perf_categories::sum(file)?;
                let t = total.get_or_insert_with(|| vec![0; ns.len()]);
                t.iter_mut().zip(ns).for_each(|(t, n)| *t += n);
            }
            let runs = (files.len() * logins) as f64;
            total.map(|t| t.iter().map(|&ns| ns as f64 / 1e3 / runs).collect())
        })
        .collect();
    let [Some(first), Some(returning), Some(newsig), Some(bare)] = &per_login[..] else {
        println!("  profile: perf script could not read the recorded files");
        return;
    };
    println!(
        "  {:<42} {:>10} {:>10} {:>8} {:>6}   timd above bare",
        "profile, µs per login (perf samples)", "first-time", "returning", "new sig", "bare"
    );
    let row = |name: &str, f: f64, r: f64, n: f64, b: f64| {
        println!(
            "    {name:<40} {f:>10.1} {r:>10.1} {n:>8.1} {b:>6.1}   {:+.1} / {:+.1} / {:+.1}",
            f - b,
            r - b,
            n - b
        )
    };
    for (i, name) in perf_categories::names().enumerate() {
        row(name, first[i], returning[i], newsig[i], bare[i]);
    }
    let sum = |v: &Vec<f64>| v.iter().sum::<f64>();
    row("total", sum(first), sum(returning), sum(newsig), sum(bare));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn each_timd_run_is_paired_with_the_bare_run_beside_it() {
        let run = |kind, cpu| Sample {
            kind,
            rate: 1.0,
            cpu_us: Some(cpu),
            faults: None,
            client_cores: None,
            idle: None,
            perf_file: None,
        };
        use Kind::*;
        // Round 1 runs timd first in each pair, round 2 bare first.
        let samples = [
            run(TimdFirst, 60.0),
            run(Bare, 50.0),
            run(TimdReturning, 55.0),
            run(Bare, 50.0),
            run(TimdNewSig, 52.0),
            run(Bare, 40.0),
            run(Bare, 100.0),
            run(TimdFirst, 110.0),
            run(Bare, 100.0),
            run(TimdReturning, 120.0),
            run(Bare, 100.0),
            run(TimdNewSig, 104.0),
        ];
        assert_eq!(paired_cpu_ratios(&samples, TimdFirst), [1.2, 1.1]);
        assert_eq!(paired_cpu_ratios(&samples, TimdReturning), [1.1, 1.2]);
        assert_eq!(paired_cpu_ratios(&samples, TimdNewSig), [1.3, 1.04]);
    }
}
