//! One Redis pub/sub subscription held until it drops: what the settings listener, the
//! console's event relay and the Sentinel watch share. Each caller keeps its own backoff and
//! what it does when the subscription is (re)made or lost.

use std::future::Future;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::REDIS_TIMEOUT;

/// How a subscription ended.
pub(super) enum Ended {
    /// `shutdown` fired: stop.
    Shutdown,
    /// It held, then the connection dropped: subscribe again.
    Lost,
    /// It could not be made (the error, or no answer within [`REDIS_TIMEOUT`]).
    NotMade(String),
}

/// Subscribes to `channel` through `client` (within [`REDIS_TIMEOUT`]), calls `subscribed`
/// once it holds, then `on_message` with each message's payload in order, until the
/// connection drops or `shutdown` fires. A payload that is not text is skipped.
pub(super) async fn hold<F, Fut>(
    client: Result<redis::Client, redis::RedisError>,
    channel: &str,
    shutdown: &CancellationToken,
    subscribed: impl FnOnce(),
    mut on_message: F,
) -> Ended
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let made = async {
        let mut pubsub = client?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let mut pubsub = match tokio::time::timeout(REDIS_TIMEOUT, made).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(e)) => return Ended::NotMade(e.to_string()),
        Err(_) => return Ended::NotMade("no answer".into()),
    };
    subscribed();
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            m = messages.next() => m,
        };
        let Some(message) = message else {
            return Ended::Lost;
        };
        match message.get_payload::<String>() {
            Ok(payload) => on_message(payload).await,
            Err(e) => tracing::warn!(channel, error = %e, "unreadable pub/sub message"),
        }
    }
}
