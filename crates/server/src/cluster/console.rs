//! What the operator's console needs of the cluster, apart from the decisions: the numbers
//! must be the cluster's whichever node serves the console. Kept apart from the decision
//! scripts and the liveness rounds, and cheap: O(nodes + apps) Redis work per second,
//! whatever the number of sessions or logins.
//!
//! - **Who is online**: every node writes its held sessions' counts per app and platform
//!   into the hash `tim:console:{<app>}:online` (field: its node id; value: when, then
//!   attached/away per platform) every [`COUNTS_EVERY`]; a reader sums the fields written
//!   within [`COUNTS_FRESH`] (a node that died drops out by itself), its own live counts
//!   in place of its field.
//! - **What happens**: each node publishes the events it saw on [`EVENTS_CHANNEL`] every
//!   [`FLUSH_EVERY`] (one message per flush) and every node puts the others' into its own
//!   feed (`events.rs`); and adds its logins and kicks per minute to the hashes
//!   `tim:console:{<app>}:m:<minute>` (fields `l`, `k`), which expire after
//!   [`MINUTE_TTL_SECS`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::subscription::{self, Ended};
use super::{Cluster, ClusterError};
use crate::backend::{NodeOnline, OnlineSummary, PlatformCounts};
use crate::clock::unix_ms;
use crate::events::{last_hour, Event, Events, MinuteCount};

/// Where nodes publish their events.
pub const EVENTS_CHANNEL: &str = "tim:console:events";
/// How often a node publishes its events and adds its counts.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often a node writes its online counts.
pub const COUNTS_EVERY: Duration = Duration::from_secs(1);
/// A node's online counts older than this are not summed (the node is gone or cut off).
pub const COUNTS_FRESH_MS: u64 = 5_000;
/// How long the online-counts hash outlives its last write.
const ONLINE_TTL_MS: u64 = 60_000;
/// How long a minute's counts are kept: the last hour, and a margin.
pub const MINUTE_TTL_SECS: u64 = 2 * 3600;
/// Longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn online_key(app: u32) -> String {
    format!("tim:console:{{{app}}}:online")
}

fn minute_key(app: u32, minute: u64) -> String {
    format!("tim:console:{{{app}}}:m:{minute}")
}

/// One flush's message on [`EVENTS_CHANNEL`].
#[derive(Serialize, Deserialize)]
struct Published {
    #[serde(rename = "Node")]
    node: String,
    #[serde(rename = "Events")]
    events: Vec<Event>,
}

/// `when|a0,w0|a1,w1|…` (attached, away per platform of `Platform::ALL`).
fn encode(when: u64, counts: &PlatformCounts) -> String {
    let mut s = when.to_string();
    for (attached, away) in counts {
        s.push_str(&format!("|{attached},{away}"));
    }
    s
}

fn decode(value: &str) -> Option<(u64, PlatformCounts)> {
    let mut parts = value.split('|');
    let when = parts.next()?.parse().ok()?;
    let mut counts = PlatformCounts::default();
    for slot in counts.iter_mut() {
        let (a, w) = parts.next()?.split_once(',')?;
        *slot = (a.parse().ok()?, w.parse().ok()?);
    }
    Some((when, counts))
}

impl Cluster {
    /// The cluster's sessions of `app` per platform, and per node.
    pub async fn online_summary(&self, app: u32) -> Result<OnlineSummary, ClusterError> {
        let mut con = self.redis.con();
        let fields: HashMap<String, String> = self.timed(con.hgetall(online_key(app))).await?;
        let now = unix_ms();
        let mut nodes: Vec<(String, PlatformCounts)> = fields
            .into_iter()
            .filter(|(node, _)| *node != self.node())
            .filter_map(|(node, value)| {
                let (when, counts) = decode(&value)?;
                (when + COUNTS_FRESH_MS > now).then_some((node, counts))
            })
            .collect();
        let mine = self
            .held()
            .platform_counts()
            .remove(&app)
            .unwrap_or_default();
        nodes.push((self.node().to_owned(), mine));
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(OnlineSummary::sum(
            nodes
                .into_iter()
                .map(|(node, counts)| NodeOnline { node, counts })
                .collect(),
        ))
    }

    /// The cluster's logins and kicks per minute in `app`, the last hour, oldest first.
    pub async fn event_counts(&self, app: u32) -> Result<Vec<MinuteCount>, ClusterError> {
        let minutes = last_hour(unix_ms(), |_| (0, 0));
        let mut pipe = redis::pipe();
        for m in &minutes {
            pipe.hget(minute_key(app, m.minute), &["l", "k"]);
        }
        let mut con = self.redis.con();
        let found: Vec<(Option<u64>, Option<u64>)> = self.timed(con.query_pipe(&pipe)).await?;
        Ok(minutes
            .into_iter()
            .zip(found)
            .map(|(m, (l, k))| MinuteCount {
                logins: l.unwrap_or(0),
                kicks: k.unwrap_or(0),
                ..m
            })
            .collect())
    }

    /// Publishes what `events` saw since the last flush and adds its counts.
    async fn flush_events(&self, events: &Events) -> Result<(), ClusterError> {
        let out = events.take_outbox();
        if out.dropped > 0 {
            tracing::debug!(
                dropped = out.dropped,
                "console events beyond the relay's rate kept in this node's feed only"
            );
        }
        if out.events.is_empty() && out.counts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (&(app, minute), &(logins, kicks)) in &out.counts {
            let key = minute_key(app, minute);
            if logins > 0 {
                pipe.hincr(&key, "l", logins).ignore();
            }
            if kicks > 0 {
                pipe.hincr(&key, "k", kicks).ignore();
            }
            pipe.expire(&key, MINUTE_TTL_SECS as i64).ignore();
        }
        if !out.events.is_empty() {
            let message = Published {
                node: self.node().to_owned(),
                events: out.events,
            };
            let payload = serde_json::to_string(&message).expect("events serialize");
            pipe.publish(EVENTS_CHANNEL, payload).ignore();
        }
        let mut con = self.redis.con();
        let sent: Result<(), ClusterError> = self.timed(con.exec_pipe(&pipe)).await;
        if sent.is_err() {
            // The counts are added at the next flush (an answer lost after Redis applied
            // them would count twice: rare, and a chart).
            events.restore_counts(out.counts);
        }
        sent
    }

    /// Writes this node's online counts of every app it holds sessions of (and zeros,
    /// once, for the apps it no longer holds any of).
    async fn write_online(&self, written: &mut HashSet<u32>) -> Result<(), ClusterError> {
        let counts = self.held().platform_counts();
        let now = unix_ms();
        let mut pipe = redis::pipe();
        for (&app, c) in &counts {
            pipe.hset(online_key(app), self.node(), encode(now, c))
                .ignore()
                .pexpire(online_key(app), ONLINE_TTL_MS as i64)
                .ignore();
        }
        for &app in written.iter().filter(|a| !counts.contains_key(a)) {
            pipe.hdel(online_key(app), self.node()).ignore();
        }
        if counts.is_empty() && written.is_empty() {
            return Ok(());
        }
        let mut con = self.redis.con();
        self.timed(con.exec_pipe(&pipe)).await?;
        *written = counts.into_keys().collect();
        Ok(())
    }

    /// Starts the console's relay: publishing this node's events and counts, and putting
    /// the other nodes' events into `events`. Ends when `shutdown` is cancelled.
    pub fn spawn_console(
        self: &Arc<Self>,
        events: &Arc<Events>,
        shutdown: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        events.relay();
        vec![
            tokio::spawn(publish(
                Arc::clone(self),
                Arc::clone(events),
                shutdown.clone(),
            )),
            tokio::spawn(relay(Arc::clone(self), Arc::clone(events), shutdown)),
        ]
    }
}

async fn publish(cluster: Arc<Cluster>, events: Arc<Events>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = HashSet::new();
    let mut last_counts = tokio::time::Instant::now() - COUNTS_EVERY;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = cluster.flush_events(&events).await {
            tracing::debug!(error = %e, "cannot publish console events");
        }
        if last_counts.elapsed() >= COUNTS_EVERY {
            last_counts = tokio::time::Instant::now();
            if let Err(e) = cluster.write_online(&mut written).await {
                tracing::debug!(error = %e, "cannot write the online counts");
            }
        }
    }
    // The last events (the sockets closed at shutdown) and this node's counts gone.
    let _ = cluster.flush_events(&events).await;
    let mut pipe = redis::pipe();
    for &app in &written {
        pipe.hdel(online_key(app), cluster.node()).ignore();
    }
    let mut con = cluster.redis.con();
    let _: Result<(), _> = cluster.timed(con.exec_pipe(&pipe)).await;
}

/// Subscribes to [`EVENTS_CHANNEL`] and puts the other nodes' events into `events`;
/// subscribes again (with backoff) when the subscription drops.
async fn relay(cluster: Arc<Cluster>, events: Arc<Events>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = subscription::hold(
            cluster.subscriber(),
            EVENTS_CHANNEL,
            &shutdown,
            || backoff = Duration::from_millis(100),
            |payload| {
                match serde_json::from_str::<Published>(&payload) {
                    Ok(p) if p.node == cluster.node() => {}
                    Ok(p) => events.relayed(p.events),
                    Err(e) => tracing::warn!(error = %e, "bad console event message"),
                }
                std::future::ready(())
            },
        )
        .await;
        match ended {
            Ended::Shutdown => return,
            Ended::Lost => tracing::debug!("console event channel lost; subscribing again"),
            Ended::NotMade(e) => tracing::debug!(error = %e, "cannot subscribe to console events"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_proto::Platform;

    #[test]
    fn counts_round_trip() {
        let mut c = PlatformCounts::default();
        c[0] = (3, 1);
        c[5] = (0, 2);
        let s = encode(42, &c);
        assert_eq!(decode(&s), Some((42, c)));
        assert_eq!(decode("42|1,2"), None);
        assert_eq!(decode("x"), None);
        assert_eq!(Platform::ALL.len(), c.len());
        assert_eq!(online_key(7), "tim:console:{7}:online");
        assert_eq!(minute_key(7, 60), "tim:console:{7}:m:60");
    }
}
