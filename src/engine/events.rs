//! Live progress: every committed checkpoint is published as an event that WebSocket clients
//! (and, later, other processes) can follow.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::state::{Node, ThreadStatus, UnknownName};
use crate::store::StoredEvent;

/// Events kept for slow subscribers before they start missing some.
const CAPACITY: usize = 4096;

/// One node finished (or one agent answered inside `execute_batch`) and was checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadEvent {
    pub thread_id: String,
    /// The node that just finished (`start`, `takeover` for the first write of a run).
    pub node: String,
    /// The thread's status after it.
    pub status: ThreadStatus,
    /// The node that runs next.
    pub next: Node,
    pub step: i64,
    pub version: i64,
    /// What happened, for people watching (for example which task got its result).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Another process's checkpoint, as the database announced it; fails only on a node name this
/// build does not know (a newer writer sharing the database).
impl TryFrom<StoredEvent> for ThreadEvent {
    type Error = UnknownName;

    fn try_from(e: StoredEvent) -> Result<Self, Self::Error> {
        Ok(ThreadEvent {
            thread_id: e.thread_id,
            node: e.node,
            status: e.status,
            next: e.next.parse()?,
            step: e.step,
            version: e.version,
            detail: None,
        })
    }
}

/// A broadcast channel of thread events; subscribers filter by thread.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<ThreadEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(CAPACITY).0,
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
}
