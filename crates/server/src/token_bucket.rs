//! A token bucket holding one second's worth of its rate: a burst of up to the rate passes at
//! once, and the sustained rate never exceeds it. The REST limit (`rest::limit`) and the
//! per-address `/ws` limits (`limits`) count with it.

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate` per second.
    pub fn full(rate: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(rate),
            at: now,
        }
    }

    /// Takes one token at `now`, refilling at `rate` per second first; false when empty.
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again at `now` (as good as a new one: it can go).
    pub fn refilled(&self, rate: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * f64::from(rate) >= f64::from(rate)
    }
}
