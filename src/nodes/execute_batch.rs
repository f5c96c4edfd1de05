//! `execute_batch`: calls the agents of one batch concurrently, with a timeout per call, retries
//! with backoff, and fallback to the next-ranked agent. Each result is checkpointed as it arrives,
//! so a crash mid-batch never calls again an agent that already answered.
//!
//! An agent may answer with a question (A2A `input-required`): the task keeps no result, the
//! question joins the thread's pending questions, and once every question of the batch has an
//! answer the batch runs again: tasks with results are skipped, and each asking agent gets the
//! user's answer on its own agent-side task.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{NodeError, Progress, Services};
use crate::agents::{AgentClient, AgentReply, AgentRequest, FollowUp};
use crate::card::AgentCard;
use crate::directory::health::Reach;
use crate::planner::extract::{self, InputSpec, Kind};
use crate::state::{Node, QuestionKind, RemoteTask, TaskId, TaskOutcome, TaskResult, ThreadState};

/// One agent a task may be sent to, with the inputs found for its skill.
struct Attempt {
    card: AgentCard,
    skill_id: Option<String>,
    inputs: BTreeMap<String, String>,
}

/// Everything one task's calls need, owned, so the calls run while the state is updated.
struct Job {
    task_id: TaskId,
    description: String,
    text: String,
    agents: Vec<Attempt>,
    follow_up: Option<FollowUp>,
    /// Names the call in idempotency keys: the task id, plus the question it answers for a
    /// follow-up (so an agent deduplicating on keys never mistakes the answer for a replay).
    call_name: String,
}

/// What calling a task's agents came to.
enum Outcome {
    Done(TaskResult),
    Asked {
        task_id: TaskId,
        agent_id: String,
        question: String,
        remote_task_id: Option<String>,
        context_id: Option<String>,
    },
}

/// Runs the next batch of the plan.
pub async fn run(
    services: &Services,
    state: &mut ThreadState,
    progress: &mut dyn Progress,
) -> Result<Node, NodeError> {
    let batch = state
        .plan
        .get(state.next_batch)
        .cloned()
        .unwrap_or_default();
    let jobs: Vec<Job> = batch.iter().filter_map(|id| job(state, id)).collect();
    let thread_id = state.thread_id.clone();
    let turn = state.turns.len() + 1;
    let mut calls: FuturesUnordered<_> = jobs
        .into_iter()
        .map(|job| call_task(services, &thread_id, turn, job))
        .collect();
    let mut asked = false;
    while let Some(outcome) = calls.next().await {
        asked |= matches!(outcome, Outcome::Asked { .. });
        keep(state, outcome);
        // The node's own checkpoint covers the last outcome; only earlier ones need one here.
        if !calls.is_empty() {
            progress.save(state).await?;
        }
    }
    if asked {
        return Ok(Node::WaitForUserInput);
    }
    state.next_batch += 1;
    Ok(if state.next_batch < state.plan.len() {
        Node::ExecuteBatch
    } else {
        Node::AggregateResponses
    })
}

/// Puts a task's outcome into the state: its result, or the agent's question for the user with
/// the agent-side task the answer goes back to.
fn keep(state: &mut ThreadState, outcome: Outcome) {
    match outcome {
        Outcome::Done(result) => {
            state.remote_tasks.remove(&result.task_id);
            state.results.insert(result.task_id.clone(), result);
        }
        Outcome::Asked {
            task_id,
            agent_id,
            question,
            remote_task_id,
            context_id,
        } => {
            let question_id = state.ask(
                Some(task_id.clone()),
                QuestionKind::Agent {
                    agent_id: agent_id.clone(),
                },
                question,
            );
            state.remote_tasks.insert(
                task_id,
                RemoteTask {
                    agent_id,
                    task_id: remote_task_id,
                    context_id,
                    question_id,
                    answer: None,
                },
            );
        }
    }
}

/// The calls a task still needs; `None` when it already has an answer for its current words.
fn job(state: &ThreadState, task_id: &TaskId) -> Option<Job> {
    let task = state.task(task_id)?;
    if state
        .results
        .get(task_id)
        .is_some_and(|r| r.input == task.description)
    {
        return None;
    }
    let upstream: Vec<&str> = task
        .depends_on
        .iter()
        .filter_map(|d| state.results.get(d))
        .filter_map(|r| r.outcome.output())
        .collect();
    let mut text = task.description.clone();
    if !task.context.is_empty() {
        text = format!("{text}\n\n{}", task.context.join("\n"));
    }
    if !upstream.is_empty() {
        text = format!("{text}\n\n{}", upstream.join("\n"));
    }
    // A task whose agent asked the user goes back to that agent only, with the answer.
    let remote = state
        .remote_tasks
        .get(task_id)
        .and_then(|r| Some((r, r.answer.clone()?)));
    let follow_up = remote.as_ref().map(|(r, answer)| FollowUp {
        task_id: r.task_id.clone(),
        context_id: r.context_id.clone(),
        answer: answer.clone(),
    });
    let call_name = match &remote {
        Some((r, _)) => format!("{task_id}.{}", r.question_id),
        None => task_id.to_string(),
    };
    let agents = state
        .candidates
        .get(task_id)
        .into_iter()
        .flatten()
        .filter(|c| {
            remote
                .as_ref()
                .is_none_or(|(r, _)| r.agent_id == c.agent_id)
        })
        .filter_map(|c| {
            let card = state.agents.get(&c.agent_id)?.clone();
            // No arguments: a required input of this agent's skill is missing; try the next.
            let mut inputs = c.arguments.clone()?;
            if !upstream.is_empty() {
                // The earlier tasks' output goes into the skill's free-text input, whatever its
                // name ("text", "content", "document"), unless the user gave that text.
                let skill = c.skill_id.as_deref().and_then(|id| card.skill(id));
                let name = skill
                    .and_then(|skill| {
                        skill.inputs.iter().find(|input| {
                            let spec = InputSpec::of(&card, skill, input);
                            extract::kind(&spec) == Kind::Text
                        })
                    })
                    .map_or("text", |input| input.name.as_str())
                    .to_owned();
                inputs.entry(name).or_insert_with(|| upstream.join("\n"));
            }
            Some(Attempt {
                skill_id: c.skill_id.clone(),
                card,
                inputs,
            })
        })
        .collect();
    Some(Job {
        task_id: task_id.clone(),
        description: task.description.clone(),
        text,
        agents,
        follow_up,
        call_name,
    })
}

impl Job {
    /// The request for the `attempts`th call of this task (fallbacks included), to `agent`.
    fn request(
        &self,
        thread_id: &str,
        turn: usize,
        agent: &Attempt,
        attempts: u32,
    ) -> AgentRequest {
        AgentRequest {
            thread_id: thread_id.to_owned(),
            task_id: self.task_id.to_string(),
            skill_id: agent.skill_id.clone(),
            text: self.text.clone(),
            inputs: agent.inputs.clone(),
            idempotency_key: format!("{thread_id}/{turn}/{}/{attempts}", self.call_name),
            follow_up: self.follow_up.clone(),
        }
    }

    /// The task's result once its calls are over.
    fn result(self, services: &Services, outcome: TaskOutcome, attempts: u32) -> TaskResult {
        TaskResult {
            task_id: self.task_id,
            outcome,
            attempts,
            worker: services.worker.clone(),
            input: self.description,
        }
    }
}

/// What one call of one agent came to.
enum Call {
    /// The agent answered the task.
    Answered(String),
    /// The agent needs something from the user first (A2A `input-required`).
    Asked {
        question: String,
        task_id: Option<String>,
        context_id: Option<String>,
    },
    /// No answer; `then` says whether this agent deserves another try.
    Failed { error: String, then: AfterFailure },
}

/// Where a task's calls go after a failed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailure {
    /// The failure may pass (a timeout, a dropped connection): call the same agent again.
    Retry,
    /// The agent refused or cannot be reached as configured: go to the next-ranked one.
    NextAgent,
}

impl Call {
    /// Whether the agent did its part (answering or asking), for its measured success rate.
    fn reach(&self) -> Reach {
        match self {
            Call::Failed { .. } => Reach::Failed,
            _ => Reach::Reached,
        }
    }
}

/// Calls the task's agents in rank order until one answers (or asks the user something).
async fn call_task(services: &Services, thread_id: &str, turn: usize, job: Job) -> Outcome {
    let policy = &services.calls;
    let mut attempts = 0;
    let mut last_error = "no agent could take the task".to_owned();
    for agent in &job.agents {
        for attempt in 1..=policy.attempts.max(1) {
            attempts += 1;
            let request = job.request(thread_id, turn, agent, attempts);
            match call_agent(services, agent, &request).await {
                Call::Answered(output) => {
                    let outcome = TaskOutcome::Done {
                        agent_id: agent.card.id.clone(),
                        output,
                    };
                    return Outcome::Done(job.result(services, outcome, attempts));
                }
                Call::Asked {
                    question,
                    task_id,
                    context_id,
                } => {
                    return Outcome::Asked {
                        task_id: job.task_id,
                        agent_id: agent.card.id.clone(),
                        question: format!("{} asks: {question}", agent.card.name),
                        remote_task_id: task_id,
                        context_id,
                    };
                }
                Call::Failed { error, then } => {
                    tracing::warn!(task = %job.task_id, agent = %agent.card.id, attempt, error = %error, "agent call failed");
                    last_error = error;
                    if then == AfterFailure::NextAgent {
                        break;
                    }
                }
            }
            if attempt < policy.attempts {
                tokio::time::sleep(backoff(policy.backoff, attempt)).await;
            }
        }
    }
    let outcome = TaskOutcome::Failed {
        agent_id: job.agents.first().map(|a| a.card.id.clone()),
        reason: last_error,
    };
    Outcome::Done(job.result(services, outcome, attempts))
}

/// One call of one agent within the policy's timeout, recorded in the agent's measured health.
async fn call_agent(services: &Services, agent: &Attempt, request: &AgentRequest) -> Call {
    let timeout = services.calls.timeout;
    let name = &agent.card.name;
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(timeout, services.agents.call(&agent.card, request)).await;
    let elapsed = started.elapsed();
    let call = match reply {
        Ok(Ok(AgentReply::Completed(output))) => Call::Answered(output),
        Ok(Ok(AgentReply::InputRequired {
            question,
            task_id,
            context_id,
        })) => Call::Asked {
            question,
            task_id,
            context_id,
        },
        Ok(Ok(AgentReply::Failed(reason))) => Call::Failed {
            error: format!("{name} failed: {reason}"),
            then: AfterFailure::NextAgent,
        },
        Ok(Err(e)) => Call::Failed {
            then: if e.is_retryable() {
                AfterFailure::Retry
            } else {
                AfterFailure::NextAgent
            },
            error: format!("{name}: {e}"),
        },
        Err(_) => Call::Failed {
            error: format!("{name} did not answer within {} ms", timeout.as_millis()),
            then: AfterFailure::Retry,
        },
    };
    services
        .directory
        .record_call(&agent.card.id, call.reach(), elapsed);
    call
}

/// `base * 2^(attempt-1)` plus up to half of that again, so retries from many threads spread out.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = exp.mul_f64(f64::from(nanos % 1000) / 2000.0);
    exp + jitter
}
