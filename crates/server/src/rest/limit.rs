//! The per-app REST call rate limit (`--rest-rate-limit`, 200 calls/s by default, as
//! Tencent documents for `kick`): a token bucket holding one second's worth of calls, so a
//! burst of up to the limit passes at once and the sustained rate never exceeds it.

use std::sync::Mutex;

use tokio::time::Instant;

use crate::token_bucket::TokenBucket;

/// Calls per second for the whole app; `0` means unlimited.
pub struct RateLimiter {
    per_second: u32,
    bucket: Mutex<TokenBucket>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            bucket: Mutex::new(TokenBucket::full(per_second, Instant::now())),
        }
    }

    /// The configured limit (calls per second; 0 = unlimited).
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes one call's token at `now`; false when the app is over its rate.
    pub fn try_acquire(&self, now: Instant) -> bool {
        if self.per_second == 0 {
            return true;
        }
        self.bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(self.per_second, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_up_to_the_limit_then_the_steady_rate() {
        let l = RateLimiter::new(200);
        let t0 = Instant::now();
        assert_eq!((0..250).filter(|_| l.try_acquire(t0)).count(), 200);
        // 10 ms later: 2 more.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!((0..10).filter(|_| l.try_acquire(t1)).count(), 2);
        // A long pause refills at most one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..500).filter(|_| l.try_acquire(t2)).count(), 200);
        // An earlier instant (another thread's stale `now`) neither refills nor panics.
        assert!(!l.try_acquire(t0));
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::new(0);
        let t = Instant::now();
        assert!((0..10_000).all(|_| l.try_acquire(t)));
        assert_eq!(l.per_second(), 0);
    }
}
