//! A checkpoint write queued and not yet known to be committed.
//!
//! The engine queues a node's checkpoint and runs the next node while the write commits, when
//! that next node has no effect outside Baton: a thread's writes commit in the order they were
//! queued, so the later ones of a run land in the same group commit as the earlier ones instead
//! of each waiting for its own. Before anything leaves Baton (an agent call, an answer to the
//! caller, a pause for the user) the engine waits for every pending write to commit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use super::StoreError;

/// A queued checkpoint write: a future that answers once it is durable, or why it was not
/// written (a lost compare-and-set is `StoreError::Conflict`, as from `put_checkpoint`).
/// Awaiting it by `&mut` is cancel-safe: the write goes on, and can be awaited again.
pub struct PendingCheckpoint {
    outcome: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
}

impl PendingCheckpoint {
    /// A write whose outcome `outcome` answers.
    pub fn new(outcome: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Self {
        PendingCheckpoint {
            outcome: Box::pin(outcome),
        }
    }

    /// A write that was already committed when it was queued (a store without a write queue).
    pub fn written() -> Self {
        PendingCheckpoint::new(std::future::ready(Ok(())))
    }
}

impl Future for PendingCheckpoint {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.outcome.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingCheckpoint")
    }
}

/// A run's checkpoint writes queued one behind another. Once one of them loses its
/// compare-and-set, the ones queued after it lose too, unwritten: their versions follow the lost
/// one's, so against whatever write took its place (a cancel, a racing answer's run) they could
/// otherwise win. The writer that enforces it is in this process, so ids are unique within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chain(u64);

impl Chain {
    /// A chain no write belongs to yet.
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Chain(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}
