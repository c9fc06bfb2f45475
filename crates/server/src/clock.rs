//! The one wall clock every decision reads (unix time). Deadlines on sockets use tokio's
//! monotonic clock instead; only what is compared with UserSig times, ticket lifetimes and
//! kick times comes from here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}
