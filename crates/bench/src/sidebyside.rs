//! `tim-bench sidebyside`: timd's login rate and CPU per login against a bare axum WebSocket
//! server ([`crate::bare`]) that only answers the frames a login needs, both as child
//! processes on loopback, measured in interleaved rounds so that the machine's noise falls on
//! both alike. What timd spends above the bare server is its own work (UserSig check, store,
//! policy, ticket, metrics, logs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::logins::{destroy_all, log_in_all};
use crate::perf_categories;
use crate::sys::{cpu_of, free_port, listen_overflows};
use crate::timd::{Common, Timd};

#[derive(Args)]
pub struct SideBySideArgs {
    #[command(flatten)]
    common: Common,
    /// Users logging in per measurement (one Web session each), held until it ends.
    #[arg(long, default_value_t = 10_000)]
    logins: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Rounds, after a warm-up run on each server; each measures timd first-time, bare, timd
    /// returning, bare (every other round starting with bare).
    #[arg(long, default_value_t = 3)]
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
    TimdReturning,
    Bare,
}

impl Kind {
    fn slug(self) -> &'static str {
        match self {
            Kind::TimdFirst => "timd-first",
            Kind::TimdReturning => "timd-returning",
            Kind::Bare => "bare",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::TimdFirst => "timd first-time",
            Kind::TimdReturning => "timd returning",
            Kind::Bare => "bare axum",
        }
    }
}

/// One measurement: logins/s and server CPU µs per login.
struct Sample {
    kind: Kind,
    rate: f64,
    cpu_us: Option<f64>,
    /// The run's `perf record` file (with `--perf`).
    perf_file: Option<PathBuf>,
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
async fn measure(
    kind: Kind,
    url: &str,
    pid: u32,
    prefix: &str,
    args: &SideBySideArgs,
    round: Option<usize>,
) -> Sample {
    let n = args.logins;
    settle(pid).await;
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
    let cpu0 = cpu_of(pid);
    let t0 = Instant::now();
    let instances = round.map_or(0, |r| r + 1);
    let clients = log_in_all(&[url.to_owned()], prefix, n, args.concurrency, instances).await;
    let wall = t0.elapsed();
    let cpu = cpu_of(pid).zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    if let Some((p, _)) = perf.as_mut() {
        stop_perf(p);
    }
    let sample = Sample {
        kind,
        rate: n as f64 / wall.as_secs_f64(),
        cpu_us: cpu.map(|c| c.as_secs_f64() * 1e6 / n as f64),
        perf_file: perf.map(|(_, file)| file),
    };
    let name = match (round, kind) {
        (Some(_), kind) => kind.name(),
        (None, Kind::Bare) => "bare axum",
        (None, _) => "timd",
    };
    println!(
        "  {}: {name:<16} {n} logins in {:.2} s: {:>6.0} logins/s, server CPU {}",
        round.map_or("warm-up".into(), |r| format!("round {}", r + 1)),
        wall.as_secs_f64(),
        sample.rate,
        sample
            .cpu_us
            .map_or("?".into(), |c| format!("{c:.1} µs per login"))
    );
    destroy_all(clients, args.concurrency).await;
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

/// Median logins/s and median CPU µs per login of one kind.
fn medians(samples: &[Sample], kind: Kind) -> (Option<f64>, Option<f64>) {
    let of = |f: fn(&Sample) -> Option<f64>| {
        median(
            samples
                .iter()
                .filter(|s| s.kind == kind)
                .filter_map(f)
                .collect(),
        )
    };
    (of(|s| Some(s.rate)), of(|s| s.cpu_us))
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
         flight, {} rounds",
        timd.binary.display(),
        timd.addr,
        bare.addr,
        args.logins,
        args.concurrency,
        args.rounds
    );
    if let Some(dir) = &args.perf {
        std::fs::create_dir_all(dir).expect("perf output directory");
    }
    // Not counted: a fresh process first grows its heap, the store its file and caches.
    measure(Kind::TimdFirst, &timd_url, timd_pid, "warmu", &args, None).await;
    measure(Kind::Bare, &bare_url, bare_pid, "warmu", &args, None).await;
    let overflows0 = listen_overflows();
    let mut samples = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Kind::TimdFirst, Kind::Bare, Kind::TimdReturning, Kind::Bare]
        } else {
            [Kind::Bare, Kind::TimdFirst, Kind::Bare, Kind::TimdReturning]
        };
        for kind in order {
            // First-time accounts are new to timd's store each round; returning ones are
            // the same users again.
            let prefix = format!("sbs{round}u");
            let sample = match kind {
                Kind::Bare => measure(kind, &bare_url, bare_pid, &prefix, &args, Some(round)).await,
                _ => measure(kind, &timd_url, timd_pid, &prefix, &args, Some(round)).await,
            };
            samples.push(sample);
        }
    }
    let (bare_rate, bare_cpu) = medians(&samples, Kind::Bare);
    println!("  medians:");
    for kind in [Kind::TimdFirst, Kind::TimdReturning, Kind::Bare] {
        let (rate, cpu) = medians(&samples, kind);
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
            "    {:<16} {:>6.0} logins/s, server CPU {}{extra}",
            kind.name(),
            rate.unwrap_or(f64::NAN),
            cpu.map_or("?".into(), |c| format!("{c:.1} µs per login")),
        );
    }
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
    let kinds = [Kind::TimdFirst, Kind::TimdReturning, Kind::Bare];
    let per_login: Vec<Option<Vec<f64>>> = kinds
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
    let [Some(first), Some(returning), Some(bare)] = &per_login[..] else {
        println!("  profile: perf script could not read the recorded files");
        return;
    };
    println!(
        "  {:<42} {:>10} {:>10} {:>6}   timd above bare",
        "profile, µs per login (perf samples)", "first-time", "returning", "bare"
    );
    let row = |name: &str, f: f64, r: f64, b: f64| {
        println!(
            "    {name:<40} {f:>10.1} {r:>10.1} {b:>6.1}   {:+.1} / {:+.1}",
            f - b,
            r - b
        )
    };
    for (i, name) in perf_categories::names().enumerate() {
        row(name, first[i], returning[i], bare[i]);
    }
    let sum = |v: &Vec<f64>| v.iter().sum::<f64>();
    row("total", sum(first), sum(returning), sum(bare));
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
}
