//! How hard Baton tries to deliver a webhook: a timeout per attempt, a number of attempts, and
//! exponential backoff with jitter between them; and which failures are worth another attempt.

use std::time::Duration;

/// Longest wait between two attempts, however many came before.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Attempts, timeout and backoff of webhook deliveries (`--webhook-attempts`,
/// `--webhook-timeout-ms`, `--webhook-backoff-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per delivery, the first included (at least 1).
    pub attempts: u32,
    /// Longest wait for one attempt (connection, request and the answer's head).
    pub timeout: Duration,
    /// The wait after the first failed attempt; doubles after each (up to ten minutes), plus up
    /// to half of it again at random, so receivers coming back are not hit all at once.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (counting from 1).
    pub fn delay(&self, attempt: i64) -> Duration {
        let attempt = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
        crate::backoff::backoff(self.backoff, attempt, MAX_BACKOFF)
    }

    /// Whether an attempt that failed as `failure` gets a successor.
    pub fn retries(&self, attempt: i64, failure: Failure) -> bool {
        failure == Failure::Transient && attempt < i64::from(self.attempts.max(1))
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A connection error, a timeout, a 5xx or a 429: the receiver may take it later.
    Transient,
    /// Any other answer (a 4xx but 429, a redirect), a refused URL, a body no longer available:
    /// trying again would get the same.
    Final,
}

impl Failure {
    /// What a receiver's non-2xx status means.
    pub fn of_status(status: u16) -> Self {
        if status == 429 || (500..=599).contains(&status) {
            Failure::Transient
        } else {
            Failure::Final
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_up_to_half_again_and_is_capped() {
        let policy = RetryPolicy {
            backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        for (attempt, base) in [(1, 100), (2, 200), (3, 400), (4, 800)] {
            let delay = policy.delay(attempt);
            let base = Duration::from_millis(base);
            assert!(
                delay >= base && delay <= base + base / 2,
                "{attempt}: {delay:?}"
            );
        }
        assert!(policy.delay(40) <= MAX_BACKOFF + MAX_BACKOFF / 2);
    }

    #[test]
    fn only_transient_failures_retry_and_only_up_to_the_limit() {
        let policy = RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        };
        assert_eq!(Failure::of_status(500), Failure::Transient);
        assert_eq!(Failure::of_status(503), Failure::Transient);
        assert_eq!(Failure::of_status(429), Failure::Transient);
        assert_eq!(Failure::of_status(404), Failure::Final);
        assert_eq!(Failure::of_status(301), Failure::Final);
        assert!(policy.retries(2, Failure::Transient));
        assert!(!policy.retries(3, Failure::Transient));
        assert!(!policy.retries(1, Failure::Final));
    }
}
