//! A token bucket: the one rate limiter behind every "N a second, with a burst" setting (a key's
//! requests, a WebSocket's messages), so that each refuses the same way and says when to retry.

use std::time::{Duration, Instant};

/// Up to `burst` events at once, then `rate` a second on average.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Events that may happen now.
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket. A `burst` of 0 is taken as 1 (a bucket that never holds a token would
    /// refuse everything); a `rate` of 0 is the caller's "no limit" and never refuses.
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            refilled: Instant::now(),
        }
    }

    /// Takes one token, or says how long until one is back.
    pub fn take(&mut self) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_says_when_the_next_token_comes() {
        let mut bucket = TokenBucket::new(2, 3);
        for _ in 0..3 {
            assert!(bucket.take().is_ok());
        }
        let wait = bucket.take().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        let mut unlimited = TokenBucket::new(0, 0);
        for _ in 0..1000 {
            assert!(unlimited.take().is_ok(), "rate 0 is no limit");
        }
    }
}
