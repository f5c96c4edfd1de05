//! Planners turn a request (prompt, answers, earlier turns) into tasks, decide when the user must
//! be asked, find a skill's inputs in the user's words, and compose the final response.
//!
//! `rules` is the default: deterministic and offline. An LLM planner implements the same trait.

pub mod rules;
pub mod text;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::directory::card::AgentSkill;
use crate::state::{QuestionKind, Task, TaskId, ThreadState};

/// Failures of a planner (an LLM planner's endpoint can fail; the rules planner cannot).
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("planner failed: {0}")]
    Failed(String),
}

/// What parsing a request produced.
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

/// The planning half of the flow. Implementations must be pure functions of their arguments so
/// that a resumed thread plans exactly as the interrupted one would have.
#[async_trait]
pub trait Planner: Send + Sync {
    /// Splits the request into tasks, folding in every answer given so far, or asks first.
    async fn parse(&self, state: &ThreadState) -> Result<ParseOutcome, PlannerError>;

    /// Finds the values `skill` needs for `task` in the task, the answers and earlier turns.
    /// `upstream` says whether the task consumes earlier tasks' output (which can supply `text`).
    fn inputs(
        &self,
        state: &ThreadState,
        task: &Task,
        agent_name: &str,
        skill: &AgentSkill,
        upstream: bool,
    ) -> Inputs;

    /// Writes the final response from the task results.
    async fn compose(&self, state: &ThreadState) -> Result<String, PlannerError>;
}
