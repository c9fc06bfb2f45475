//! Following a Sentinel failover as it is announced, not when a call fails.
//!
//! Sentinels publish `+switch-master <service> <old ip> <old port> <new ip> <new port>` once
//! a failover is done. Without listening, a node learns of it only when its calls to the old
//! primary fail and a lookup happens to ask after the switch; behind the connection manager's
//! own reconnect attempts that took seconds (docs/faults.md, "Behind Sentinel"). Every
//! Sentinel is listened to (any one of them may be down); the first announcement moves the
//! connections ([`Primary::follow`]), the others find them moved already.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::primary::{Primary, Target};
use super::subscription::{self, Ended};

/// The Sentinels' channel for a completed failover.
const SWITCH_CHANNEL: &str = "+switch-master";
/// Wait before subscribing again to a Sentinel that dropped or refused the subscription.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// Lookups after an announcement, until the connections moved (a lookup already running, or
/// one within the last `LOOKUP_EVERY`, makes [`Primary::follow`] return at once).
const FOLLOW_TRIES: u32 = 10;
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Starts one listener per Sentinel (none for a `redis://` target).
pub fn spawn(primary: Arc<Primary>, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let Target::Sentinel {
        sentinels, service, ..
    } = primary.target().clone()
    else {
        return Vec::new();
    };
    sentinels
        .into_iter()
        .map(|(host, port)| {
            tokio::spawn(listen(
                Arc::clone(&primary),
                host,
                port,
                service.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

async fn listen(
    primary: Arc<Primary>,
    host: String,
    port: u16,
    service: String,
    shutdown: CancellationToken,
) {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.clone(), port),
        redis: RedisConnectionInfo::default(),
    };
    loop {
        let ended = subscription::hold(
            redis::Client::open(info.clone()),
            SWITCH_CHANNEL,
            &shutdown,
            || {},
            |payload| {
                let (primary, service, host) = (&primary, &service, &host);
                async move {
                    if switched(&payload, service) {
                        let sentinel = format!("{host}:{port}");
                        tracing::info!(sentinel, payload, "Redis Sentinel announced a failover");
                        follow(primary).await;
                    }
                }
            },
        )
        .await;
        match ended {
            Ended::Shutdown => return,
            Ended::Lost => {
                tracing::debug!(%host, port, "Sentinel subscription lost; subscribing again")
            }
            Ended::NotMade(e) => {
                tracing::debug!(%host, port, error = %e, "cannot subscribe to a Sentinel")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
        }
    }
}

/// Whether a `+switch-master` payload is about `service`.
fn switched(payload: &str, service: &str) -> bool {
    payload.split(' ').next() == Some(service)
}

/// Looks the primary up until the connections moved (or the Sentinels keep naming the one
/// already followed: another listener moved them first).
async fn follow(primary: &Primary) {
    let before = primary.addr();
    for _ in 0..FOLLOW_TRIES {
        if primary.follow().await || primary.addr() != before {
            return;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::switched;

    #[test]
    fn only_this_service_s_switch_counts() {
        assert!(switched("tim 127.0.0.1 6379 127.0.0.1 6380", "tim"));
        assert!(!switched("other 127.0.0.1 6379 127.0.0.1 6380", "tim"));
        assert!(!switched("timx 127.0.0.1 6379 127.0.0.1 6380", "tim"));
        assert!(!switched("", "tim"));
    }
}
