//! Following a streamed task (`SendStreamingMessage`, `SubscribeToTask` and their v0.3 names):
//! the events are folded into the task as it stands until it settles, and what the agent says
//! while it works goes out as progress.

use super::client::{Step, result_of, step, task_step};
use super::wire::{SendResult, StreamEvent, Task, TaskState, TaskStatus, WireError};
use crate::agents::AgentError;
use crate::agents::sse::EventReader;

/// Reads `events` until the task settles (answered, asked, failed) or the agent closes the
/// stream early (then the task, if it has an id, is to be polled). `seen` hears of the task
/// each time it changes (so it can be cancelled while it runs); `note` gets each status message
/// of a task still working.
pub(super) async fn follow(
    events: &mut EventReader,
    mut seen: impl FnMut(&Task),
    mut note: impl FnMut(String),
) -> Result<Step, AgentError> {
    let mut task = Task {
        id: None,
        context_id: None,
        status: TaskStatus {
            state: TaskState::Submitted,
            message: None,
        },
        artifacts: Vec::new(),
        history: Vec::new(),
    };
    let mut last = false;
    while let Some(response) = events.next().await {
        let event = StreamEvent::read(&result_of(response?)?)?;
        if let StreamEvent::Message(message) = event {
            return Ok(step(&SendResult::Message(message))?);
        }
        if let StreamEvent::Status { last: true, .. } = &event {
            last = true;
        }
        let says = match &event {
            StreamEvent::Status { status, .. } => status.message.clone(),
            StreamEvent::Task(task) => task.status.message.clone(),
            _ => None,
        };
        task.apply(event);
        seen(&task);
        let working = matches!(task.status.state, TaskState::Submitted | TaskState::Working);
        if working && !last {
            if let Some(text) = says.map(|m| super::wire::readable(&m.parts))
                && !text.is_empty()
            {
                note(text);
            }
            continue;
        }
        return Ok(task_step(&task)?);
    }
    // The stream ended before the task settled: its state is still to be read.
    task.id
        .map(Step::Poll)
        .ok_or(AgentError::A2aWire(WireError::RunningWithoutId(
            task.status.state,
        )))
}
