//! `aggregate_responses`: the planner composes the final response from the task results.

use super::{NodeError, Services};
use crate::state::{Node, ThreadState, ThreadStatus};

/// Writes `final_response` and completes the turn.
pub async fn run(services: &Services, state: &mut ThreadState) -> Result<Node, NodeError> {
    state.final_response = Some(services.planner.compose(state).await?);
    state.status = ThreadStatus::Completed;
    Ok(Node::End)
}
