//! What a client is told about a thread, derived from its checkpoint.

use serde::Serialize;

use crate::card::AgentCard;
use crate::state::{Question, TaskId, ThreadState, ThreadStatus};
use crate::store::Checkpoint;

/// A task with its chosen agent and the ranked fallbacks (the original API's shape).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TaskAgentPair {
    pub task_id: TaskId,
    pub task_name: String,
    pub task_description: String,
    pub primary: AgentCard,
    pub fallbacks: Vec<AgentCard>,
}

/// What a client is told about a thread, derived from its latest checkpoint alone, so any process
/// answers the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadView {
    pub thread_id: String,
    pub status: ThreadStatus,
    /// Questions waiting for the user, oldest first.
    pub questions: Vec<Question>,
    pub task_agent_pairs: Vec<TaskAgentPair>,
    pub final_response: Option<String>,
    pub error: Option<String>,
    pub version: i64,
}

impl ThreadView {
    /// The view of a checkpoint.
    pub fn of(checkpoint: &Checkpoint) -> Self {
        let state = &checkpoint.state;
        ThreadView {
            thread_id: state.thread_id.clone(),
            status: state.status,
            questions: state.pending_questions.clone(),
            task_agent_pairs: pairs(state),
            final_response: state.final_response.clone(),
            error: state.error.clone(),
            version: checkpoint.version,
        }
    }
}

/// One pair per task that has at least one ranked agent, in task order.
pub fn pairs(state: &ThreadState) -> Vec<TaskAgentPair> {
    state
        .tasks
        .iter()
        .filter_map(|task| {
            let mut cards = state.candidates.get(&task.id)?.iter().filter_map(|c| {
                state
                    .agents
                    .get(&c.agent_id)
                    .map(|card| card.as_ref().clone())
            });
            let primary = cards.next()?;
            Some(TaskAgentPair {
                task_id: task.id.clone(),
                task_name: task.name.clone(),
                task_description: task.description.clone(),
                primary,
                fallbacks: cards.collect(),
            })
        })
        .collect()
}
