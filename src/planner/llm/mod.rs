//! The `llm` planner: the flow's four decisions made by an OpenAI-compatible model, each with a
//! JSON Schema for its output, checked before use, and made by the rules planner instead when
//! the model cannot make it (down, slow, or wrong after retries). The fallback and the model's
//! cost are returned with the decision; the nodes record both in the thread's state.
//!
//! The planner keeps nothing about threads: every decision is built from the state it is given,
//! and what it decides is checkpointed by the engine before it is acted on, so a resumed run
//! reuses it instead of asking the model again. The only process-wide memory is whether the
//! endpoint refuses `response_format` (then schemas go into the prompt).

pub mod client;
pub mod decisions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::client::{ChatClient, Message, Structured};
use self::decisions::{Spec, Specs};
use super::rules::RulesPlanner;
use super::{Decision, Inputs, ModelCost, ParseOutcome, Planner, PlannerError, TextSource};
use crate::card::{AgentCard, AgentSkill};
use crate::state::{Answer, Candidate, QuestionKind, Task, ThreadState, Turn};

/// How many times an invalid answer is sent back to the model for correction before the rules
/// planner decides instead.
pub const VALIDATION_RETRIES: u32 = 2;

/// Most directory agents described in the parse prompt (a bound on the prompt's size).
const MAX_AGENTS_IN_PROMPT: usize = 60;

/// Longest agent output or final response quoted to the model, in characters.
const MAX_QUOTED_CHARS: usize = 2_000;

/// The model-driven planner. Holds the directory (through its rules planner, which also makes
/// Why the model made no decision, and whether it was unreachable (down, too slow) rather
/// than wrong.
struct Failure {
    reason: String,
    unreachable: bool,
}

/// every fallback decision), the chat client and the decisions' prompts and schemas.
pub struct LlmPlanner {
    client: ChatClient,
    rules: RulesPlanner,
    specs: Specs,
    /// Longest time one decision may take, retries included; then the rules planner decides.
    deadline: Duration,
    /// Set once the endpoint refused `response_format` and accepted the schema in the prompt.
    schema_in_prompt: AtomicBool,
}

impl std::fmt::Debug for LlmPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmPlanner")
            .field("client", &self.client)
            .field("deadline", &self.deadline)
            .field(
                "schema_in_prompt",
                &self.schema_in_prompt.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl LlmPlanner {
    /// A planner asking `client`'s model, falling back to `rules`; each decision gets at most
    /// `deadline`.
    pub fn new(
        client: ChatClient,
        rules: RulesPlanner,
        deadline: Duration,
    ) -> Result<Self, PlannerError> {
        let specs = Specs::load()
            .map_err(|e| PlannerError::Failed(format!("embedded decision schema: {e}")))?;
        Ok(LlmPlanner {
            client,
            rules,
            specs,
            deadline,
            schema_in_prompt: AtomicBool::new(false),
        })
    }

    /// Asks the model for one decision: the output is read into `T`, checked by `validate`, and
    /// sent back with the problem when it fails (at most `VALIDATION_RETRIES` times), all within
    /// the deadline. Returns the decision or why there is none, with what the asking cost.
    async fn decide<T, V>(
        &self,
        state: &ThreadState,
        spec: &Spec,
        context: &Value,
        validate: impl Fn(T) -> Result<V, String> + Send + Sync,
    ) -> (Result<V, Failure>, ModelCost)
    where
        T: DeserializeOwned,
        V: Send,
    {
        // A model that did not answer earlier in this turn is not waited for again: the turn's
        // other decisions are the rules planner's at once (the record is in the state, so a
        // resumed run decides the same way).
        if state.planner.fallbacks.iter().any(|f| f.model_unreachable) {
            return (
                Err(Failure {
                    reason: "the model did not answer earlier in this turn".to_owned(),
                    unreachable: true,
                }),
                ModelCost::default(),
            );
        }
        let started = Instant::now();
        let mut cost = ModelCost::default();
        let outcome = tokio::time::timeout(
            self.deadline,
            self.converse(spec, context, &validate, &mut cost),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failure {
                reason: format!(
                    "no valid answer within the {} ms deadline",
                    self.deadline.as_millis()
                ),
                unreachable: true,
            })
        });
        cost.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        (outcome, cost)
    }

    async fn converse<T, V>(
        &self,
        spec: &Spec,
        context: &Value,
        validate: &(impl Fn(T) -> Result<V, String> + Sync),
        cost: &mut ModelCost,
    ) -> Result<V, Failure>
    where
        T: DeserializeOwned,
    {
        let mut messages = vec![
            Message::system(String::new()),
            Message::user(context.to_string()),
        ];
        let mut refused_format = false;
        let mut invalid = 0;
        loop {
            let in_prompt = refused_format || self.schema_in_prompt.load(Ordering::Relaxed);
            messages[0] = system_message(spec, in_prompt);
            let format = (!in_prompt).then_some(Structured {
                name: spec.name,
                schema: &spec.schema,
            });
            let completion = match self.client.complete(&messages, format, cost).await {
                Ok(completion) => completion,
                Err(e) if format.is_some() && e.rejects_request() => {
                    tracing::info!(decision = spec.name, error = %e.describe(), "the model endpoint refused the request with response_format; retrying with the schema in the prompt");
                    refused_format = true;
                    continue;
                }
                Err(e) => {
                    return Err(Failure {
                        reason: e.describe(),
                        unreachable: true,
                    });
                }
            };
            if refused_format && !self.schema_in_prompt.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the model endpoint does not take response_format: decision schemas go in the prompt from now on"
                );
            }
            match decisions::read::<T>(&completion.content).and_then(validate) {
                Ok(value) => return Ok(value),
                Err(problem) => {
                    invalid += 1;
                    tracing::warn!(decision = spec.name, invalid, %problem, "invalid model output");
                    if invalid > VALIDATION_RETRIES {
                        return Err(Failure {
                            reason: format!("invalid output after {invalid} tries: {problem}"),
                            unreachable: false,
                        });
                    }
                    messages.push(Message::assistant(completion.content));
                    messages.push(Message::user(format!(
                        "That answer is invalid: {problem}. Answer again with the corrected JSON object only."
                    )));
                }
            }
        }
    }

    /// A model decision, or the rules planner's with the reason recorded.
    fn settle<V>(
        &self,
        spec: &Spec,
        (outcome, cost): (Result<V, Failure>, ModelCost),
        fallback: impl FnOnce() -> V,
    ) -> Decision<V> {
        match outcome {
            Ok(value) => Decision {
                value,
                cost,
                fallback: None,
                model_unreachable: false,
            },
            Err(failure) => {
                tracing::warn!(decision = spec.name, reason = %failure.reason, "the rules planner decides instead of the model");
                Decision {
                    value: fallback(),
                    cost,
                    fallback: Some(failure.reason),
                    model_unreachable: failure.unreachable,
                }
            }
        }
    }

    /// The directory's agents as the parse prompt shows them.
    fn agents_context(&self) -> Value {
        let cards = self.rules.directory().page(None, MAX_AGENTS_IN_PROMPT);
        let shown: Vec<Value> = cards
            .iter()
            .take(MAX_AGENTS_IN_PROMPT)
            .map(|card| {
                json!({
                    "id": card.id,
                    "name": card.name,
                    "description": card.description,
                    "skills": card.skills.iter().map(|s| json!({
                        "name": s.name,
                        "description": s.description,
                        "inputs": s.inputs.iter().map(|i| &i.name).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Value::Array(shown)
    }
}

/// The system message: the decision's instructions, plus its schema when the endpoint will not
/// take it as `response_format`.
fn system_message(spec: &Spec, schema_in_prompt: bool) -> Message {
    if schema_in_prompt {
        Message::system(format!(
            "{}\nAnswer with one JSON object and nothing else. It must follow this JSON Schema (decision: {}):\n{}",
            spec.prompt, spec.name, spec.schema
        ))
    } else {
        Message::system(spec.prompt)
    }
}

fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// Answers as the model sees them; answers to agents went to the agents and are left out.
fn answers_context(answers: &[Answer]) -> Value {
    Value::Array(
        answers
            .iter()
            .filter(|a| !a.question.kind.is_agent())
            .map(|a| {
                let mut entry = json!({
                    "question": a.question.text,
                    "answer": a.text,
                });
                if let Some(task) = &a.question.task_id {
                    entry["task"] = json!(task);
                }
                match &a.question.kind {
                    QuestionKind::MissingInput { input } => entry["input"] = json!(input),
                    QuestionKind::NoAgent => entry["about"] = json!("no agent fitted the task"),
                    QuestionKind::Guidance | QuestionKind::Agent { .. } => {}
                }
                entry
            })
            .collect(),
    )
}

fn turns_context(turns: &[Turn]) -> Value {
    Value::Array(
        turns
            .iter()
            .map(|t| {
                json!({
                    "prompt": t.prompt,
                    "answers": answers_context(&t.answers),
                    "final_response": t.final_response.as_deref().map(quote),
                })
            })
            .collect(),
    )
}

fn task_context(task: &Task) -> Value {
    json!({
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "keywords": task.keywords,
    })
}

#[async_trait]
impl Planner for LlmPlanner {
    async fn parse(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
    ) -> Result<Decision<ParseOutcome>, PlannerError> {
        let context = json!({
            "prompt": state.prompt,
            "answers": answers_context(&state.answers),
            "earlier_turns": turns_context(earlier),
            "agents": self.agents_context(),
        });
        // Planner questions of this turn already answered: a model asking forever is stopped.
        let answered = state
            .answers
            .iter()
            .filter(|a| a.question.kind == QuestionKind::Guidance)
            .count();
        let spec = &self.specs.parse;
        let asked = self
            .decide(state, spec, &context, |out| {
                decisions::validate_parse(out, answered)
            })
            .await;
        Ok(self.settle(spec, asked, || self.rules.parse_now(state, earlier)))
    }

    async fn choose(
        &self,
        state: &ThreadState,
        task: &Task,
        ranked: Vec<Candidate>,
    ) -> Result<Decision<Vec<Candidate>>, PlannerError> {
        if ranked.is_empty() {
            return Ok(Decision::offline(ranked));
        }
        let directory = self.rules.directory();
        let candidates: Vec<Value> = ranked
            .iter()
            .map(|c| {
                let card = directory.get(&c.agent_id);
                let skill = card
                    .as_ref()
                    .zip(c.skill_id.as_deref())
                    .and_then(|(card, id)| card.skill(id));
                json!({
                    "agent_id": c.agent_id,
                    "name": card.as_ref().map(|k| k.name.as_str()),
                    "description": card.as_ref().map(|k| k.description.as_str()),
                    "skill": skill.map(|s| json!({
                        "name": s.name,
                        "description": s.description,
                        "tags": s.tags,
                    })),
                    "relevance": c.relevance,
                    "fit": c.fit,
                })
            })
            .collect();
        let context = json!({
            "prompt": state.prompt,
            "task": task_context(task),
            "candidates": candidates,
        });
        let spec = &self.specs.choose;
        let asked = self
            .decide(state, spec, &context, |out| {
                decisions::validate_choose(out, &ranked)
            })
            .await;
        Ok(self.settle(spec, asked, || self.rules.choose_now(task, ranked.clone())))
    }

    async fn arguments(
        &self,
        state: &ThreadState,
        earlier: &[Turn],
        task: &Task,
        card: &AgentCard,
        skill: &AgentSkill,
    ) -> Result<Decision<Inputs>, PlannerError> {
        let text_source = TextSource::of(task);
        let inputs = decisions::skill_inputs(skill, text_source);
        if inputs.is_empty() {
            // Nothing to decide: no model call.
            return Ok(Decision::offline(Inputs::Ready(Default::default())));
        }
        // One model call per task, for the agent that will be called; a fallback agent (called
        // only if the first one fails) gets its arguments from the rules planner, so a slow or
        // failing model costs a task one deadline, not one per candidate.
        let primary = state
            .candidates
            .get(&task.id)
            .and_then(|c| c.first())
            .is_none_or(|c| c.agent_id == card.id);
        if !primary {
            return Ok(Decision::offline(
                self.rules.arguments_now(state, earlier, task, card, skill),
            ));
        }
        let context = json!({
            "task": task_context(task),
            "prompt": state.prompt,
            "answers": answers_context(&state.answers),
            "earlier_turns": turns_context(earlier),
            "agent": {"id": card.id, "name": card.name, "description": card.description},
            "skill": {
                "name": skill.name,
                "description": skill.description,
                "inputs": inputs.iter().map(|i| {
                    let mut entry = json!({
                        "name": i.name,
                        "description": i.description,
                        "required": i.required,
                    });
                    if let Some(schema) = &i.schema {
                        entry["schema"] = schema.clone();
                    }
                    entry
                }).collect::<Vec<_>>(),
            },
            "upstream": text_source == TextSource::EarlierTasks,
        });
        let spec = &self.specs.arguments;
        let asked = self
            .decide(state, spec, &context, |out| {
                decisions::validate_arguments(out, &inputs)
            })
            .await;
        Ok(self.settle(spec, asked, || {
            self.rules.arguments_now(state, earlier, task, card, skill)
        }))
    }

    async fn compose(&self, state: &ThreadState) -> Result<Decision<String>, PlannerError> {
        let tasks: Vec<Value> = state
            .tasks
            .iter()
            .map(|task| {
                let result = state.results.get(&task.id).map(|r| {
                    let agent_id = r.outcome.agent_id().unwrap_or_default();
                    json!({
                        "agent": state.agents.get(agent_id).map_or(agent_id, |c| c.name.as_str()),
                        "ok": r.outcome.is_done(),
                        "output": quote(r.outcome.text()),
                    })
                });
                json!({
                    "id": task.id,
                    "description": task.description,
                    "result": result,
                })
            })
            .collect();
        let context = json!({
            "prompt": state.prompt,
            "answers": answers_context(&state.answers),
            "tasks": tasks,
        });
        let spec = &self.specs.compose;
        let asked = self
            .decide(state, spec, &context, decisions::validate_compose)
            .await;
        Ok(self.settle(spec, asked, || self.rules.compose_now(state)))
    }
}
