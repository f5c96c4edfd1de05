//! Per-key limits, when authentication is on (the API's `authenticate` middleware applies them): requests per second (a token bucket: 429 with
//! `Retry-After`), runs in flight (requests that start or continue a run: `POST /api/chat`,
//! `/api/chat/continue`, a fork, `POST /a2a`), and open streams (`/ws/chat`, a thread's SSE
//! events). Each is counted per owner name, in this process; 0 turns a limit off. Without keys
//! nothing is limited here (there is no one to count against).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::access::Owner;
use crate::token_bucket::TokenBucket;

/// The limits as configured (`--key-*` settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    /// Requests per second a key may make on average; 0: no limit.
    pub requests_per_second: u32,
    /// Requests a key may make at once before the rate applies.
    pub burst: u32,
    /// Run requests a key may have in flight; 0: no limit.
    pub max_runs: usize,
    /// SSE and WebSocket streams a key may hold open; 0: no limit.
    pub max_streams: usize,
}

/// What a key is using now.
struct Usage {
    /// The key's requests.
    requests: TokenBucket,
    runs: usize,
    streams: usize,
}

/// The counters of every key, shared by all requests.
pub struct KeyLimits {
    settings: LimitSettings,
    /// One entry per owner that made a request (bounded by the keys file). Held only to read
    /// and update one entry, never across an await.
    usage: Mutex<HashMap<Owner, Usage>>,
}

/// Which counted resource a permit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Run,
    Stream,
}

/// A run or stream slot of one key, given back when dropped.
pub struct Permit {
    limits: Arc<KeyLimits>,
    owner: Owner,
    held: Held,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limits
            .with_usage(&self.owner, |usage| match self.held {
                Held::Run => usage.runs = usage.runs.saturating_sub(1),
                Held::Stream => usage.streams = usage.streams.saturating_sub(1),
            });
    }
}

/// Why a request was refused: the text for the body, and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub message: String,
    pub retry_after: Duration,
}

impl KeyLimits {
    pub fn new(settings: LimitSettings) -> Arc<KeyLimits> {
        Arc::new(KeyLimits {
            settings,
            usage: Mutex::new(HashMap::new()),
        })
    }

    fn with_usage<T>(&self, owner: &Owner, change: impl FnOnce(&mut Usage) -> T) -> T {
        let mut usage = self
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = usage.entry(owner.clone()).or_insert_with(|| Usage {
            requests: TokenBucket::new(self.settings.requests_per_second, self.settings.burst),
            runs: 0,
            streams: 0,
        });
        change(entry)
    }

    /// Takes one request from `owner`'s bucket, or says how long until one is back.
    pub fn request(&self, owner: &Owner) -> Result<(), Refused> {
        if self.settings.requests_per_second == 0 {
            return Ok(());
        }
        self.with_usage(owner, |usage| usage.requests.take())
            .map_err(|retry_after| Refused {
                message: format!(
                    "too many requests for this API key (at most {} a second, --key-requests-per-second)",
                    self.settings.requests_per_second
                ),
                retry_after,
            })
    }

    /// A run or stream slot for `owner`, or a refusal when the key holds as many as allowed.
    pub fn acquire(self: &Arc<Self>, owner: &Owner, held: Held) -> Result<Permit, Refused> {
        let (max, what, flag) = match held {
            Held::Run => (self.settings.max_runs, "runs in flight", "--key-max-runs"),
            Held::Stream => (
                self.settings.max_streams,
                "open event streams and WebSockets",
                "--key-max-streams",
            ),
        };
        self.with_usage(owner, |usage| {
            let count = match held {
                Held::Run => &mut usage.runs,
                Held::Stream => &mut usage.streams,
            };
            if max > 0 && *count >= max {
                return Err(Refused {
                    message: format!(
                        "this API key already has {count} {what}, the most it may ({flag}); \
                         try again when one ends"
                    ),
                    retry_after: Duration::from_secs(1),
                });
            }
            *count += 1;
            Ok(())
        })?;
        Ok(Permit {
            limits: self.clone(),
            owner: owner.clone(),
            held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_slots_come_back_when_dropped() {
        let limits = KeyLimits::new(LimitSettings {
            requests_per_second: 1,
            burst: 2,
            max_runs: 1,
            max_streams: 0,
        });
        let alice = Owner::parse("alice").unwrap();
        let bob = Owner::parse("bob").unwrap();
        assert!(limits.request(&alice).is_ok());
        assert!(limits.request(&alice).is_ok());
        let refused = limits.request(&alice).unwrap_err();
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1)
        );
        assert!(limits.request(&bob).is_ok(), "each key has its own bucket");
        let run = limits.acquire(&alice, Held::Run).unwrap();
        assert!(limits.acquire(&alice, Held::Run).is_err());
        assert!(limits.acquire(&bob, Held::Run).is_ok());
        drop(run);
        assert!(limits.acquire(&alice, Held::Run).is_ok());
        assert!(
            limits.acquire(&alice, Held::Stream).is_ok(),
            "0 is no limit"
        );
    }
}
