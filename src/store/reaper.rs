//! The reaper: one background task per process that deletes expired threads (see `expiry`), so
//! the database stays bounded by the operator's policy instead of growing with every flow.
//!
//! It works off the hot path in small batches (`BATCH` threads per statement, a pause between
//! statements), so on SQLite it never holds the one writer for long and checkpoints queued
//! behind a batch wait one short statement at most. After deleting, it gives the freed pages
//! back to the file system in small incremental-vacuum steps. On PostgreSQL every process runs
//! its own reaper; the store's delete skips rows another one holds, and deleting a thread twice
//! deletes nothing, so they need no coordination.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::expiry::{ExpiryBatch, ExpiryPolicy};
use super::{Store, now_ms};
use crate::metrics::Metrics;
use crate::state::ThreadStatus;

/// Threads deleted per statement at most.
pub const BATCH: i64 = 200;

/// Pause between two statements of a sweep (deletion or vacuum step), leaving the database to
/// the runs in between.
const PAUSE: Duration = Duration::from_millis(20);

/// Sweeps at most this far apart, whatever the time to live.
const LONGEST_INTERVAL: Duration = Duration::from_secs(30);

/// Sweeps at least this far apart, whatever the time to live.
const SHORTEST_INTERVAL: Duration = Duration::from_millis(200);

/// Vacuum steps after one sweep at most (each gives back up to 256 KiB; pages left free are
/// reused by the next writes, and the next sweep gives back more).
const MAX_VACUUM_STEPS: usize = 64;

/// Deletes a store's expired threads; see the module.
pub struct Reaper {
    store: Arc<dyn Store>,
    policy: ExpiryPolicy,
    metrics: Metrics,
}

impl Reaper {
    /// A reaper of `store` under `policy`, counting what it deletes in `metrics`.
    pub fn new(store: Arc<dyn Store>, policy: ExpiryPolicy, metrics: Metrics) -> Self {
        Reaper {
            store,
            policy,
            metrics,
        }
    }

    /// Starts the sweeping loop, unless nothing expires; the caller owns the handle and aborts
    /// it to stop the loop (a statement cut short is simply not committed).
    pub fn spawn(self) -> Option<JoinHandle<()>> {
        if self.policy.is_off() {
            return None;
        }
        tracing::info!(
            finished_ttl_s = self.policy.finished.map(|d| d.as_secs_f64()),
            waiting_ttl_s = self.policy.waiting.map(|d| d.as_secs_f64()),
            "threads expire"
        );
        Some(tokio::spawn(self.run()))
    }

    async fn run(self) {
        let every = self.interval();
        loop {
            if self.sweep().await > 0 {
                self.reclaim().await;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// A quarter of the shortest time to live, within bounds: a thread outlives its time to
    /// live by about that much at most.
    fn interval(&self) -> Duration {
        self.policy
            .rules()
            .iter()
            .map(|(_, ttl)| *ttl / 4)
            .min()
            .unwrap_or(LONGEST_INTERVAL)
            .clamp(SHORTEST_INTERVAL, LONGEST_INTERVAL)
    }

    /// Deletes every thread expired now, batch after batch; returns how many went.
    async fn sweep(&self) -> u64 {
        let mut total = 0;
        for (status, ttl) in self.policy.rules() {
            loop {
                let deleted = self.expire_batch(status, ttl).await;
                total += deleted;
                if deleted < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
        total
    }

    /// One batch of `status` threads older than `ttl`; how many were deleted (0 on an error,
    /// logged: the next sweep tries again).
    async fn expire_batch(&self, status: ThreadStatus, ttl: Duration) -> u64 {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let batch = ExpiryBatch {
            status,
            updated_before: now_ms().saturating_sub(ttl_ms),
            limit: BATCH,
        };
        match self.store.expire_threads(&batch).await {
            Ok(deleted) => {
                if deleted > 0 {
                    self.metrics.threads_expired(deleted);
                    tracing::debug!(status = status.as_str(), deleted, "expired threads deleted");
                }
                deleted
            }
            Err(e) => {
                tracing::warn!(status = status.as_str(), error = %e, "cannot delete expired threads");
                0
            }
        }
    }

    /// Gives freed pages back in small steps until none is left or a step frees nothing more
    /// (a database without incremental vacuum).
    async fn reclaim(&self) {
        let mut previous = u64::MAX;
        for _ in 0..MAX_VACUUM_STEPS {
            match self.store.reclaim_space().await {
                Ok(left) if left == 0 || left >= previous => return,
                Ok(left) => previous = left,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reclaim the space of expired threads");
                    return;
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Node, ThreadState, WorkerId};
    use crate::store::memory::MemoryStore;
    use crate::store::{Checkpoint, CheckpointWrite, Origin};

    /// Writes a thread at version 1 with `status`.
    async fn thread(store: &MemoryStore, id: &str, status: ThreadStatus) {
        let mut state = ThreadState::new_turn(id.to_owned(), "p".to_owned(), 5);
        state.status = status;
        let checkpoint = Checkpoint {
            thread_id: id.to_owned(),
            version: 1,
            step: 0,
            next: Node::End,
            state,
        };
        store
            .put_checkpoint(&CheckpointWrite {
                checkpoint: &checkpoint,
                node: Origin::Start,
                previous: None,
                worker: &WorkerId::new("test"),
                lease: None,
                closed: &[],
                turns_from: None,
                chain: None,
            })
            .await
            .expect("written");
    }

    #[tokio::test]
    async fn a_sweep_deletes_the_expired_statuses_in_batches_and_counts_them() {
        let store = Arc::new(MemoryStore::default());
        let finished = usize::try_from(BATCH).expect("small") + 5;
        for n in 0..finished {
            thread(&store, &format!("done-{n}"), ThreadStatus::Completed).await;
        }
        thread(&store, "waiting", ThreadStatus::PendingUserInput).await;
        thread(&store, "running", ThreadStatus::Processing).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let metrics = Metrics::default();
        let reaper = Reaper::new(
            store.clone(),
            ExpiryPolicy {
                finished: Some(Duration::from_millis(1)),
                waiting: None,
            },
            metrics.clone(),
        );
        assert_eq!(
            reaper.sweep().await,
            u64::try_from(finished).expect("small")
        );
        for kept in ["waiting", "running"] {
            assert!(
                store.get_checkpoint(kept).await.expect("read").is_some(),
                "{kept}"
            );
        }
        assert!(
            store
                .get_checkpoint("done-0")
                .await
                .expect("read")
                .is_none()
        );
        let text = metrics
            .render(crate::metrics::Exposition::Prometheus)
            .expect("rendered");
        assert!(
            text.contains(&format!("baton_threads_expired_total {finished}")),
            "{text}"
        );
    }

    #[test]
    fn sweeps_follow_the_shortest_time_to_live_within_bounds() {
        let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::default());
        let reaper = |finished: u64, waiting: Option<u64>| {
            Reaper::new(
                store.clone(),
                ExpiryPolicy {
                    finished: Some(Duration::from_secs(finished)),
                    waiting: waiting.map(Duration::from_secs),
                },
                Metrics::default(),
            )
            .interval()
        };
        assert_eq!(reaper(60, None), Duration::from_secs(15));
        assert_eq!(reaper(600, Some(40)), Duration::from_secs(10));
        assert_eq!(reaper(7 * 86_400, None), LONGEST_INTERVAL);
    }
}
