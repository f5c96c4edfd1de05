//! `wait_for_user_input`: the thread pauses on its pending questions; this node runs when an
//! answer arrives and folds it into the state.

use super::NodeError;
use crate::state::{Answer, Node, ThreadState, ThreadStatus};

/// Records `answer` to the question `question_id` (the oldest pending one when `None`). While
/// other questions are pending the thread keeps waiting; once all are answered, an agent's
/// question sends the batch on (the answer goes back to that agent) and a planner's question
/// sends the request back to planning.
pub fn run(
    state: &mut ThreadState,
    question_id: Option<&str>,
    answer: &str,
) -> Result<Node, NodeError> {
    let index = match question_id {
        Some(id) => state
            .pending_questions
            .iter()
            .position(|q| q.id == id)
            .ok_or_else(|| NodeError::Invalid(format!("question {id} is not pending")))?,
        None if state.pending_questions.is_empty() => {
            return Err(NodeError::Invalid(
                "the thread has no pending question".into(),
            ));
        }
        None => 0,
    };
    let question = state.pending_questions.remove(index);
    let to_agent = question.kind.is_agent();
    if to_agent
        && let Some(task_id) = &question.task_id
        && let Some(remote) = state.remote_tasks.get_mut(task_id)
    {
        remote.answer = Some(answer.to_owned());
    }
    state.answers.push(Answer {
        question,
        text: answer.to_owned(),
    });
    if !state.pending_questions.is_empty() {
        return Ok(Node::WaitForUserInput);
    }
    state.status = ThreadStatus::Processing;
    Ok(if to_agent {
        Node::ExecuteBatch
    } else {
        Node::ParsePrompt
    })
}
