//! Where a server's CPU goes per login, from a `perf record --call-graph dwarf` file: every
//! sample is put in one category by its call chain and the categories are summed, in µs per
//! login. timd's own parts are looked for anywhere on the stack first (leaf first), then the
//! machinery the bare server shares (frame JSON, hyper/axum, tungstenite, tokio); malloc and
//! the kernel count for their caller. Every sample of the store's own thread is the store's.

use std::path::Path;
use std::process::Command;

/// timd's own parts, then (from [`SHARED`] on) the machinery both servers run.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "UserSig check (base64, zlib, JSON, HMAC)",
        &["tim_usersig::"],
    ),
    ("ticket (HMAC, JSON, base64)", &["timd::ticket::"]),
    (
        "store (its thread, SQLite)",
        &["timd-store-thread", "timd::store::", "rusqlite", "sqlite3"],
    ),
    ("registry + policy", &["timd::registry::", "timd::policy::"]),
    (
        "login checks (limiter, kicks)",
        &["timd::login::", "timd::kicks::"],
    ),
    ("limits", &["timd::limits::", "timd::token_bucket"]),
    ("metrics", &["prometheus_client", "timd::metrics::"]),
    (
        "tracing",
        &[
            "tracing_subscriber",
            "tracing_core",
            "tracing::span::",
            // The trace layer's own callbacks only: its response future wraps every
            // request's handler, whose work is counted where it belongs.
            "tower_http::trace::on_",
            "tower_http::trace::make_span",
        ],
    ),
    (
        "origins, client address",
        &["timd::origins::", "timd::client_addr::"],
    ),
    ("frame JSON (serde_json)", &["serde_json"]),
    ("gateway (timd::gateway)", &["timd::gateway::"]),
    (
        "hyper/axum (HTTP, upgrade)",
        &["hyper::", "hyper_util::", "axum::"],
    ),
    ("tungstenite", &["tungstenite"]),
    ("tokio (scheduler, I/O, timers)", &["tokio::"]),
    ("other", &[]),
];
const SHARED: usize = 9;
const OTHER: usize = CATEGORIES.len() - 1;

pub fn names() -> impl Iterator<Item = &'static str> {
    CATEGORIES.iter().map(|(name, _)| *name)
}

/// Nanoseconds of CPU per category in `file`; None if `perf script` cannot read it.
pub fn sum(file: &Path) -> Option<Vec<u64>> {
    let out = Command::new("perf")
        .args(["script", "-F", "comm,period,ip,sym", "-i"])
        .arg(file)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(sum_text(&String::from_utf8_lossy(&out.stdout)))
}

/// [`sum`] of `perf script -F comm,period,ip,sym` text: a `comm period` line, then one
/// `ip symbol` line per frame (leaf first), then a blank line.
fn sum_text(text: &str) -> Vec<u64> {
    let mut totals = vec![0u64; CATEGORIES.len()];
    let mut head: Option<(bool, u64)> = None;
    let mut frames: Vec<&str> = Vec::new();
    let mut flush = |head: &mut Option<(bool, u64)>, frames: &mut Vec<&str>| {
        if let Some((store_thread, period)) = head.take() {
            totals[categorize(store_thread, frames)] += period;
        }
        frames.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut head, &mut frames);
        } else if head.is_none() && !line.starts_with('\t') {
            let mut words = line.split_whitespace();
            let comm = words.next().unwrap_or("");
            let period = words.last().and_then(|p| p.parse().ok()).unwrap_or(0);
            head = Some((comm == "timd-store", period));
        } else {
            let frame = line.trim();
            frames.push(frame.split_once(' ').map_or(frame, |(_, sym)| sym));
        }
    }
    flush(&mut head, &mut frames);
    totals
}

fn categorize(store_thread: bool, frames: &[&str]) -> usize {
    if store_thread {
        return 2;
    }
    for tier in [0..SHARED, SHARED..OTHER] {
        for frame in frames {
            if let Some(i) = tier
                .clone()
                .find(|&i| CATEGORIES[i].1.iter().any(|p| frame.contains(p)))
            {
                return i;
            }
        }
    }
    OTHER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_go_to_the_innermost_part_of_timd_then_to_shared_machinery() {
        let text = "tokio-rt-worker  1000\n\
            \t  97d70 _int_malloc\n\
            \t  11111 serde_json::de::from_slice\n\
            \t  22222 tim_usersig::verify\n\
            \t  33333 timd::gateway::Connection::on_login\n\
            \t  44444 tokio::runtime::task::harness::Harness<T,S>::poll\n\
            \n\
            tokio-rt-worker  2000\n\
            \t  11111 serde_json::ser::to_string\n\
            \t  33333 timd::gateway::Connection::send\n\
            \t  44444 tokio::runtime::task::harness::Harness<T,S>::poll\n\
            \n\
            timd-store  3000\n\
            \t  55555 futex_wait\n\
            \t  44444 tokio::runtime::park::CachedParkThread::block_on\n\
            \n\
            timd  500\n\
            \t  66666 epoll_wait\n";
        let t = sum_text(text);
        assert_eq!(t[0], 1000, "UserSig: a timd part beats the JSON leaf");
        assert_eq!(t[SHARED], 2000, "frame JSON: leaf first among shared parts");
        assert_eq!(t[2], 3000, "the store's own thread");
        assert_eq!(t[OTHER], 500);
        assert_eq!(t.iter().sum::<u64>(), 6500);
    }
}
