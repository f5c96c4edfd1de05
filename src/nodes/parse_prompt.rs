//! `parse_prompt`: the planner turns the prompt and every answer so far into tasks, or asks.

use super::{NodeError, Services};
use crate::planner::ParseOutcome;
use crate::state::{DecisionKind, Node, ThreadState, Turn};

/// Re-plans the request from scratch; results of tasks that did not change are kept, so an
/// answer about one task does not call the other tasks' agents again. `earlier` is the
/// planner's context: the thread's last earlier turns.
pub async fn run(
    services: &Services,
    state: &mut ThreadState,
    earlier: &[Turn],
) -> Result<Node, NodeError> {
    let outcome =
        services
            .planner
            .parse(state, earlier)
            .await?
            .record(state, DecisionKind::Parse, None);
    match outcome {
        ParseOutcome::Tasks(tasks) => {
            state.results.retain(|id, result| {
                tasks
                    .iter()
                    .any(|t| &t.id == id && t.description == result.input)
            });
            state.tasks = tasks;
            state.candidates.clear();
            state.plan.clear();
            state.next_batch = 0;
            Ok(Node::MatchCapabilities)
        }
        ParseOutcome::Ask {
            task_id,
            kind,
            question,
        } => {
            state.ask(task_id, kind, question);
            Ok(Node::WaitForUserInput)
        }
    }
}
