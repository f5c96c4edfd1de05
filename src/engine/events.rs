//! Live progress: every committed checkpoint is published as an event that WebSocket clients
//! (and, later, other processes) can follow, and so is what agents report while they work.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::agents::progress::AgentProgress;
use crate::state::{Node, ThreadStatus};
use crate::store::{Origin, StoredEvent, WebhookAttempt};

/// Events kept for slow subscribers before they start missing some.
const CAPACITY: usize = 4096;

/// One node finished (or one agent answered inside `execute_batch`) and was checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadEvent {
    pub thread_id: String,
    /// What wrote the checkpoint: the node that just finished, or the run's first write.
    pub node: Origin,
    /// The thread's status after it.
    pub status: ThreadStatus,
    /// The node that runs next.
    pub next: Node,
    pub step: i64,
    pub version: i64,
    /// What happened, for people watching (for example which task got its result).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// An agent's word on its work in progress: such an event writes no checkpoint, and its
    /// `version` is the last one written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<AgentProgress>,
}

impl ThreadEvent {
    /// Whether the event announces a checkpoint (rather than an agent's progress).
    pub fn is_checkpoint(&self) -> bool {
        self.progress.is_none()
    }
}

/// Another process's checkpoint, as the database announced it (the store has already refused a
/// notice with a name this build does not know).
impl From<StoredEvent> for ThreadEvent {
    fn from(e: StoredEvent) -> Self {
        ThreadEvent {
            thread_id: e.thread_id,
            node: e.node,
            status: e.status,
            next: e.next,
            step: e.step,
            version: e.version,
            detail: None,
            progress: None,
        }
    }
}

/// Webhook attempts kept for slow subscribers (they are few: one per delivery attempt).
const ATTEMPTS_CAPACITY: usize = 256;

/// A broadcast channel of thread events; subscribers filter by thread. Webhook attempts go on a
/// channel of their own: they are no checkpoint, and the many readers of thread events (the
/// WebSocket, the A2A face) have nothing to do with them.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<ThreadEvent>,
    attempts: broadcast::Sender<WebhookAttempt>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(CAPACITY).0,
            attempts: broadcast::channel(ATTEMPTS_CAPACITY).0,
        }
    }
}

impl EventBus {
    /// Publishes to whoever listens right now (nobody listening is fine).
    pub fn publish(&self, event: ThreadEvent) {
        let _ = self.sender.send(event);
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ThreadEvent> {
        self.sender.subscribe()
    }

    /// Publishes a webhook attempt this process made (nobody listening is fine).
    pub fn publish_attempt(&self, attempt: WebhookAttempt) {
        let _ = self.attempts.send(attempt);
    }

    /// A receiver of every webhook attempt this process makes from now on.
    pub fn subscribe_attempts(&self) -> broadcast::Receiver<WebhookAttempt> {
        self.attempts.subscribe()
    }
}
