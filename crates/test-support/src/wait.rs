//! Polling for a condition another task or process brings about.

use std::time::Duration;

use crate::WAIT;

/// Polls `cond` until true (or fails after [`WAIT`]).
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(what, WAIT, cond).await
}

/// Polls `cond` every 5 ms until true; fails after `bound`.
pub async fn eventually_within(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + bound;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
