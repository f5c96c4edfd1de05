//! The default planner: deterministic, offline rules over the user's words.
//!
//! A request is re-planned from scratch after every answer (prompt + every answer so far, in
//! order), which makes the plan a pure function of the thread's state: a resumed thread plans
//! exactly as the interrupted one would have.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::text::{self, Clause};
use super::{Decision, Inputs, ParseOutcome, Planner, PlannerError};
use crate::directory::Directory;
use crate::directory::card::{AgentCard, AgentSkill};
use crate::state::{Candidate, QuestionKind, Task, ThreadState};

/// Inputs whose value must be recognised (a number, a currency code, a language); for any other
/// input a bare answer to the question about it is taken as the value.
const TYPED_INPUTS: &[&str] = &[
    "amount",
    "from_currency",
    "to_currency",
    "target_language",
    "language",
];

/// The offline rules planner. It reads the directory to tell a request from context and to split
/// a clause that asks two things of two different agents.
#[derive(Clone)]
pub struct RulesPlanner {
    directory: Arc<Directory>,
}

impl RulesPlanner {
    /// A rules planner over `directory`.
    pub fn new(directory: Arc<Directory>) -> Self {
        RulesPlanner { directory }
    }

    /// The directory it plans against.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The clauses of the request after folding in every answer, and which were guided.
    fn clauses(state: &ThreadState) -> (Vec<Clause>, BTreeSet<usize>) {
        let mut clauses = text::split_clauses(&state.prompt);
        let mut guided = BTreeSet::new();
        for answer in &state.answers {
            // Answers to agents go back to the agents, not into the plan.
            if answer.question.kind.is_agent() {
                continue;
            }
            let target = answer
                .question
                .task_id
                .as_deref()
                .and_then(task_index)
                .filter(|i| *i < clauses.len());
            let new_request = text::redirect(&answer.text);
            match (new_request, target) {
                (Some(request), _) => {
                    clauses = text::split_clauses(&request);
                    guided.clear();
                }
                (None, None) => {
                    clauses = text::split_clauses(&answer.text);
                    guided.clear();
                }
                (None, Some(i)) => match answer.question.kind {
                    QuestionKind::Guidance => {
                        clauses[i].text = format!("{}. {}", clauses[i].text, answer.text.trim());
                        guided.insert(i);
                    }
                    QuestionKind::MissingInput { .. } => {
                        clauses[i].text = format!("{}. {}", clauses[i].text, answer.text.trim());
                    }
                    QuestionKind::Agent { .. } => {}
                    QuestionKind::NoAgent => {
                        let after_then = clauses[i].after_then;
                        let mut replacement = text::split_clauses(&answer.text);
                        if let Some(first) = replacement.first_mut() {
                            first.after_then = after_then;
                        }
                        clauses.splice(i..=i, replacement);
                    }
                },
            }
        }
        (clauses, guided)
    }

    fn guidance_question(text: &str) -> String {
        let low = text.to_lowercase();
        if low.contains("data") || low.contains("analy") {
            "What type of data are you analyzing, and what would you like to learn from it?"
                .to_owned()
        } else {
            format!(
                "Happy to guide you. What are you trying to achieve with \"{}\"?",
                text.trim()
            )
        }
    }
}

/// `t3` → 2.
fn task_index(id: &str) -> Option<usize> {
    id.strip_prefix('t')?.parse::<usize>().ok()?.checked_sub(1)
}

#[async_trait]
impl Planner for RulesPlanner {
    async fn parse(&self, state: &ThreadState) -> Result<Decision<ParseOutcome>, PlannerError> {
        Ok(Decision::offline(self.parse_now(state)))
    }

    async fn choose(
        &self,
        _state: &ThreadState,
        _task: &Task,
        ranked: Vec<Candidate>,
    ) -> Result<Decision<Vec<Candidate>>, PlannerError> {
        Ok(Decision::offline(self.choose_now(ranked)))
    }

    async fn arguments(
        &self,
        state: &ThreadState,
        task: &Task,
        card: &AgentCard,
        skill: &AgentSkill,
        upstream: bool,
    ) -> Result<Decision<Inputs>, PlannerError> {
        Ok(Decision::offline(
            self.arguments_now(state, task, card, skill, upstream),
        ))
    }

    async fn compose(&self, state: &ThreadState) -> Result<Decision<String>, PlannerError> {
        Ok(Decision::offline(self.compose_now(state)))
    }
}

impl RulesPlanner {
    /// Tasks from the request, or a question first.
    pub fn parse_now(&self, state: &ThreadState) -> ParseOutcome {
        let (clauses, guided) = Self::clauses(state);
        if clauses.is_empty() {
            return ParseOutcome::Ask {
                task_id: None,
                kind: QuestionKind::Guidance,
                question: "What would you like me to do?".to_owned(),
            };
        }
        for (i, clause) in clauses.iter().enumerate() {
            if text::asks_for_guidance(&clause.text) && !guided.contains(&i) {
                return ParseOutcome::Ask {
                    task_id: Some(format!("t{}", i + 1)),
                    kind: QuestionKind::Guidance,
                    question: Self::guidance_question(&clause.text),
                };
            }
        }
        let tasks = clauses
            .iter()
            .enumerate()
            .map(|(i, clause)| {
                let keywords = text::keywords(&clause.text);
                let depends_on =
                    if i > 0 && (clause.after_then || text::refers_upstream(&clause.text)) {
                        vec![format!("t{i}")]
                    } else {
                        Vec::new()
                    };
                Task {
                    id: format!("t{}", i + 1),
                    name: text::slug(&keywords),
                    description: clause.text.clone(),
                    keywords,
                    capabilities: Vec::new(),
                    depends_on,
                }
            })
            .collect();
        ParseOutcome::Tasks(tasks)
    }

    /// The candidates that fit, best first, each with its reason.
    pub fn choose_now(&self, ranked: Vec<Candidate>) -> Vec<Candidate> {
        ranked
            .into_iter()
            .map(|mut c| {
                c.reason = Some(format!("relevance {:.2}", c.relevance));
                c
            })
            .collect()
    }

    /// The values `skill` needs for `task`.
    pub fn arguments_now(
        &self,
        state: &ThreadState,
        task: &Task,
        card: &AgentCard,
        skill: &AgentSkill,
        upstream: bool,
    ) -> Inputs {
        let agent_name = card.name.as_str();
        let mut found = BTreeMap::new();
        for input in &skill.inputs {
            let name = input.name.as_str();
            let answered =
                state
                    .answers_for(&task.id)
                    .rev()
                    .filter_map(|a| match &a.question.kind {
                        QuestionKind::MissingInput { input } if input == name => {
                            Some(a.text.trim())
                        }
                        _ => None,
                    });
            let mut value = text::extract(name, &task.description);
            for answer in answered {
                if value.is_some() {
                    break;
                }
                value = text::extract(name, answer).or_else(|| {
                    (!TYPED_INPUTS.contains(&name) && !answer.is_empty()).then(|| answer.to_owned())
                });
            }
            if value.is_none() {
                value = state.history.iter().rev().find_map(|turn| {
                    std::iter::once(turn.prompt.as_str())
                        .chain(turn.answers.iter().map(|a| a.text.as_str()))
                        .find_map(|t| text::extract(name, t))
                });
            }
            match value {
                Some(v) => {
                    found.insert(name.to_owned(), v);
                }
                None if input.required && !(name == "text" && upstream) => {
                    return Inputs::Missing {
                        input: name.to_owned(),
                        question: format!(
                            "To {} with {agent_name}, I need {}. What should it be?",
                            skill.name.to_lowercase(),
                            input.description
                        ),
                    };
                }
                None => {}
            }
        }
        Inputs::Ready(found)
    }

    /// The final response from the task results.
    pub fn compose_now(&self, state: &ThreadState) -> String {
        if state.tasks.is_empty() {
            return "There was nothing to do in that request.".to_owned();
        }
        let mut lines = Vec::with_capacity(state.tasks.len() + 1);
        lines.push(format!(
            "Here is what I found for \"{}\":",
            state.prompt.trim()
        ));
        for task in &state.tasks {
            let line = match state.results.get(&task.id) {
                Some(r) if r.ok => {
                    let agent = state
                        .agents
                        .get(&r.agent_id)
                        .map_or(r.agent_id.as_str(), |c| c.name.as_str());
                    format!("- {} ({agent}): {}", task.description, r.output)
                }
                Some(r) => format!("- {}: not done. {}", task.description, r.output),
                None => format!("- {}: not done.", task.description),
            };
            lines.push(line);
        }
        lines.join("\n")
    }
}
