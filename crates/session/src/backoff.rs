//! Reconnect delays: exponential backoff with full jitter (as Centrifugo and AWS describe
//! it), never below the minimum: attempt `n` waits a uniform random time in
//! `[min, min(max, min * 2^(n+1))]`. Jitter spreads the reconnects of many clients after a
//! server restart; the floor keeps a flapping network from spinning.

use crate::session::Millis;

pub struct Backoff {
    min: Millis,
    max: Millis,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Millis, max: Millis, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The upper bound for `attempt` (0-based).
    pub fn cap(&self, attempt: u32) -> Millis {
        let factor = 1u64 << attempt.saturating_add(1).min(32);
        self.min.saturating_mul(factor).min(self.max)
    }

    pub fn delay(&mut self, attempt: u32) -> Millis {
        let cap = self.cap(attempt);
        self.min + self.next() % (cap - self.min + 1)
    }

    /// After a refusal (server full, rate limits, try again later): "equal jitter", a
    /// uniform time in `[cap / 2, cap]`, so that a refused client never comes back at once.
    pub fn refused_delay(&mut self, attempt: u32) -> Millis {
        let cap = self.cap(attempt);
        let half = cap / 2;
        half.max(self.min) + self.next() % (cap - half.max(self.min) + 1)
    }

    /// xorshift64*: small, no dependencies, plenty for jitter.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn delays_stay_within_bounds_and_grow_to_the_cap() {
        let mut b = Backoff::new(500, 20_000, 42);
        for attempt in 0..40 {
            let cap = b.cap(attempt);
            assert!(cap <= 20_000);
            for _ in 0..200 {
                let d = b.delay(attempt);
                assert!(
                    (500..=cap).contains(&d),
                    "attempt {attempt}: {d} not in 500..={cap}"
                );
            }
        }
        assert_eq!(b.cap(0), 1_000);
        assert_eq!(b.cap(1), 2_000);
        assert_eq!(b.cap(5), 20_000);
    }

    #[test]
    fn refused_delays_stay_in_the_upper_half() {
        let mut b = Backoff::new(500, 20_000, 7);
        for attempt in 0..40 {
            let cap = b.cap(attempt);
            for _ in 0..200 {
                let d = b.refused_delay(attempt);
                assert!(
                    (cap / 2).max(500) <= d && d <= cap,
                    "attempt {attempt}: {d} not in {}..={cap}",
                    cap / 2
                );
            }
        }
        // Still spread: 1000 clients at the same attempt do not come back together.
        let delays: Vec<u64> = (0..1000)
            .map(|seed| Backoff::new(500, 20_000, seed * 7919 + 1).refused_delay(2))
            .collect();
        assert!(*delays.iter().min().unwrap() < 2_200 && *delays.iter().max().unwrap() > 3_800);
    }

    #[test]
    fn jitter_spreads_the_delays() {
        // 1000 clients with different seeds, all at attempt 3: spread over the range.
        let delays: Vec<u64> = (0..1000)
            .map(|seed| Backoff::new(500, 20_000, seed * 7919 + 1).delay(3))
            .collect();
        let min = *delays.iter().min().unwrap();
        let max = *delays.iter().max().unwrap();
        assert!(min < 1_000 && max > 7_000, "{min}..{max}");
        let mut buckets = [0u32; 4];
        for d in delays {
            buckets[((d - 500) * 4 / 7_501).min(3) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 150), "{buckets:?}");
    }
}
