//! Planners make the flow's decisions: which tasks a request holds (or what to ask the user
//! first), which of the ranked candidate agents fit a task, the arguments of each call, and the
//! final response.
//!
//! `rules` is the default: deterministic and offline. The `llm` planner makes the same decisions
//! with a model and falls back to `rules` for any decision the model cannot make.
//!
//! Every decision is stored in the thread's state by the node that asked for it, and that node's
//! checkpoint is written before the decision is acted on, so a resumed run never decides again
//! what it already decided.

pub mod compose;
pub mod extract;
pub mod intent;
pub mod llm;
pub mod rules;
pub mod text;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::card::{AgentCard, AgentSkill};
use crate::state::{
    Candidate, DecisionKind, PlannerFallback, QuestionKind, Task, TaskId, ThreadState, Turn,
};

/// How many times the user is asked about the same task before it is given up as not doable.
pub const MAX_CLARIFICATIONS: usize = 2;

/// How many of a thread's earlier turns a planner is shown, the most recent ones: an ellipsis
/// ("and in euros?") or a value said a few turns back is found in them, and a long thread costs
/// the planner (and a model's context) what a short one does. The engine reads them from the
/// store's turn log when a run starts.
pub const CONTEXT_TURNS: usize = 8;

/// Failures of a planner that no fallback could cover.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("planner failed: {0}")]
    Failed(String),
}

/// What parsing a request produced. Asking is an outcome, not an error: the thread pauses for
/// the answer and parses again with it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseOutcome {
    /// The request is clear enough to look for agents.
    Tasks(Vec<Task>),
    /// Something only the user knows is needed first.
    Ask {
        task_id: Option<TaskId>,
        kind: QuestionKind,
        question: String,
    },
}

/// What the planner found of a skill's inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// Every required input has a value (optional ones when found).
    Ready(BTreeMap<String, String>),
    /// This required input is nowhere in the user's words.
    Missing { input: String, question: String },
}

/// Where a task's `text` input comes from. Earlier tasks' output is sent as `text` when the
/// agent is called, so a task that consumes it must not be held up asking the user for `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSource {
    /// The user's words, like every other input.
    Request,
    /// The output of the tasks this one depends on.
    EarlierTasks,
}

impl TextSource {
    /// Read off the task's dependencies, which the plan fixed before arguments are decided.
    pub fn of(task: &Task) -> Self {
        if task.depends_on.is_empty() {
            TextSource::Request
        } else {
            TextSource::EarlierTasks
        }
    }
}

/// What a decision cost, when a model made it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCost {
    pub calls: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub millis: u64,
}

/// A decision together with what it cost and, when the configured planner could not make it,
/// why the rules planner made it instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<T> {
    pub value: T,
    pub cost: ModelCost,
    /// Set when this decision is the rules planner's, standing in for a failed one.
    pub fallback: Option<String>,
    /// The fallback is because the model could not be reached or did not answer in time.
    pub model_unreachable: bool,
}

impl<T> Decision<T> {
    /// A decision that cost nothing and fell back from nothing: the rules planner's own, or one
    /// with nothing to decide.
    pub fn offline(value: T) -> Self {
        Decision {
            value,
            cost: ModelCost::default(),
            fallback: None,
            model_unreachable: false,
        }
    }

    /// Adds the decision's cost and fallback to the thread's planner record, returning the value.
    pub fn record(self, state: &mut ThreadState, kind: DecisionKind, task: Option<&TaskId>) -> T {
        let record = &mut state.planner;
        record.model_calls = record.model_calls.saturating_add(self.cost.calls);
        record.prompt_tokens = record.prompt_tokens.saturating_add(self.cost.prompt_tokens);
        record.completion_tokens = record
            .completion_tokens
            .saturating_add(self.cost.completion_tokens);
        record.model_ms = record.model_ms.saturating_add(self.cost.millis);
        if let Some(reason) = self.fallback {
            record.fallbacks.push(PlannerFallback {
                decision: kind,
                task_id: task.cloned(),
                reason,
                model_unreachable: self.model_unreachable,
            });
        }
        self.value
    }
}

/// The planning half of the flow. Given the same state (and directory), the rules planner
/// decides the same way every time; a model-driven planner need not, which is why every decision
/// is checkpointed before it is acted on.
#[async_trait]
pub trait Planner: Send + Sync {
    /// Splits the request into tasks, folding in every answer given so far, or asks first.
    /// `earlier` is the thread's last earlier turns (at most [`CONTEXT_TURNS`]), oldest first.
    async fn parse(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
    ) -> Result<Decision<ParseOutcome>, PlannerError>;

    /// Judges a task's candidates, ranked best first by the directory: keeps those that fit, in
    /// the order to try them, each with a one-line reason. An empty list means nothing fits
    /// (the user is asked what to do instead, and no agent is called).
    async fn choose(
        &self,
        state: &ThreadState,
        task: &Task,
        ranked: Vec<Candidate>,
    ) -> Result<Decision<Vec<Candidate>>, PlannerError>;

    /// The values `skill` of `card` needs for `task`, from the task, the answers and `earlier`
    /// turns (as for `parse`). A task that depends on others does not need `text` from them
    /// (`TextSource`).
    async fn arguments(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
        task: &Task,
        card: &AgentCard,
        skill: &AgentSkill,
    ) -> Result<Decision<Inputs>, PlannerError>;

    /// Writes the final response from the task results: one answer to the user, not a dump of
    /// the agents' outputs, and it says what could not be done.
    async fn compose(&self, state: &ThreadState) -> Result<Decision<String>, PlannerError>;
}
