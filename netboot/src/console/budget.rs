//! A per-slot byte budget: a token bucket refilled at `rate` bytes a second up to
//! `burst`. Pure (time is passed in), so its arithmetic is tested directly.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Budget {
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Instant,
}

impl Budget {
    /// A full bucket at `now`.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Budget { rate, burst, tokens: burst as f64, last: now }
    }

    /// Takes `bytes` from the bucket if they fit (after refilling for the time since the
    /// last call); false leaves the bucket as it was.
    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
        if (bytes as f64) <= self.tokens {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(1000, 3000, t0);
        assert!(b.take(2000, t0));
        assert!(b.take(1000, t0));
        assert!(!b.take(1, t0), "the burst is spent");
        assert!(!b.take(600, t0 + Duration::from_millis(500)), "500 ms refill 500 bytes");
        assert!(b.take(500, t0 + Duration::from_millis(500)));
        // A long silence refills only up to the burst.
        assert!(!b.take(3001, t0 + Duration::from_secs(60)));
        assert!(b.take(3000, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = Budget::new(1000, 1000, t0);
        assert!(b.take(1000, t0));
        assert!(!b.take(1, t0 - Duration::from_secs(5)));
    }
}
