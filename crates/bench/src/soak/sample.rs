//! One sample of everything that could grow, summed over the nodes: from `/proc` (resident
//! memory, open descriptors, threads), from the data directory (SQLite file and WAL), from
//! `/metrics` (live tasks, sessions online, every internal map's entries) and, in cluster
//! mode, from Redis (memory, keys).

use std::path::Path;

use super::target::Target;
pub struct Sample {
    /// Seconds since the mix started.
    pub at: u64,
    /// `(series, value)`, in the same order in every sample of a run.
    pub values: Vec<(String, f64)>,
}

impl Sample {
    pub async fn take(target: &Target, at: u64) -> Sample {
        let mut values: Vec<(String, f64)> = Vec::new();
        let mut add = |name: &str, v: f64| match values.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += v,
            None => values.push((name.to_owned(), v)),
        };
        for node in target.timds() {
            let pid = node.pid().unwrap_or(0);
            add("rss_mib", node.rss().unwrap_or(0) as f64 / 1048576.0);
            add("fds", count_dir(&format!("/proc/{pid}/fd")) as f64);
            add("threads", threads_of(pid) as f64);
            let (db, wal) = sqlite_sizes(node.data_dir());
            add("sqlite_kib", db as f64 / 1024.0);
            add("wal_kib", wal as f64 / 1024.0);
            let text = node.metrics().await.unwrap_or_default();
            add("tasks", gauge(&text, "timd_tasks_alive"));
            add("online", gauge(&text, "timd_online_instances"));
            add("connections", gauge(&text, "timd_ws_connections"));
            for (map, n) in entries(&text) {
                add(&format!("map_{map}"), n);
            }
        }
        if let Some(redis) = &target.redis {
            add(
                "redis_mib",
                redis.info_u64("memory", "used_memory") as f64 / 1048576.0,
            );
            let keys = redis
                .command(&["DBSIZE"])
                .and_then(|k| k.parse::<f64>().ok())
                .unwrap_or(0.0);
            add("redis_keys", keys);
        }
        Sample { at, values }
    }

    pub fn get(&self, name: &str) -> f64 {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, |d| d.count())
}

fn threads_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `timd.sqlite3` and its `-wal`, bytes.
fn sqlite_sizes(dir: &Path) -> (u64, u64) {
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    (size("timd.sqlite3"), size("timd.sqlite3-wal"))
}

/// An unlabelled gauge from the Prometheus text (0 when absent).
fn gauge(text: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every `timd_state_entries{map="…"} N`, by map name (the exposition's order is a hash
/// map's: it may differ between nodes).
fn entries(text: &str) -> Vec<(String, f64)> {
    let mut maps: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("timd_state_entries{map=\"")?;
            let (map, value) = rest.split_once("\"} ")?;
            Some((map.to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    maps.sort_by(|a, b| a.0.cmp(&b.0));
    maps
}

/// The column names, abbreviated to fit a terminal line.
pub fn print_header(first: &Sample) {
    let mut line = format!("  {:>6}", "min");
    for (name, _) in &first.values {
        line.push_str(&format!(" {:>9}", short(name)));
    }
    println!("{line}");
}

pub fn print_row(s: &Sample) {
    let mut line = format!("  {:>6.1}", s.at as f64 / 60.0);
    for (_, v) in &s.values {
        line.push_str(&format!(" {:>9}", compact(*v)));
    }
    println!("{line}");
}

fn short(name: &str) -> String {
    let name = name.strip_prefix("map_").unwrap_or(name);
    name.chars().take(9).collect()
}

fn compact(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
