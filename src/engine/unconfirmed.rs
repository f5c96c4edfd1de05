//! A run's checkpoint writes that are queued but not yet known to be committed.
//!
//! After a node, the engine queues its checkpoint and, when the next node only computes, runs
//! that node at once rather than waiting for the commit (see `store::PendingCheckpoint`). Each
//! write's event is published only once the write has committed, in the order the writes were
//! queued, so a watcher never sees a checkpoint that is not durable. The run waits for all of
//! them before a node with effects outside Baton, and before it pauses or ends.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Instant;

use super::events::{EventBus, ThreadEvent};
use crate::metrics::Metrics;
use crate::store::{Chain, PendingCheckpoint, StoreError};

/// One queued write, with the event to publish once it commits.
pub(super) struct QueuedWrite {
    pub pending: PendingCheckpoint,
    pub event: ThreadEvent,
    /// When it was queued (the checkpoint write's latency is measured from here).
    pub queued: Instant,
    /// The chain it was queued in, if any.
    pub chain: Option<Chain>,
}

/// A run's queued writes, oldest first, all of one `Chain`: once one loses, the store refuses
/// the ones after it.
pub(super) struct Unconfirmed<'a> {
    writes: VecDeque<QueuedWrite>,
    chain: Chain,
    events: &'a EventBus,
    metrics: &'a Metrics,
}

impl<'a> Unconfirmed<'a> {
    /// No writes yet, of `chain`; committed writes' events go to `events`, their latency to
    /// `metrics`.
    pub fn new(events: &'a EventBus, metrics: &'a Metrics, chain: Chain) -> Self {
        Unconfirmed {
            writes: VecDeque::new(),
            chain,
            events,
            metrics,
        }
    }

    /// The chain the run's writes are queued in.
    pub fn chain(&self) -> Chain {
        self.chain
    }

    /// Adds a queued write, whose event is published once it commits.
    pub fn push(&mut self, write: QueuedWrite) {
        self.writes.push_back(write);
    }

    /// Waits for the oldest write's commit and publishes its event. Cancel-safe: cut short, the
    /// write stays first in line.
    async fn confirm_oldest(&mut self) -> Result<(), StoreError> {
        let Some(oldest) = self.writes.front_mut() else {
            return Ok(());
        };
        let committed = (&mut oldest.pending).await;
        let Some(oldest) = self.writes.pop_front() else {
            return committed;
        };
        committed?;
        self.metrics.checkpoint_written(oldest.queued.elapsed());
        self.events.publish(oldest.event);
        Ok(())
    }

    /// Waits for every write, in order. The first failure is answered, after the later writes
    /// (which cannot have won their compare-and-set either) have settled.
    pub async fn confirm_all(&mut self) -> Result<(), StoreError> {
        let mut first_failure = Ok(());
        while !self.writes.is_empty() {
            if let Err(e) = self.confirm_oldest().await
                && first_failure.is_ok()
            {
                first_failure = Err(e);
            }
        }
        first_failure
    }

    /// Runs `work` to its end while confirming writes as they commit (so their events go out
    /// while a slow node, a planner's model call, runs); answers `work`'s output and whether
    /// every write confirmed meanwhile committed. Writes left when `work` ends stay queued.
    pub async fn alongside<F: Future>(&mut self, work: F) -> (F::Output, Result<(), StoreError>) {
        tokio::pin!(work);
        let mut confirmed = Ok(());
        loop {
            tokio::select! {
                // The work first: a node that only computes is done at its first poll, and its
                // successor's write joins the same group commit as this one.
                biased;
                output = &mut work => return (output, confirmed),
                result = self.confirm_oldest(), if !self.writes.is_empty() && confirmed.is_ok() => {
                    confirmed = result;
                }
            }
        }
    }
}
