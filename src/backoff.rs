//! The wait before another attempt, for everything Baton retries (agent calls, webhook
//! deliveries): doubling from a base, capped, plus up to half of it again at random so that
//! retries from many threads, or to a receiver coming back, do not all land at once.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// The wait after failed attempt number `attempt` (counting from 1): `base * 2^(attempt-1)`, at
/// most `cap`, plus up to half of that again.
pub fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let exp = base.saturating_mul(1u32 << doublings).min(cap);
    exp + exp.mul_f64(jitter() / 2.0)
}

/// A random fraction in [0, 1); 0 if the system has no randomness to give (no jitter then).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_at_most_half_again() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for (attempt, exp) in [(1, 100), (2, 200), (4, 800), (5, 1000), (40, 1000)] {
            let exp = Duration::from_millis(exp);
            let wait = backoff(base, attempt, cap);
            assert!(wait >= exp && wait <= exp + exp / 2, "{attempt}: {wait:?}");
        }
    }
}
