//! `execute_batch`: calls the agents of one batch concurrently, with a timeout per call, retries
//! with backoff, and fallback to the next-ranked agent. Each result is checkpointed as it arrives,
//! so a crash mid-batch never calls again an agent that already answered.
//!
//! An agent may answer with a question (A2A `input-required`): the task keeps no result, the
//! question joins the thread's pending questions, and once every question of the batch has an
//! answer the batch runs again: tasks with results are skipped, and each asking agent gets the
//! user's answer on its own agent-side task.
//!
//! Calls are written ahead: before a batch's calls leave, one checkpoint records each call's
//! intent (agent, `messageId`, `contextId`, agent-side task). A run that resumes the batch after a
//! crash or a takeover and finds an intent without a result asks the agent where that call got
//! to (see [`AgentClient::reattach`]) before sending anything again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{NodeError, Progress, Services};
use crate::agents::progress::ProgressSink;
use crate::agents::{AgentClient, AgentReply, AgentRequest, FollowUp, Reattached};
use crate::card::{AgentCard, Protocol};
use crate::directory::health::Reach;
use crate::metrics::CallOutcome;
use crate::planner::extract::{self, InputSpec, Kind};
use crate::state::{
    CallIntent, Node, QuestionKind, RemoteTask, TaskId, TaskOutcome, TaskResult, ThreadState,
};

/// One agent a task may be sent to, with the inputs found for its skill.
struct Attempt {
    card: Arc<AgentCard>,
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
    /// The call as checkpointed before it leaves; `None` when no agent can take the task.
    intent: Option<CallIntent>,
    /// The intent was found in the checkpoint: an earlier run may have sent the call already.
    resumed: bool,
    /// Where the agents' progress notes on this task go.
    progress: ProgressSink,
    /// Where a call under a new intent is sent to be checkpointed before it leaves.
    rewrites: Option<mpsc::Sender<Rewrite>>,
}

/// Progress notes waiting to be relayed; more are dropped (see [`ProgressSink`]).
const NOTES_BUFFER: usize = 64;

/// Intents waiting to be checkpointed: one per task at most, since its call waits for it.
const REWRITES_BUFFER: usize = 16;

/// A task's call about to leave under another intent than the one checkpointed (a retry has
/// its own `messageId`, a fallback its own agent): the run checkpoints it, then says so.
struct Rewrite {
    task_id: TaskId,
    intent: CallIntent,
    written: oneshot::Sender<()>,
}

/// What calling a task's agents came to.
enum Outcome {
    Done(TaskResult),
    Asked {
        task_id: TaskId,
        agent_id: String,
        question: String,
        /// The question as the agent worded it.
        asked: String,
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
    let thread_id = state.thread_id.clone();
    let turn = state.turn_index() + 1;
    let jobs: Vec<Job> = batch.iter().filter_map(|id| job(state, id, turn)).collect();
    // Write-ahead: one checkpoint holds the intents of the whole batch before any call leaves.
    // Only calls the agent can be asked about need one: any other is sent again after a crash
    // with the same idempotency key, intent or not.
    let mut written = false;
    for job in jobs.iter().filter(|job| !job.resumed) {
        match job.intent.as_ref().filter(|_| job.can_reattach()) {
            Some(intent) => {
                state.intents.insert(job.task_id.clone(), intent.clone());
                written = true;
            }
            // An intent of another call (an earlier plan's) says nothing about this one.
            None => written |= state.intents.remove(&job.task_id).is_some(),
        }
    }
    if written {
        progress.save(state).await?;
    }
    // What agents report while they work is relayed as it comes, between their outcomes; a
    // call about to leave under another intent (a retry, a fallback agent) is checkpointed first.
    let (notes, mut noted) = mpsc::channel(NOTES_BUFFER);
    let (rewrites, mut to_rewrite) = mpsc::channel::<Rewrite>(REWRITES_BUFFER);
    let mut calls: FuturesUnordered<_> = jobs
        .into_iter()
        .map(|mut job| {
            job.progress = ProgressSink::new(notes.clone(), job.task_id.to_string());
            job.rewrites = Some(rewrites.clone());
            timed(call_task(services, &thread_id, turn, job))
        })
        .collect();
    drop((notes, rewrites));
    let mut asked = false;
    loop {
        let outcome = tokio::select! {
            outcome = calls.next() => match outcome {
                Some(outcome) => outcome,
                None => break,
            },
            Some(note) = noted.recv() => {
                progress.relay(state, note);
                continue;
            }
            Some(rewrite) = to_rewrite.recv() => {
                state.intents.insert(rewrite.task_id, rewrite.intent);
                progress.save(state).await?;
                // The call waits for this before it leaves; gone, it has nothing to wait for.
                let _ = rewrite.written.send(());
                continue;
            }
        };
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
            state.intents.remove(&result.task_id);
            state.remote_tasks.remove(&result.task_id);
            state.results.insert(result.task_id.clone(), result);
        }
        Outcome::Asked {
            task_id,
            agent_id,
            question,
            asked,
            remote_task_id,
            context_id,
        } => {
            state.intents.remove(&task_id);
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
                    asked: Some(asked),
                },
            );
        }
    }
}

/// The calls a task still needs; `None` when it already has an answer for its current words.
fn job(state: &ThreadState, task_id: &TaskId, turn: usize) -> Option<Job> {
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
    let agents: Vec<Attempt> = state
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
    // An intent left by an earlier run for this very call (same first message, an agent still
    // in the list) means the call may have left already: reattach.
    let message_id = idempotency_key(&state.thread_id, turn, &call_name, 1);
    let this_call = call_prefix(&state.thread_id, turn, &call_name);
    let earlier = state.intents.get(task_id).filter(|i| {
        i.message_id.starts_with(&this_call) && agents.iter().any(|a| a.card.id == i.agent_id)
    });
    let resumed = earlier.is_some();
    let intent = earlier.cloned().or_else(|| {
        let first = agents.first()?;
        Some(CallIntent {
            agent_id: first.card.id.clone(),
            message_id,
            // An answer to a task the agent named goes back to it; any other call (a fork's
            // answer, detached from the original's task, included) opens a context of its own.
            context_id: match &remote {
                Some((r, _)) if r.task_id.is_some() => r.context_id.clone(),
                _ => Some(uuid::Uuid::now_v7().to_string()),
            },
            task_id: remote.as_ref().and_then(|(r, _)| r.task_id.clone()),
            asked: remote
                .as_ref()
                .filter(|(r, _)| r.task_id.is_some())
                .and_then(|(r, _)| r.asked.clone()),
        })
    });
    Some(Job {
        task_id: task_id.clone(),
        description: task.description.clone(),
        text,
        agents,
        follow_up,
        call_name,
        intent,
        resumed,
        progress: ProgressSink::none(),
        rewrites: None,
    })
}

/// `thread/turn/call/attempt`: names one call, the same in every run that makes it.
fn idempotency_key(thread_id: &str, turn: usize, call_name: &str, attempts: u32) -> String {
    format!("{}{attempts}", call_prefix(thread_id, turn, call_name))
}

/// `thread/turn/call/`: what the keys of every attempt of one call start with.
fn call_prefix(thread_id: &str, turn: usize, call_name: &str) -> String {
    format!("{thread_id}/{turn}/{call_name}/")
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
            idempotency_key: idempotency_key(thread_id, turn, &self.call_name, attempts),
            // A first call opens the conversation its intent names (an answer goes to the
            // agent's own, in `follow_up`).
            context_id: self
                .intent
                .as_ref()
                .filter(|_| self.follow_up.as_ref().is_none_or(|f| !f.continues_task()))
                .and_then(|i| i.context_id.clone()),
            follow_up: self.follow_up.clone(),
            progress: self.progress.clone(),
        }
    }

    /// Checkpoints the intent of `request` to `agent` before it leaves, when it is not the one
    /// `written` already (a retry's new `messageId`, a fallback agent) and the agent can be
    /// asked after a crash where the call got to (A2A). Other agents keep the intent written:
    /// it says what an earlier agent was asked.
    async fn write_ahead(
        &self,
        written: &mut Option<CallIntent>,
        agent: &Attempt,
        request: &AgentRequest,
    ) {
        let (Some(base), Some(rewrites)) = (written.as_ref(), &self.rewrites) else {
            return;
        };
        if agent.card.protocol != Protocol::A2a || base.message_id == request.idempotency_key {
            return;
        }
        let intent = CallIntent {
            agent_id: agent.card.id.clone(),
            message_id: request.idempotency_key.clone(),
            ..base.clone()
        };
        let (done, wait) = oneshot::channel();
        let rewrite = Rewrite {
            task_id: self.task_id.clone(),
            intent: intent.clone(),
            written: done,
        };
        // A run that stopped takes no more rewrites, and sends no more calls either.
        if rewrites.send(rewrite).await.is_ok() && wait.await.is_ok() {
            *written = Some(intent);
        }
    }

    /// Whether the call's first agent can be asked where a call got to (A2A), so its intent is
    /// worth a checkpoint.
    fn can_reattach(&self) -> bool {
        self.agents
            .first()
            .is_some_and(|a| a.card.protocol == Protocol::A2a)
    }

    /// The outcome of `agent` asking the user `question` on its task `task_id`.
    fn asked(
        &self,
        agent: &Attempt,
        question: String,
        task_id: Option<String>,
        context_id: Option<String>,
    ) -> Outcome {
        Outcome::Asked {
            task_id: self.task_id.clone(),
            agent_id: agent.card.id.clone(),
            question: format!("{} asks: {question}", agent.card.name),
            asked: question,
            remote_task_id: task_id,
            context_id,
        }
    }

    /// The task's result once its calls are over.
    fn result(&self, services: &Services, outcome: TaskOutcome, attempts: u32) -> TaskResult {
        TaskResult {
            task_id: self.task_id.clone(),
            outcome,
            attempts,
            worker: services.worker.clone(),
            input: self.description.clone(),
            latency_ms: None,
        }
    }

    /// What the task comes to when `agent`'s call answered or asked; a failure is handed back
    /// with its reason and what to do next (retry, or the next agent).
    fn settle(
        &self,
        services: &Services,
        agent: &Attempt,
        call: Call,
        attempts: u32,
    ) -> Result<Outcome, (String, AfterFailure)> {
        match call {
            Call::Answered(output) => {
                let outcome = TaskOutcome::Done {
                    agent_id: agent.card.id.clone(),
                    output,
                };
                Ok(Outcome::Done(self.result(services, outcome, attempts)))
            }
            Call::Asked {
                question,
                task_id,
                context_id,
            } => Ok(self.asked(agent, question, task_id, context_id)),
            Call::Failed { error, then } => Err((error, then)),
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
    /// What an agent's reply means for the task; `name` is the agent's, for failure reasons.
    fn of(reply: AgentReply, name: &str) -> Call {
        match reply {
            AgentReply::Completed(output) => Call::Answered(output),
            AgentReply::InputRequired {
                question,
                task_id,
                context_id,
            } => Call::Asked {
                question,
                task_id,
                context_id,
            },
            AgentReply::Failed(reason) => Call::Failed {
                error: format!("{name} failed: {reason}"),
                then: AfterFailure::NextAgent,
            },
        }
    }

    /// What the call came to, for the metrics.
    fn outcome(&self) -> CallOutcome {
        match self {
            Call::Answered(_) => CallOutcome::Answered,
            Call::Asked { .. } => CallOutcome::Asked,
            Call::Failed { .. } => CallOutcome::Failed,
        }
    }

    /// Whether the agent did its part (answering or asking), for its measured success rate.
    fn reach(&self) -> Reach {
        match self {
            Call::Failed { .. } => Reach::Failed,
            _ => Reach::Reached,
        }
    }
}

/// The task's outcome with how long its calls took (what watchers of the thread are shown); a
/// task no agent was called for has no latency.
async fn timed(calls: impl std::future::Future<Output = Outcome>) -> Outcome {
    let started = std::time::Instant::now();
    let mut outcome = calls.await;
    if let Outcome::Done(result) = &mut outcome
        && result.attempts > 0
    {
        result.latency_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    }
    outcome
}

/// Calls the task's agents in rank order until one answers (or asks the user something).
async fn call_task(services: &Services, thread_id: &str, turn: usize, job: Job) -> Outcome {
    let policy = &services.calls;
    let mut attempts = 0;
    let mut last_error = "no agent could take the task".to_owned();
    let mut start = 0;
    if let Some((position, call)) = reattach(services, &job).await {
        attempts += 1;
        let agent = &job.agents[position];
        match job.settle(services, agent, call, attempts) {
            Ok(outcome) => return outcome,
            Err((error, _)) => {
                tracing::warn!(task = %job.task_id, agent = %agent.card.id, error = %error, "agent call found failed after a restart");
                last_error = error;
                start = position + 1;
            }
        }
    }
    let mut written = job.intent.clone();
    for agent in job.agents.iter().skip(start) {
        for attempt in 1..=policy.attempts.max(1) {
            attempts += 1;
            let request = job.request(thread_id, turn, agent, attempts);
            job.write_ahead(&mut written, agent, &request).await;
            let call = call_agent(services, agent, &request).await;
            match job.settle(services, agent, call, attempts) {
                Ok(outcome) => return outcome,
                Err((error, then)) => {
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

/// How long a resumed run gives an agent to show a call that may have left before the crash,
/// when a first lookup finds no trace of it. The dead process's request may still be queued at
/// the agent, or executing without being stored yet (the Python a2a-sdk stores a new task, or an
/// answer in its task's history, only once its executor's first event is processed, which lags
/// under load): sending the call at once would have it executed twice.
const SHOW_DELAY: Duration = Duration::from_secs(2);

/// What one lookup says of a call an earlier run may have sent.
enum Lookup {
    /// Where the call got to.
    Found(Call),
    /// No trace of it: the agent does not know the call, or its task still asks without the
    /// answer.
    NoTrace,
    /// The agent cannot say (no lookup, an error, no answer in time).
    CannotSay,
}

/// For a call an earlier run may have sent (its intent was in the checkpoint): where it got to,
/// as the agent tells it, with the position of its agent in the job's list. `None`: the call
/// must be sent (the agent never got it, cannot say, or did not get the user's answer).
async fn reattach(services: &Services, job: &Job) -> Option<(usize, Call)> {
    let intent = job.intent.as_ref().filter(|_| job.resumed)?;
    let position = job
        .agents
        .iter()
        .position(|a| a.card.id == intent.agent_id)?;
    let card = &job.agents[position].card;
    let mut lookup = look_up(services, job, card, intent).await;
    if matches!(lookup, Lookup::NoTrace) {
        // No trace may only mean not shown yet: look once more before sending.
        tokio::time::sleep(SHOW_DELAY).await;
        lookup = look_up(services, job, card, intent).await;
    }
    match lookup {
        Lookup::Found(call) => Some((position, call)),
        Lookup::NoTrace | Lookup::CannotSay => None,
    }
}

/// Asks `card`'s agent once where the call `intent` names got to.
async fn look_up(services: &Services, job: &Job, card: &AgentCard, intent: &CallIntent) -> Lookup {
    let timeout = services.calls.timeout;
    let found = tokio::time::timeout(
        timeout,
        services.agents.reattach(card, intent, &job.progress),
    )
    .await;
    let (reply, has_message) = match found {
        Ok(Ok(Reattached::Found { reply, has_message })) => (reply, has_message),
        Ok(Ok(Reattached::Unknown)) => return Lookup::NoTrace,
        Ok(Ok(Reattached::NoLookup)) => {
            tracing::info!(task = %job.task_id, agent = %card.id, "the agent cannot look calls up; sending again with the same idempotency key");
            return Lookup::CannotSay;
        }
        Ok(Err(e)) => {
            tracing::warn!(task = %job.task_id, agent = %card.id, error = %e, "cannot ask the agent where a call got to; sending it again");
            return Lookup::CannotSay;
        }
        Err(_) => {
            tracing::warn!(task = %job.task_id, agent = %card.id, "the agent did not say in time where a call got to; sending it again");
            return Lookup::CannotSay;
        }
    };
    // An answer whose task still asks the same question, without the answer in its history,
    // has not arrived.
    if let AgentReply::InputRequired { question, .. } = &reply
        && intent.task_id.is_some()
        && !has_message
        && intent
            .asked
            .as_deref()
            .is_none_or(|asked| asked == question)
    {
        return Lookup::NoTrace;
    }
    Lookup::Found(Call::of(reply, &card.name))
}

/// One call of one agent within the policy's timeout, recorded in the agent's measured health
/// and in the metrics, in a span naming the agent and the task.
async fn call_agent(services: &Services, agent: &Attempt, request: &AgentRequest) -> Call {
    let timeout = services.calls.timeout;
    let name = &agent.card.name;
    let span =
        tracing::info_span!("agent_call", agent_id = %agent.card.id, task_id = %request.task_id);
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(timeout, services.agents.call(&agent.card, request))
        .instrument(span)
        .await;
    let elapsed = started.elapsed();
    let call = match reply {
        Ok(Ok(reply)) => Call::of(reply, name),
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
    services
        .metrics
        .agent_call(&agent.card.id, call.outcome(), elapsed);
    call
}

/// The wait before the next call of the same agent: doubling from the policy's backoff, for at
/// most ten doublings, with jitter (see [`crate::backoff`]).
fn backoff(base: Duration, attempt: u32) -> Duration {
    crate::backoff::backoff(base, attempt, base.saturating_mul(1 << 10))
}
