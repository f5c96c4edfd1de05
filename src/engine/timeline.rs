//! What happened in a thread, told as events a person can follow (a node finished, a task started
//! or finished, a question was asked or answered, the run finished, failed, was cancelled or
//! paused), each derived from one checkpoint and the one before it.
//!
//! Derived, not recorded: the events of version `v` come from the states at `v - 1` and `v` alone,
//! so the events a live stream sends and the events a reconnecting client gets replayed from the
//! history are the same events, in the same order, with the same ids (`"{version}.{index}"`).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::state::{Node, QuestionKind, TaskId, ThreadState, ThreadStatus};
use crate::store::{Checkpoint, Origin};

/// Names one event: the checkpoint version it was derived from and its place among that
/// version's events. Ordered like the events of a thread are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub version: i64,
    pub index: u32,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.version, self.index)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where a client that reconnects stopped: after one event (`"7.2"`), or after every event of a
/// version (`"7"`, the id of a snapshot; `"0"` asks for the whole kept history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    pub version: i64,
    /// The last event of `version` seen; `None`: all of them.
    pub after_index: Option<u32>,
}

impl ResumePoint {
    /// Whether the client has already seen `id`.
    pub fn has_seen(&self, id: EventId) -> bool {
        match self.after_index {
            Some(index) => {
                id <= EventId {
                    version: self.version,
                    index,
                }
            }
            None => id.version <= self.version,
        }
    }
}

/// An event id a client sent back that Baton never gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event id (expected VERSION or VERSION.INDEX, like \"7\" or \"7.2\")")]
pub struct BadEventId(String);

impl FromStr for ResumePoint {
    type Err = BadEventId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadEventId(text.to_owned());
        let (version, index) = match text.trim().split_once('.') {
            Some((version, index)) => (version, Some(index.parse::<u32>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let version = version
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(bad)?;
        Ok(ResumePoint {
            version,
            after_index: index,
        })
    }
}

/// One thing that happened in a thread. `type` in the JSON names the kind; every event also
/// carries its id, the thread and the checkpoint version it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub id: EventId,
    pub thread_id: String,
    pub version: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Who put a question to the user: told with each question (the `question_asked` event, and
/// every pending question a client is shown), so a person knows whom the answer goes to.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "asked_by", rename_all = "snake_case")]
pub enum Asker {
    /// Baton's planner (guidance, a missing input, no agent that fits).
    Planner,
    /// An agent, on its own task (A2A `input-required`).
    Agent {
        /// The asking agent's directory id.
        agent_id: String,
    },
}

impl From<&QuestionKind> for Asker {
    fn from(kind: &QuestionKind) -> Self {
        match kind {
            QuestionKind::Agent { agent_id } => Asker::Agent {
                agent_id: agent_id.clone(),
            },
            _ => Asker::Planner,
        }
    }
}

/// How a task's calls ended, as watchers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    /// An agent answered.
    Ok,
    /// Every agent failed, or none could take the task.
    Failed,
}

/// The kinds of events, in the order a version's events are told.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A checkpoint was written: `node` is what wrote it (a node of the flow, or `start`,
    /// `takeover`, `cancel`), `next` the node that runs after it.
    NodeFinished {
        node: Origin,
        step: i64,
        status: ThreadStatus,
        next: Node,
    },
    /// A turn began with this prompt.
    RunStarted { prompt: String },
    /// The user answered a question: which one, what it asked and the answer, so a client
    /// that replays the history can show the exchange (a fork's first checkpoint carries
    /// answers whose `question_asked` was told in another thread).
    AnswerReceived {
        question_id: String,
        question: String,
        #[serde(flatten)]
        asked_by: Asker,
        answer: String,
    },
    /// A task's calls are over.
    TaskFinished {
        task_id: TaskId,
        agent_id: Option<String>,
        latency_ms: Option<u64>,
        outcome: TaskEnd,
    },
    /// The thread asks the user something.
    QuestionAsked {
        question_id: String,
        text: String,
        task_id: Option<TaskId>,
        #[serde(flatten)]
        asked_by: Asker,
    },
    /// A task's call goes out to its (first-ranked) agent.
    TaskStarted { task_id: TaskId, agent_id: String },
    /// The run stopped to wait for the user's answers.
    RunPaused { question_ids: Vec<String> },
    /// The turn completed.
    RunFinished { final_response: Option<String> },
    /// The turn failed.
    RunFailed { error: Option<String> },
    /// The user cancelled the turn.
    RunCancelled,
}

impl EventKind {
    /// The name of the kind (the JSON's `type`, the SSE `event:` field).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::NodeFinished { .. } => "node_finished",
            EventKind::RunStarted { .. } => "run_started",
            EventKind::AnswerReceived { .. } => "answer_received",
            EventKind::TaskFinished { .. } => "task_finished",
            EventKind::QuestionAsked { .. } => "question_asked",
            EventKind::TaskStarted { .. } => "task_started",
            EventKind::RunPaused { .. } => "run_paused",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::RunFailed { .. } => "run_failed",
            EventKind::RunCancelled => "run_cancelled",
        }
    }
}

/// The events of checkpoint `current`, written by `origin`, given the checkpoint before it
/// (`None` for a thread's first).
pub fn events_of(
    origin: Origin,
    previous: Option<&Checkpoint>,
    current: &Checkpoint,
) -> Vec<TimelineEvent> {
    let before = previous.map(|p| &p.state);
    let now = &current.state;
    let mut kinds = vec![EventKind::NodeFinished {
        node: origin,
        step: current.step,
        status: now.status,
        next: current.next,
    }];
    if origin == Origin::Start {
        kinds.push(EventKind::RunStarted {
            prompt: now.prompt.clone(),
        });
    }
    let answered = now
        .answers
        .iter()
        .filter(|a| before.is_none_or(|b| !b.answers.contains(a)));
    kinds.extend(answered.map(|a| EventKind::AnswerReceived {
        question_id: a.question.id.clone(),
        question: a.question.text.clone(),
        asked_by: Asker::from(&a.question.kind),
        answer: a.text.clone(),
    }));
    let finished = now
        .results
        .values()
        .filter(|r| before.is_none_or(|b| b.results.get(&r.task_id) != Some(*r)));
    kinds.extend(finished.map(|r| EventKind::TaskFinished {
        task_id: r.task_id.clone(),
        agent_id: r.outcome.agent_id().map(str::to_owned),
        latency_ms: r.latency_ms,
        outcome: if r.outcome.is_done() {
            TaskEnd::Ok
        } else {
            TaskEnd::Failed
        },
    }));
    let asked = now
        .pending_questions
        .iter()
        .filter(|q| before.is_none_or(|b| b.pending_questions.iter().all(|p| p.id != q.id)));
    kinds.extend(asked.map(|q| EventKind::QuestionAsked {
        question_id: q.id.clone(),
        text: q.text.clone(),
        task_id: q.task_id.clone(),
        asked_by: Asker::from(&q.kind),
    }));
    let calling_before = previous.map(calls_going_out).unwrap_or_default();
    let started = calls_going_out(current)
        .into_iter()
        .filter(|(task, _)| calling_before.iter().all(|(t, _)| t != task));
    kinds.extend(started.map(|(task_id, agent_id)| EventKind::TaskStarted { task_id, agent_id }));
    let status_changed = before.is_none_or(|b| b.status != now.status);
    if status_changed {
        match now.status {
            ThreadStatus::PendingUserInput => kinds.push(EventKind::RunPaused {
                question_ids: now.pending_questions.iter().map(|q| q.id.clone()).collect(),
            }),
            ThreadStatus::Completed => kinds.push(EventKind::RunFinished {
                final_response: now.final_response.clone(),
            }),
            ThreadStatus::Error => kinds.push(EventKind::RunFailed {
                error: now.error.clone(),
            }),
            ThreadStatus::Cancelled => kinds.push(EventKind::RunCancelled),
            ThreadStatus::Processing => {}
        }
    }
    kinds
        .into_iter()
        .zip(0u32..)
        .map(|(kind, index)| TimelineEvent {
            id: EventId {
                version: current.version,
                index,
            },
            thread_id: current.thread_id.clone(),
            version: current.version,
            kind,
        })
        .collect()
}

/// The calls `execute_batch` makes when it runs after this checkpoint: each task of the next
/// batch without a result for its current words, with the agent its call goes to first (a task
/// whose agent asked the user goes back to that agent; a task no agent can take makes no call).
fn calls_going_out(checkpoint: &Checkpoint) -> Vec<(TaskId, String)> {
    if checkpoint.next != Node::ExecuteBatch {
        return Vec::new();
    }
    let state = &checkpoint.state;
    let Some(batch) = state.plan.get(state.next_batch) else {
        return Vec::new();
    };
    batch
        .iter()
        .filter(|id| {
            state.task(id).is_some_and(|task| {
                state
                    .results
                    .get(*id)
                    .is_none_or(|r| r.input != task.description)
            })
        })
        .filter_map(|id| Some((id.clone(), first_agent(state, id)?)))
        .collect()
}

/// The agent a task's call goes to first, as `execute_batch` chooses it.
fn first_agent(state: &ThreadState, task_id: &TaskId) -> Option<String> {
    let answered = state
        .remote_tasks
        .get(task_id)
        .filter(|r| r.answer.is_some());
    state
        .candidates
        .get(task_id)?
        .iter()
        .filter(|c| answered.is_none_or(|r| r.agent_id == c.agent_id))
        .find(|c| c.arguments.is_some() && state.agents.contains_key(&c.agent_id))
        .map(|c| c.agent_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_read_both_id_forms() {
        let after_event: ResumePoint = "7.2".parse().expect("id");
        assert!(after_event.has_seen(EventId {
            version: 7,
            index: 2
        }));
        assert!(!after_event.has_seen(EventId {
            version: 7,
            index: 3
        }));
        assert!(after_event.has_seen(EventId {
            version: 6,
            index: 9
        }));
        let after_version: ResumePoint = "7".parse().expect("id");
        assert!(after_version.has_seen(EventId {
            version: 7,
            index: 40
        }));
        assert!(!after_version.has_seen(EventId {
            version: 8,
            index: 0
        }));
        for bad in ["", "x", "7.", "-1", "7.x", "1.2.3"] {
            assert!(bad.parse::<ResumePoint>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_first_checkpoint_starts_a_run() {
        let state = ThreadState::new_turn("t".into(), "hello".into(), 5);
        let checkpoint = Checkpoint {
            thread_id: "t".into(),
            version: 1,
            step: 0,
            next: Node::ParsePrompt,
            state,
        };
        let events = events_of(Origin::Start, None, &checkpoint);
        let json = serde_json::to_value(&events).expect("json");
        assert_eq!(json[0]["type"], "node_finished");
        assert_eq!(json[0]["id"], "1.0");
        assert_eq!(json[0]["node"], "start");
        assert_eq!(json[1]["type"], "run_started");
        assert_eq!(json[1]["id"], "1.1");
        assert_eq!(json[1]["prompt"], "hello");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn questions_name_who_asks() {
        let event = EventKind::QuestionAsked {
            question_id: "q1".into(),
            text: "Which text?".into(),
            task_id: None,
            asked_by: Asker::Agent {
                agent_id: "demo.translator".into(),
            },
        };
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["type"], "question_asked");
        assert_eq!(json["asked_by"], "agent");
        assert_eq!(json["agent_id"], "demo.translator");
        let planner = EventKind::QuestionAsked {
            question_id: "q1".into(),
            text: "What data?".into(),
            task_id: None,
            asked_by: Asker::Planner,
        };
        assert_eq!(
            serde_json::to_value(&planner).expect("json")["asked_by"],
            "planner"
        );
    }
}
