//! A node's background work in cluster mode: listening on its channel for kicks decided
//! on other nodes, renewing its leases (which also catches kicks the channel lost), and
//! freeing the slots of sessions that went away for good.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{keys, scripts, Cluster, REDIS_TIMEOUT};
use crate::apps::Apps;

/// How often away sessions are checked against their grace period and UserSig.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts the node's tasks; they end when `shutdown` is cancelled.
pub fn spawn(
    cluster: Arc<Cluster>,
    apps: Arc<Apps>,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(listen(
            Arc::clone(&cluster),
            Arc::clone(&apps),
            shutdown.clone(),
        )),
        tokio::spawn(renew(Arc::clone(&cluster), apps, shutdown.clone())),
        tokio::spawn(sweep(cluster, shutdown)),
    ]
}

/// Subscribes to this node's channel and applies every kick it carries, and to the settings
/// channel (a change is loaded at once). When the subscription drops, subscribes again
/// (with backoff) and then reconciles: a renewal right away reports whatever was published
/// meanwhile, and checks every app's settings version.
async fn listen(cluster: Arc<Cluster>, apps: Arc<Apps>, shutdown: CancellationToken) {
    let channel = keys::node_channel(cluster.node());
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut pubsub = cluster.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            pubsub.subscribe(keys::SETTINGS_CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(REDIS_TIMEOUT, subscribed).await {
            Ok(Ok(mut pubsub)) => {
                backoff = Duration::from_millis(100);
                tracing::info!(node = cluster.node(), "subscribed to the node channel");
                cluster.metrics().reconciliations.inc();
                cluster.reconcile_now();
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(message) = message else { break };
                    let payload: String = match message.get_payload() {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable channel message");
                            continue;
                        }
                    };
                    if message.get_channel_name() == keys::SETTINGS_CHANNEL {
                        settings_message(&cluster, &apps, &payload).await;
                        continue;
                    }
                    match scripts::channel_message(&payload) {
                        Ok((session, notice)) => {
                            cluster.metrics().channel_notices.inc();
                            cluster.held().apply(session, notice);
                        }
                        Err(e) => tracing::warn!(error = %e, "bad channel message"),
                    }
                }
                tracing::warn!("node channel lost; subscribing again");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to the node channel"),
            Err(_) => tracing::warn!("cannot subscribe to the node channel: no answer"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
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

/// Renews the leases every third of the lease, or at once when asked (reconcile), and
/// checks the apps' settings versions. At a fixed rate: a round's own duration (it grows
/// with the sessions held) does not stretch the period, so the lost-kick bound stays
/// lease/3.
async fn renew(cluster: Arc<Cluster>, apps: Arc<Apps>, shutdown: CancellationToken) {
    let every = cluster.settings().renew_every();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                cluster.leave().await;
                return;
            }
            _ = tick.tick() => {}
            _ = cluster.reconcile.notified() => {}
        }
        // First the ends Redis missed: a restarted Redis holds back resumes until they
        // had a round to land (resume.lua).
        cluster.write_ends().await;
        if let Err(e) = cluster.sync_clock().await {
            tracing::debug!(error = %e, "cannot read Redis's clock");
        }
        if let Err(e) = cluster.announce_alive().await {
            tracing::debug!(error = %e, "cannot renew this node's liveness");
        }
        cluster.check_settings(&apps).await;
        let gone = cluster.renew_leases(&apps).await;
        if gone > 0 {
            tracing::info!(gone, "lease renewal found sessions kicked elsewhere");
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
