//! Progress an agent reports while it works on a call (an A2A stream's `working` updates): relayed
//! to people watching the thread, never checkpointed (the call's outcome is).

use serde::Serialize;
use tokio::sync::mpsc;

/// One progress note of one agent on one task of a thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentProgress {
    /// Baton's task the call is for (`t1`, …).
    pub task_id: String,
    pub agent_id: String,
    /// What the agent said it is doing.
    pub text: String,
}

/// Where the progress notes of one task's calls go. A full or closed sink drops notes rather
/// than slowing the call: progress is for watching, and the outcome does not depend on it.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<(mpsc::Sender<AgentProgress>, String)>);

impl ProgressSink {
    /// A sink feeding `sender` with the notes of the calls for Baton's task `task_id`.
    pub fn new(sender: mpsc::Sender<AgentProgress>, task_id: String) -> Self {
        ProgressSink(Some((sender, task_id)))
    }

    /// A sink that drops everything (nobody relays this call's progress).
    pub fn none() -> Self {
        ProgressSink(None)
    }

    /// Passes on what `agent_id` said it is doing, if there is room.
    pub fn report(&self, agent_id: &str, text: String) {
        if let Some((sender, task_id)) = &self.0 {
            let _ = sender.try_send(AgentProgress {
                task_id: task_id.clone(),
                agent_id: agent_id.to_owned(),
                text,
            });
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink"
        } else {
            "ProgressSink(none)"
        })
    }
}
