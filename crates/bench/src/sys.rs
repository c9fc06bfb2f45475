//! What the benchmarks ask of the operating system: descriptor limits, per-process memory
//! and CPU from /proc, the kernel's accept-queue drop counter, and the test app's UserSigs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const APP: u32 = 1_400_000_077;
/// [`APP`] as command lines spell it.
pub const APP_STR: &str = "1400000077";
pub const KEY: &str = "tim-bench-key";

/// Sockets are files: raise the soft limit to the hard one (timd inherits it).
pub fn raise_fd_limit() {
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
pub fn fd_limit() -> u64 {
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

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A day-long UserSig for `user` of the bench app.
pub fn sig(user: &str) -> String {
    tim_usersig::generate(APP, KEY, user, now_secs(), 86_400)
}

/// Resident memory (VmRSS) of process `pid`, bytes, on Linux.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time process `pid` has used so far (user + system, all threads), on Linux.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    cpu_split_of(pid).map(|(user, system)| user + system)
}

/// [`cpu_of`] as (user, system) time.
pub fn cpu_split_of(pid: u32) -> Option<(Duration, Duration)> {
    let stat = stat_fields(pid)?;
    let utime = stat_field(&stat, 11)?;
    let stime = stat_field(&stat, 12)?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let time = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / hz);
    Some((time(utime), time(stime)))
}

/// Minor page faults process `pid` has taken so far (all threads), on Linux: memory it touched
/// for the first time, or again after giving it back to the kernel.
pub fn minor_faults_of(pid: u32) -> Option<u64> {
    stat_field(&stat_fields(pid)?, 7)
}

/// `/proc/PID/stat` from the field after the command name on (the name may hold spaces and
/// ends at the last ')'): field 0 is the state, 7 `minflt`, 11 `utime`, 12 `stime`.
fn stat_fields(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.to_owned())
}

fn stat_field(fields: &str, n: usize) -> Option<u64> {
    fields.split_whitespace().nth(n)?.parse().ok()
}

/// The kernel's count of connects dropped because a listener's accept queue was full
/// (`TcpExtListenOverflows` in /proc/net/netstat): each such client waits for a SYN retry.
pub fn listen_overflows() -> Option<u64> {
    Drops::read().map(|d| d.overflows)
}

/// The kernel's counters (whole network namespace, /proc/net/netstat) of connects that made
/// a client wait: on loopback a connect takes microseconds unless its SYN (or its final ACK)
/// was dropped, and then the client's SYN retry comes 1 s later (then 2 s, 4 s, ...).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Drops {
    /// `ListenOverflows`: a full accept queue (the listen backlog).
    pub overflows: u64,
    /// `ListenDrops`: every connect a listener dropped (overflows included).
    pub drops: u64,
    /// `TCPReqQFullDrop`: SYNs dropped on a full SYN queue (without SYN cookies).
    pub syn_queue: u64,
    /// `TCPSynRetrans`: SYNs and SYN-ACKs sent again. After a dropped SYN that is 1 s later;
    /// but a SYN that meets the server's TIME_WAIT socket of the same ports while nothing
    /// listens (a node restarting) is answered with an ACK, reset by the client and sent again
    /// ~10 ms later (then refused): seen in a packet capture of `restart`, all such.
    pub syn_retrans: u64,
}

impl Drops {
    pub fn read() -> Option<Drops> {
        Drops::parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }

    /// From the text of /proc/net/netstat: a `TcpExt:` line of names, then one of values.
    pub fn parse(text: &str) -> Option<Drops> {
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (lines.next()?, lines.next()?);
        let values: Vec<&str> = values.split_whitespace().collect();
        let get = |name: &str| -> Option<u64> {
            let at = names.split_whitespace().position(|n| n == name)?;
            values.get(at)?.parse().ok()
        };
        Some(Drops {
            overflows: get("ListenOverflows")?,
            drops: get("ListenDrops")?,
            syn_queue: get("TCPReqQFullDrop").unwrap_or(0),
            syn_retrans: get("TCPSynRetrans").unwrap_or(0),
        })
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn since(self, later: Drops) -> Drops {
        Drops {
            overflows: later.overflows.saturating_sub(self.overflows),
            drops: later.drops.saturating_sub(self.drops),
            syn_queue: later.syn_queue.saturating_sub(self.syn_queue),
            syn_retrans: later.syn_retrans.saturating_sub(self.syn_retrans),
        }
    }

    /// One line: the deltas, named as the kernel names them.
    pub fn describe(&self) -> String {
        format!(
            "SYNs dropped: TcpExtListenOverflows {}, TcpExtListenDrops {}, TcpExtTCPReqQFullDrop {}; \
             SYNs sent again: TcpExtTCPSynRetrans {} (whole network namespace)",
            self.overflows, self.drops, self.syn_queue, self.syn_retrans
        )
    }
}

/// How many of `samples` took `at_least` or more.
pub fn count_at_least(samples: &[Duration], at_least: Duration) -> usize {
    samples.iter().filter(|d| **d >= at_least).count()
}

/// A free TCP port on 127.0.0.1 (free when asked; taken by whoever binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_read_by_name_from_the_tcpext_lines() {
        let text =
            "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPReqQFullDrop TCPSynRetrans\n\
                    TcpExt: 9 3 5 1 7\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        let d = Drops::parse(text).expect("parsed");
        assert_eq!(
            d,
            Drops {
                overflows: 3,
                drops: 5,
                syn_queue: 1,
                syn_retrans: 7
            }
        );
        let later = Drops {
            overflows: 4,
            drops: 9,
            syn_queue: 1,
            syn_retrans: 17,
        };
        assert_eq!(
            d.since(later),
            Drops {
                overflows: 1,
                drops: 4,
                syn_queue: 0,
                syn_retrans: 10
            }
        );
        assert_eq!(Drops::parse("IpExt: a\nIpExt: 1\n"), None);
    }

    #[test]
    fn this_kernel_reports_the_counters() {
        // The benches print these; on Linux they must be there.
        if cfg!(target_os = "linux") {
            assert!(Drops::read().is_some());
        }
    }

    #[test]
    fn a_second_or_more_is_counted() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples = [ms(10), ms(999), ms(1000), ms(2500)];
        assert_eq!(count_at_least(&samples, ms(1000)), 2);
    }
}
