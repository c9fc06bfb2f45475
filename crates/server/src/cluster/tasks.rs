//! A node's background work in cluster mode: reading its stream for kicks decided on other
//! nodes, listening for settings changes, its node round (its lease, its view of the live
//! nodes, the settings versions, reaping dead nodes), watching its own lease (fencing), and
//! freeing the slots of sessions that went away for good.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::liveness::Round;
use super::subscription::{self, Ended};
use super::{keys, Cluster};
use crate::apps::Apps;

/// How often away sessions are checked against their grace period and UserSig.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the node checks its own lease (a node that wakes from a pause past it fences
/// itself at once).
const LEASE_CHECK_EVERY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to read the stream or subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts the node's tasks; they end when `shutdown` is cancelled.
pub fn spawn(
    cluster: Arc<Cluster>,
    apps: Arc<Apps>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = super::sentinel_watch::spawn(Arc::clone(cluster.primary()), shutdown.clone());
    tasks.extend([
        tokio::spawn(read_stream(Arc::clone(&cluster), shutdown.clone())),
        tokio::spawn(listen(
            Arc::clone(&cluster),
            Arc::clone(&apps),
            shutdown.clone(),
        )),
        tokio::spawn(rounds(Arc::clone(&cluster), apps, shutdown.clone())),
        tokio::spawn(watch_lease(Arc::clone(&cluster), shutdown.clone())),
        tokio::spawn(sweep(cluster, shutdown)),
    ]);
    tasks
}

/// Reads this node's stream (kicks of its sessions decided elsewhere) from its cursor; when
/// the connection drops, connects again (with backoff) and goes on from the cursor, so no
/// entry is lost.
async fn read_stream(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = tokio::time::Instant::now();
        match cluster.read_stream(&shutdown).await {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "node stream lost; reading again");
                cluster.primary().failed(None);
            }
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
            // The primary moved (a failover): the kicks wait there, read them at once.
            _ = cluster.primary().moved() => backoff = Duration::from_millis(100),
        }
    }
}

/// Subscribes to the settings channel (a change is loaded at once). When the subscription
/// drops, subscribes again (with backoff) and checks every app's settings version at once
/// (a round).
async fn listen(cluster: Arc<Cluster>, apps: Arc<Apps>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = subscription::hold(
            cluster.subscriber(),
            keys::SETTINGS_CHANNEL,
            &shutdown,
            || {
                backoff = Duration::from_millis(100);
                cluster.metrics().reconciliations.inc();
                cluster.reconcile_now();
            },
            |payload| {
                let (cluster, apps) = (&cluster, &apps);
                async move { settings_message(cluster, apps, &payload).await }
            },
        )
        .await;
        match ended {
            Ended::Shutdown => return,
            Ended::Lost => tracing::warn!("settings channel lost; subscribing again"),
            Ended::NotMade(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the settings channel")
            }
        }
        cluster.primary().failed(None);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(MAX_BACKOFF),
            _ = cluster.primary().moved() => backoff = Duration::from_millis(100),
        }
    }
}

/// A settings announcement, `<sdkappid>|<version>`: load that app's settings now.
async fn settings_message(cluster: &Cluster, apps: &Apps, payload: &str) {
    let Some(app) = payload
        .split_once('|')
        .and_then(|(app, _)| app.parse::<u32>().ok())
    else {
        tracing::warn!(payload, "bad settings message");
        return;
    };
    if let Err(e) = cluster.refresh_settings(apps, app).await {
        tracing::warn!(app, error = %e, "cannot load new login settings; the next round retries");
    }
}

/// The node round, every sixth of the lease (or at once when asked: after a fence, a
/// resubscription, or the primary moving): the ends Redis missed, the node lease and view (`node_round.lua`), a
/// registration again of everything held if Redis lost data, the apps' settings versions,
/// the stream's trim, dead nodes' reaping. O(nodes + apps) commands per round, whatever the
/// sessions held.
async fn rounds(cluster: Arc<Cluster>, apps: Arc<Apps>, shutdown: CancellationToken) {
    let every = cluster.settings().renew_every();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut register_pending = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                cluster.leave().await;
                return;
            }
            _ = tick.tick() => {}
            _ = cluster.reconcile.notified() => {}
            // The primary moved (a Sentinel failover): the promoted replica may lack the
            // last writes (a login's evictions are not waited for), so learn its run id and
            // register again what this node holds at once, not a round later.
            _ = cluster.primary().moved() => {}
        }
        match cluster.node_round().await {
            Ok(Round::Renewed { register_again }) => register_pending |= register_again,
            Ok(Round::Fenced) => {
                // Joins under its new id at once.
                register_pending = false;
                cluster.reconcile_now();
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew this node's lease");
                continue;
            }
        }
        // The ends Redis missed: a restarted Redis holds back resumes until they had a
        // round to land (resume.lua).
        cluster.write_ends().await;
        if register_pending {
            let (gone, done) = cluster.register_again(&apps).await;
            register_pending = !done;
            tracing::warn!(
                gone,
                done,
                "Redis lost data (or restarted): registered again what this node holds"
            );
        }
        cluster.check_settings(&apps).await;
        cluster.trim_stream().await;
        cluster.reap(&apps).await;
    }
}

/// Fences the node as soon as its lease lapsed (before anything else it would do on
/// waking from a pause: each script checks too).
async fn watch_lease(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(LEASE_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => cluster.check_lease(),
        }
    }
}

async fn sweep(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => cluster.sweep().await,
        }
    }
}
