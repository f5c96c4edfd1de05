//! `wait_for_user_input`: the thread pauses on its pending question; this node runs when the
//! answer arrives and folds it into the state.

use super::NodeError;
use crate::state::{Answer, Node, ThreadState, ThreadStatus};

/// Records `answer` to the pending question and sends the thread back to planning.
pub fn run(state: &mut ThreadState, answer: &str) -> Result<Node, NodeError> {
    let question = state
        .pending_question
        .take()
        .ok_or_else(|| NodeError::Invalid("the thread has no pending question".into()))?;
    state.answers.push(Answer {
        question,
        text: answer.to_owned(),
    });
    state.status = ThreadStatus::Processing;
    Ok(Node::ParsePrompt)
}
