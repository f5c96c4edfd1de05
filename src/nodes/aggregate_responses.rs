//! `aggregate_responses`: the planner composes the final response from the task results.

use super::{NodeError, Services};
use crate::state::{DecisionKind, Node, ThreadState, ThreadStatus};

/// Writes `final_response` and completes the turn.
pub async fn run(services: &Services, state: &mut ThreadState) -> Result<Node, NodeError> {
    let response =
        services
            .planner
            .compose(state)
            .await?
            .record(state, DecisionKind::Compose, None);
    state.final_response = Some(response);
    state.status = ThreadStatus::Completed;
    Ok(Node::End)
}
