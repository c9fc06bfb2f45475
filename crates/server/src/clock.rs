//! The one wall clock every decision reads (unix time). Deadlines on sockets use tokio's
//! monotonic clock instead; only what is compared with UserSig times, ticket lifetimes and
//! kick times comes from here.
//!
//! In cluster mode it is **the cluster's clock**: Redis's `TIME`, as an offset from this
//! machine's clock that the node measures when it joins and refreshes every node round
//! ([`set_offset_ms`]). So a node whose own clock is seconds off decides UserSig
//! future-dating, kick times, ticket and UserSig expiry as the others do (the Lua scripts
//! read `TIME` themselves).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds to add to this machine's clock (0 in embedded mode).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// This machine's own unix milliseconds (0 if the clock is before 1970).
pub fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix milliseconds now, on the clock decisions use.
pub fn unix_ms() -> u64 {
    system_ms().saturating_add_signed(OFFSET_MS.load(Ordering::Relaxed))
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// Decisions follow a reference clock that is `offset_ms` ahead of this machine's (cluster
/// mode: Redis's).
pub fn set_offset_ms(offset_ms: i64) {
    OFFSET_MS.store(offset_ms, Ordering::Relaxed);
}

/// The current offset (for logs and `/metrics`).
pub fn offset_ms() -> i64 {
    OFFSET_MS.load(Ordering::Relaxed)
}
