//! The data model of a thread: one plain serde value that the store checkpoints after every node.
//!
//! Nothing in here holds a handle, a trait object or anything else that cannot round-trip through
//! JSON; that is what makes a thread survive restarts (the system Baton replaces failed exactly
//! there).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::Owner;
use crate::card::AgentCard;

/// A webhook URL a client gave with a start request, already checked against the outbound URL
/// policy by the API (`api/chat.rs`), so the engine and the store only carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Wraps a URL the caller has checked (it parses as http(s) and the policy allows it).
    pub fn checked(url: String) -> Self {
        WebhookUrl(url)
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Identifies a task inside one turn of a thread (`t1`, `t2`, …), stable across re-planning.
///
/// A newtype rather than a string so that a task id is never mixed up with an agent's id or a
/// question's, and so that building `t{n}` and reading `n` back live in one place. It orders like
/// the string it wraps (`t10` before `t2`), as the maps keyed by it always have.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "t1")]
pub struct TaskId(String);

impl TaskId {
    /// The id of the `n`th task of a turn, counting from 1 (`TaskId::nth(3)` is `t3`).
    pub fn nth(n: usize) -> Self {
        TaskId(format!("t{n}"))
    }

    /// Where the task stands in its turn, counting from 1 (`t3` → 3); `None` for an id not made
    /// by [`TaskId::nth`] (a model may answer anything).
    pub fn ordinal(&self) -> Option<usize> {
        self.0
            .strip_prefix('t')?
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
    }

    /// The id as the wire and the agents see it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TaskId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Names one Baton process: the lease holder of a run, the writer of a checkpoint, the caller of
/// an agent. One type for all three, so a process is never compared with a string of another kind.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new(id: impl Into<String>) -> Self {
        WorkerId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a thread stands; these exact strings go over the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    /// A run is executing (or was cut short and will be resumed).
    Processing,
    /// The thread is paused on a question only the user can answer.
    PendingUserInput,
    /// The turn finished with a final response; a new prompt may start another turn.
    Completed,
    /// The turn failed; `error` says why. A new prompt may start another turn.
    Error,
    /// The user stopped the turn (`POST /api/threads/{id}/cancel`); nothing more runs on it. A
    /// new prompt may start another turn.
    Cancelled,
}

impl ThreadStatus {
    /// The wire string, also stored in the database's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Processing => "processing",
            ThreadStatus::PendingUserInput => "pending_user_input",
            ThreadStatus::Completed => "completed",
            ThreadStatus::Error => "error",
            ThreadStatus::Cancelled => "cancelled",
        }
    }

    /// A finished turn accepts a new prompt on the same thread.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ThreadStatus::Completed | ThreadStatus::Error | ThreadStatus::Cancelled
        )
    }

    /// Every status, in the order of a thread's life.
    pub const ALL: [ThreadStatus; 5] = [
        ThreadStatus::Processing,
        ThreadStatus::PendingUserInput,
        ThreadStatus::Completed,
        ThreadStatus::Error,
        ThreadStatus::Cancelled,
    ];
}

/// A name that is not one of the enum's wire strings (a damaged row, a newer writer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    kind: &'static str,
    name: String,
}

impl UnknownName {
    /// The variant of `all` whose wire string is `name`, for the enums' `FromStr`.
    fn find<T: Copy>(
        all: &[T],
        wire: fn(T) -> &'static str,
        kind: &'static str,
        name: &str,
    ) -> Result<T, UnknownName> {
        all.iter()
            .copied()
            .find(|v| wire(*v) == name)
            .ok_or_else(|| UnknownName {
                kind,
                name: name.to_owned(),
            })
    }
}

impl std::fmt::Display for ThreadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ThreadStatus {
    type Err = UnknownName;

    /// Reads the wire string back (the database's `status` column).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find(&ThreadStatus::ALL, ThreadStatus::as_str, "thread status", s)
    }
}

/// The nodes of the flow; a checkpoint records which one runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    ParsePrompt,
    MatchCapabilities,
    AgentDirectorySearch,
    RankAgents,
    PlanExecution,
    ExecuteBatch,
    WaitForUserInput,
    AggregateResponses,
    /// The turn is over; nothing runs until a new prompt arrives.
    End,
}

impl Node {
    /// The snake_case name used in events, logs and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Node::ParsePrompt => "parse_prompt",
            Node::MatchCapabilities => "match_capabilities",
            Node::AgentDirectorySearch => "agent_directory_search",
            Node::RankAgents => "rank_agents",
            Node::PlanExecution => "plan_execution",
            Node::ExecuteBatch => "execute_batch",
            Node::WaitForUserInput => "wait_for_user_input",
            Node::AggregateResponses => "aggregate_responses",
            Node::End => "end",
        }
    }

    /// Whether running the node has effects outside Baton that a crash must not make it repeat
    /// (agents are called): the checkpoints before it must be durable before it starts. The
    /// other nodes only compute, so a crash before their predecessor's checkpoint commits just
    /// runs them again.
    pub fn has_outside_effects(self) -> bool {
        matches!(self, Node::ExecuteBatch)
    }

    /// Every node, in flow order.
    pub const ALL: [Node; 9] = [
        Node::ParsePrompt,
        Node::MatchCapabilities,
        Node::AgentDirectorySearch,
        Node::RankAgents,
        Node::PlanExecution,
        Node::ExecuteBatch,
        Node::WaitForUserInput,
        Node::AggregateResponses,
        Node::End,
    ];
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Node {
    type Err = UnknownName;

    /// Reads the snake_case name back (the database's `next_node` column).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find(&Node::ALL, Node::as_str, "node", s)
    }
}

/// One unit of work the planner found in the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    /// Short machine-friendly name shown as `task_name` (for example `weather-paris`).
    pub name: String,
    /// The user's words for this task, with clarifications appended as they arrive.
    pub description: String,
    /// Keywords the planner extracted; the directory search runs on them.
    pub keywords: Vec<String>,
    /// Skill tags the task needs (the keywords the directory knows as tags).
    pub capabilities: Vec<String>,
    /// Tasks whose output this one consumes; they run in an earlier batch.
    pub depends_on: Vec<TaskId>,
    /// What the user said besides the requests ("I am a Leo"): sent to the agent with the task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
}

/// One ranked agent for a task, with the skill that matched best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub agent_id: String,
    pub skill_id: Option<String>,
    /// Full-text relevance (BM25) of the agent's card for the task.
    pub relevance: f32,
    /// How much of what the task asks for the card covers, 0 to 1 (comparable across tasks,
    /// unlike `relevance`): the planner refuses candidates below its floor.
    #[serde(default)]
    pub fit: f32,
    /// Why the planner chose this agent, in one line (kept so a run can be understood later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The arguments the planner decided for this agent's skill; `None` while undecided or when
    /// a required one is missing (such an agent is not called).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<BTreeMap<String, String>>,
}

impl Candidate {
    /// A search hit before the planner has judged it.
    pub fn hit(agent_id: String, skill_id: Option<String>, relevance: f32, fit: f32) -> Self {
        Candidate {
            agent_id,
            skill_id,
            relevance,
            fit,
            reason: None,
            arguments: None,
        }
    }
}

/// The planner decisions a thread records, so a fallback or a model's cost is visible later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Tasks from the request, or a question first.
    Parse,
    /// Which candidate agents fit a task.
    Choose,
    /// The arguments of a skill call.
    Arguments,
    /// The final response.
    Compose,
}

impl DecisionKind {
    /// The snake_case name used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Parse => "parse",
            DecisionKind::Choose => "choose",
            DecisionKind::Arguments => "arguments",
            DecisionKind::Compose => "compose",
        }
    }
}

/// A decision the configured planner could not make, made by the rules planner instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerFallback {
    pub decision: DecisionKind,
    /// The task it was about, when it was about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// What went wrong (invalid output, timeout, the model was down, …).
    pub reason: String,
    /// The model could not be reached or did not answer in time (rather than answering
    /// wrongly): the turn's later decisions go straight to the rules planner.
    #[serde(default)]
    pub model_unreachable: bool,
}

/// What the planner cost and where it fell back, for this thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannerRecord {
    /// Requests sent to the model (retries included).
    #[serde(default)]
    pub model_calls: u32,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// Time spent waiting for the model, in milliseconds.
    #[serde(default)]
    pub model_ms: u64,
    /// Decisions made by the rules planner because the configured one failed, oldest first.
    #[serde(default)]
    pub fallbacks: Vec<PlannerFallback>,
}

/// What an agent call produced for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "TaskResultWire", into = "TaskResultWire")]
pub struct TaskResult {
    pub task_id: TaskId,
    /// Whether an agent answered, and what came of it.
    pub outcome: TaskOutcome,
    /// Calls made for this task, fallbacks included.
    pub attempts: u32,
    /// Which Baton process made the call; shows after a restart that no answer was fetched twice.
    pub worker: WorkerId,
    /// The task description the agent saw; a re-planned task with other words is called again.
    pub input: String,
    /// How long the task's calls took, retries and fallbacks included; `None` for a task no
    /// agent was called for, and for results stored before it was measured.
    pub latency_ms: Option<u64>,
}

/// How a task's calls ended. An enum so that a failure without an agent cannot pretend to have
/// one, and an answer cannot lack one; the wire keeps the flat `ok`/`agent_id`/`output` fields.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// An agent (the primary, or a fallback when it failed) answered.
    Done { agent_id: String, output: String },
    /// Every agent failed, or none could take the task (then there is no agent to name).
    Failed {
        agent_id: Option<String>,
        reason: String,
    },
}

impl TaskOutcome {
    /// The task has an answer its dependants and the final response can use.
    pub fn is_done(&self) -> bool {
        matches!(self, TaskOutcome::Done { .. })
    }

    /// The agent's answer; `None` for a failed task.
    pub fn output(&self) -> Option<&str> {
        match self {
            TaskOutcome::Done { output, .. } => Some(output),
            TaskOutcome::Failed { .. } => None,
        }
    }

    /// The agent that answered, or the first one tried for a failed task.
    pub fn agent_id(&self) -> Option<&str> {
        match self {
            TaskOutcome::Done { agent_id, .. } => Some(agent_id),
            TaskOutcome::Failed { agent_id, .. } => agent_id.as_deref(),
        }
    }

    /// The answer, or the reason the task failed: what a person is shown either way.
    pub fn text(&self) -> &str {
        match self {
            TaskOutcome::Done { output, .. } => output,
            TaskOutcome::Failed { reason, .. } => reason,
        }
    }
}

/// `TaskResult` as stored and sent: the flat fields the API has always had, in their order
/// (`agent_id` empty when no agent was tried, `output` the reason when `ok` is false).
#[derive(Serialize, Deserialize)]
struct TaskResultWire {
    task_id: TaskId,
    agent_id: String,
    ok: bool,
    output: String,
    attempts: u32,
    worker: WorkerId,
    input: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
}

impl From<TaskResultWire> for TaskResult {
    fn from(w: TaskResultWire) -> Self {
        let outcome = if w.ok {
            TaskOutcome::Done {
                agent_id: w.agent_id,
                output: w.output,
            }
        } else {
            TaskOutcome::Failed {
                agent_id: Some(w.agent_id).filter(|id| !id.is_empty()),
                reason: w.output,
            }
        };
        TaskResult {
            task_id: w.task_id,
            outcome,
            attempts: w.attempts,
            worker: w.worker,
            input: w.input,
            latency_ms: w.latency_ms,
        }
    }
}

impl From<TaskResult> for TaskResultWire {
    fn from(r: TaskResult) -> Self {
        let (ok, agent_id, output) = match r.outcome {
            TaskOutcome::Done { agent_id, output } => (true, agent_id, output),
            TaskOutcome::Failed { agent_id, reason } => {
                (false, agent_id.unwrap_or_default(), reason)
            }
        };
        TaskResultWire {
            task_id: r.task_id,
            agent_id,
            ok,
            output,
            attempts: r.attempts,
            worker: r.worker,
            input: r.input,
            latency_ms: r.latency_ms,
        }
    }
}

/// Why the thread is asking; decides how the answer is folded back into the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QuestionKind {
    /// The user asked for guidance or said they were unsure.
    Guidance,
    /// Nothing in the directory fits the task; the answer replaces the task's words.
    NoAgent,
    /// The chosen skill needs an input that neither the prompt nor the answers supply.
    MissingInput { input: String },
    /// An agent asked (A2A `input-required` / `auth-required`); the answer goes back to it.
    Agent { agent_id: String },
}

impl QuestionKind {
    /// Questions from agents are answered to the agent; every other one changes the plan.
    pub fn is_agent(&self) -> bool {
        matches!(self, QuestionKind::Agent { .. })
    }
}

/// An agent's side of a conversation that waits for the user: where to send the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteTask {
    pub agent_id: String,
    /// The agent's task id (A2A `taskId`), when it gave one.
    pub task_id: Option<String>,
    /// The agent's conversation id (A2A `contextId`), when it gave one.
    pub context_id: Option<String>,
    /// The question it asked.
    pub question_id: String,
    /// The user's answer, once given; the next call of the task sends it.
    pub answer: Option<String>,
    /// The question as the agent worded it (the thread's question adds the agent's name): after
    /// a crash, the agent's task still asking it means the answer never arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<String>,
}

/// A call about to leave, checkpointed before it does (write-ahead): after a crash or a takeover,
/// the run that finds it without a result asks the agent where the call got to before sending it
/// again, so an agent that ignores idempotency keys does not do the work twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallIntent {
    /// The agent the call goes to first (fallbacks are not checkpointed: they are rare, and a
    /// fallback agent found failed is called again like any other).
    pub agent_id: String,
    /// The idempotency key of the first attempt, which is also the A2A `messageId`: a resend is
    /// recognisably the same message.
    pub message_id: String,
    /// The A2A `contextId` the call is sent in: Baton's own choice for a first call (so the task
    /// can be found by context), the agent's for an answer to its question.
    pub context_id: Option<String>,
    /// The agent's task, known for an answer to its question (A2A `taskId`).
    #[serde(default)]
    pub task_id: Option<String>,
    /// For an answer: the agent's question as it worded it, to tell whether the answer arrived.
    #[serde(default)]
    pub asked: Option<String>,
}

/// A question waiting for (or answered by) the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    /// The task the question is about (its answer is folded into that task).
    pub task_id: Option<TaskId>,
    #[serde(flatten)]
    pub kind: QuestionKind,
    pub text: String,
}

/// A user's answer together with the question it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub question: Question,
    pub text: String,
}

/// An earlier, finished turn of the same thread: context for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub prompt: String,
    pub answers: Vec<Answer>,
    pub final_response: Option<String>,
    /// The A2A `messageId` that opened the turn (Baton called as an agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<String>,
}

/// Where a forked thread came from: the thread and the checkpoint version its state was copied
/// from (`POST /api/threads/{id}/fork`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForkPoint {
    pub thread_id: String,
    pub version: i64,
}

/// Everything a thread knows. Serialized whole into every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadState {
    pub thread_id: String,
    pub status: ThreadStatus,
    pub prompt: String,
    pub max_results: usize,
    /// How many earlier turns the thread has in the store's turn log (`Store::turns`). The head
    /// carries this count, not the turns, so a checkpoint is the same size at the thousandth turn
    /// as at the first.
    #[serde(default)]
    pub earlier_turns: usize,
    /// Earlier turns not yet in the turn log, oldest first, positions `earlier_turns` onwards:
    /// the turn a new turn closes, until the write that appends it (`take_unlogged_turns`), or
    /// every earlier turn of a state written before the turn log existed, which kept them here
    /// under the JSON name `history`. Such a state loads as it is and its next write moves them.
    #[serde(default, rename = "history", skip_serializing_if = "Vec::is_empty")]
    pub unlogged_turns: Vec<Turn>,
    /// The thread's first prompt, once it has earlier turns (the thread list shows it without
    /// reading the turn log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_prompt: Option<String>,
    /// Answers given in this turn, oldest first.
    #[serde(default)]
    pub answers: Vec<Answer>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Ranked candidates per task, best first (the first is the task's agent).
    #[serde(default)]
    pub candidates: BTreeMap<TaskId, Vec<Candidate>>,
    /// Snapshot of every card named in `candidates`, so a thread shows the agent it used even if
    /// the directory changes later.
    #[serde(default)]
    pub agents: BTreeMap<String, Arc<AgentCard>>,
    /// Batches of task ids: tasks in one batch run in parallel, batches run in order.
    #[serde(default)]
    pub plan: Vec<Vec<TaskId>>,
    /// Index in `plan` of the next batch to execute.
    #[serde(default)]
    pub next_batch: usize,
    #[serde(default)]
    pub results: BTreeMap<TaskId, TaskResult>,
    /// Questions waiting for the user, oldest first. Planner questions come one at a time; agents
    /// of one batch may ask several at once, and the thread goes on once all are answered.
    #[serde(default)]
    pub pending_questions: Vec<Question>,
    /// Agent conversations waiting for the user's answer, by task.
    #[serde(default)]
    pub remote_tasks: BTreeMap<TaskId, RemoteTask>,
    /// Calls of the current batch that left (or were about to) without a result yet, by task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intents: BTreeMap<TaskId, CallIntent>,
    /// Bumped for every question asked, to give each a unique id within the thread.
    #[serde(default)]
    pub questions_asked: u32,
    pub final_response: Option<String>,
    pub error: Option<String>,
    /// What the planner cost (model calls, tokens, latency) and where it fell back.
    #[serde(default)]
    pub planner: PlannerRecord,
    /// Set on a fork, for its whole life (new turns carry it): where it was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkPoint>,
    /// The A2A `messageId` that opened this turn, when Baton is called as an agent: the same
    /// message sent again finds this turn instead of starting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<String>,
    /// Where Baton POSTs the thread's response when it pauses for input or finishes; kept from
    /// turn to turn until a start request names another. The store's outbox trigger reads it
    /// under this name (`$.webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookUrl>,
    /// The API key's owner that created the thread (kept for its whole life, and in the store's
    /// `owner` column for the list); `None` when it was made with authentication off. Only the
    /// owner and admins see the thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl ThreadState {
    /// The first turn of a new thread, for `prompt`.
    pub fn new_turn(thread_id: String, prompt: String, max_results: usize) -> Self {
        ThreadState {
            thread_id,
            status: ThreadStatus::Processing,
            prompt,
            max_results,
            earlier_turns: 0,
            unlogged_turns: Vec::new(),
            first_prompt: None,
            answers: Vec::new(),
            tasks: Vec::new(),
            candidates: BTreeMap::new(),
            agents: BTreeMap::new(),
            plan: Vec::new(),
            next_batch: 0,
            results: BTreeMap::new(),
            pending_questions: Vec::new(),
            remote_tasks: BTreeMap::new(),
            intents: BTreeMap::new(),
            questions_asked: 0,
            final_response: None,
            error: None,
            planner: PlannerRecord::default(),
            forked_from: None,
            opened_by: None,
            webhook: None,
            owner: None,
        }
    }

    /// This state as the first state of a fork named `thread_id`, forked at `version` and owned
    /// by `owner` (whoever forked it): the same
    /// conversation, detached from the agent-side tasks of the original. Two branches answering
    /// one agent task would send it two answers, so a question an agent asked stays, but its
    /// answer goes to the agent as a new call (the request and the answer) rather than to the
    /// original's task; calls the original had in flight are forgotten (the fork makes its own,
    /// under its own idempotency keys).
    pub fn forked(&self, thread_id: String, version: i64, owner: Option<Owner>) -> ThreadState {
        let mut state = self.clone();
        state.owner = owner;
        state.forked_from = Some(ForkPoint {
            thread_id: self.thread_id.clone(),
            version,
        });
        state.thread_id = thread_id;
        state.intents.clear();
        for remote in state.remote_tasks.values_mut() {
            remote.task_id = None;
            remote.context_id = None;
        }
        state
    }

    /// The next turn of this finished thread, for `prompt`: everything of this turn is left
    /// behind (its answers, tasks, candidates, agents, results, planner record), and this turn
    /// becomes the last earlier one, unlogged until the new turn's first write appends it. Only
    /// what belongs to the thread is carried: the fork point, the webhook and the owner.
    pub fn next_turn(&self, prompt: String, max_results: usize) -> ThreadState {
        let mut next = ThreadState::new_turn(self.thread_id.clone(), prompt, max_results);
        next.earlier_turns = self.earlier_turns;
        next.unlogged_turns.clone_from(&self.unlogged_turns);
        next.unlogged_turns.push(self.as_turn());
        next.first_prompt = Some(self.thread_prompt().to_owned());
        next.forked_from.clone_from(&self.forked_from);
        next.webhook.clone_from(&self.webhook);
        next.owner.clone_from(&self.owner);
        next
    }

    /// How many earlier turns the thread has, logged or not: the current turn's position,
    /// counted from 0 (Baton's A2A task ids name turns so).
    pub fn turn_index(&self) -> usize {
        self.earlier_turns + self.unlogged_turns.len()
    }

    /// The thread's first prompt.
    pub fn thread_prompt(&self) -> &str {
        self.first_prompt
            .as_deref()
            .or_else(|| self.unlogged_turns.first().map(|t| t.prompt.as_str()))
            .unwrap_or(&self.prompt)
    }

    /// Takes the unlogged earlier turns out of the state and counts them in `earlier_turns`:
    /// the checkpoint written with this state must append them to the turn log (at positions
    /// `earlier_turns - taken.len()` onwards) in the same statement.
    pub fn take_unlogged_turns(&mut self) -> Vec<Turn> {
        let taken = std::mem::take(&mut self.unlogged_turns);
        self.earlier_turns += taken.len();
        taken
    }

    /// This finished turn, as an earlier turn of the next one.
    pub fn as_turn(&self) -> Turn {
        Turn {
            prompt: self.prompt.clone(),
            answers: self.answers.clone(),
            final_response: self.final_response.clone(),
            opened_by: self.opened_by.clone(),
        }
    }

    /// Puts a question to the user; the engine pauses the thread after this node. Returns its id.
    pub fn ask(&mut self, task_id: Option<TaskId>, kind: QuestionKind, text: String) -> String {
        self.questions_asked += 1;
        let id = format!("q{}", self.questions_asked);
        self.pending_questions.push(Question {
            id: id.clone(),
            task_id,
            kind,
            text,
        });
        id
    }

    /// The oldest question waiting for the user (what `question_for_user` shows).
    pub fn pending_question(&self) -> Option<&Question> {
        self.pending_questions.first()
    }

    /// The task with this id, if the plan still has it.
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.tasks.iter().find(|t| &t.id == id)
    }

    /// Answers to questions about `task_id` in this turn, oldest first.
    pub fn answers_for<'a>(
        &'a self,
        task_id: &'a TaskId,
    ) -> impl DoubleEndedIterator<Item = &'a Answer> + 'a {
        self.answers
            .iter()
            .filter(move |a| a.question.task_id.as_ref() == Some(task_id))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_ids_are_the_strings_they_always_were() {
        let id = TaskId::nth(3);
        assert_eq!(id.to_string(), "t3");
        assert_eq!(serde_json::to_value(&id).expect("json"), json!("t3"));
        assert_eq!(id.ordinal(), Some(3));
        let from_model: TaskId = serde_json::from_value(json!("x1")).expect("id");
        assert_eq!(from_model.ordinal(), None);
        let zero: TaskId = serde_json::from_value(json!("t0")).expect("id");
        assert_eq!(zero.ordinal(), None);
    }

    #[test]
    fn maps_keyed_by_task_id_keep_the_string_order() {
        let map: BTreeMap<TaskId, u8> = [(TaskId::nth(2), 2), (TaskId::nth(10), 10)].into();
        assert_eq!(
            serde_json::to_string(&map).expect("json"),
            r#"{"t10":10,"t2":2}"#
        );
        assert_eq!(map.get("t2"), Some(&2));
    }

    #[test]
    fn task_results_keep_their_wire_shape() {
        let done = json!({"task_id": "t1", "agent_id": "demo.weather", "ok": true,
            "output": "sunny", "attempts": 1, "worker": "w", "input": "weather"});
        let failed = json!({"task_id": "t2", "agent_id": "", "ok": false,
            "output": "No agent", "attempts": 0, "worker": "w", "input": "fly"});
        let tried = json!({"task_id": "t3", "agent_id": "demo.x", "ok": false,
            "output": "timeout", "attempts": 3, "worker": "w", "input": "x"});
        for wire in [done, failed, tried] {
            let result: TaskResult = serde_json::from_value(wire.clone()).expect("result");
            assert_eq!(serde_json::to_value(&result).expect("json"), wire);
        }
        let result: TaskResult = serde_json::from_str(
            r#"{"task_id":"t1","agent_id":"a","ok":true,"output":"o","attempts":1,"worker":"w","input":"i"}"#,
        )
        .expect("result");
        assert_eq!(
            serde_json::to_string(&result).expect("json"),
            r#"{"task_id":"t1","agent_id":"a","ok":true,"output":"o","attempts":1,"worker":"w","input":"i"}"#,
            "same fields in the same order"
        );
        let timed = json!({"task_id": "t1", "agent_id": "a", "ok": true, "output": "o",
            "attempts": 1, "worker": "w", "input": "i", "latency_ms": 42});
        let result: TaskResult = serde_json::from_value(timed.clone()).expect("result");
        assert_eq!(result.latency_ms, Some(42));
        assert_eq!(serde_json::to_value(&result).expect("json"), timed);
        let failed: TaskResult = serde_json::from_value(json!({"task_id": "t2", "agent_id": "",
            "ok": false, "output": "No agent", "attempts": 0, "worker": "w", "input": "fly"}))
        .expect("result");
        assert_eq!(
            failed.outcome,
            TaskOutcome::Failed {
                agent_id: None,
                reason: "No agent".into()
            }
        );
    }

    #[test]
    fn statuses_and_nodes_read_back_their_names() {
        for status in ThreadStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).expect("json"),
                json!(status.as_str())
            );
        }
        for node in Node::ALL {
            assert_eq!(node.as_str().parse(), Ok(node));
            assert_eq!(
                serde_json::to_value(node).expect("json"),
                json!(node.as_str())
            );
        }
        assert!("takeover".parse::<Node>().is_err());
    }

    #[test]
    fn states_stored_before_write_ahead_calls_still_load() {
        let remote: RemoteTask = serde_json::from_value(json!({"agent_id": "a", "task_id": "x",
            "context_id": "c", "question_id": "q1", "answer": null}))
        .expect("an old remote task");
        assert_eq!(remote.asked, None);
        let mut state = ThreadState::new_turn("t".into(), "hi".into(), 5);
        let value = serde_json::to_value(&state).expect("json");
        assert!(value.get("intents").is_none(), "no intents, no field");
        assert_eq!(
            serde_json::from_value::<ThreadState>(value).expect("state"),
            state
        );
        state.intents.insert(
            TaskId::nth(1),
            CallIntent {
                agent_id: "a".into(),
                message_id: "t/1/t1/1".into(),
                context_id: Some("c".into()),
                task_id: None,
                asked: None,
            },
        );
        let value = serde_json::to_value(&state).expect("json");
        assert_eq!(value["intents"]["t1"]["message_id"], "t/1/t1/1");
        assert_eq!(
            serde_json::from_value::<ThreadState>(value).expect("state"),
            state
        );
    }

    #[test]
    fn a_fork_is_detached_from_the_agent_tasks_of_its_origin() {
        let mut state = ThreadState::new_turn("a".into(), "hi".into(), 5);
        state.intents.insert(
            TaskId::nth(1),
            CallIntent {
                agent_id: "x".into(),
                message_id: "a/1/t1/1".into(),
                context_id: Some("c".into()),
                task_id: None,
                asked: None,
            },
        );
        let remote = RemoteTask {
            agent_id: "x".into(),
            task_id: Some("agent-task".into()),
            context_id: Some("agent-context".into()),
            question_id: "q1".into(),
            answer: None,
            asked: Some("Which day?".into()),
        };
        state.remote_tasks.insert(TaskId::nth(2), remote.clone());
        let fork = state.forked("b".into(), 7, None);
        assert_eq!(fork.thread_id, "b");
        assert_eq!(
            fork.forked_from,
            Some(ForkPoint {
                thread_id: "a".into(),
                version: 7
            })
        );
        assert!(fork.intents.is_empty());
        let detached = &fork.remote_tasks[&TaskId::nth(2)];
        assert_eq!((&detached.task_id, &detached.context_id), (&None, &None));
        assert_eq!(
            detached.question_id, remote.question_id,
            "the question stays"
        );
        assert_eq!(
            state.remote_tasks[&TaskId::nth(2)],
            remote,
            "the origin is untouched"
        );
        let value = serde_json::to_value(&fork).expect("json");
        assert_eq!(
            value["forked_from"],
            json!({"thread_id": "a", "version": 7})
        );
        assert!(
            serde_json::to_value(&state)
                .expect("json")
                .get("forked_from")
                .is_none()
        );
        assert_eq!(
            serde_json::from_value::<ThreadState>(value).expect("state"),
            fork
        );
    }

    #[test]
    fn a_state_written_before_the_turn_log_loads_and_gives_up_its_turns_once() {
        // The shape a previous Baton wrote: every earlier turn inside the state, as `history`.
        let old = json!({"thread_id": "t", "status": "completed", "prompt": "third",
            "max_results": 5, "final_response": "3", "error": null,
            "history": [
                {"prompt": "first", "answers": [], "final_response": "1"},
                {"prompt": "second", "answers": [], "final_response": "2", "opened_by": "m2"}]});
        let mut state: ThreadState = serde_json::from_value(old).expect("an old state loads");
        assert_eq!(state.turn_index(), 2);
        assert_eq!(state.thread_prompt(), "first");
        let next = state.next_turn("fourth".into(), 5);
        assert_eq!(next.turn_index(), 3);
        assert_eq!(next.thread_prompt(), "first");
        let taken = state.take_unlogged_turns();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[1].opened_by.as_deref(), Some("m2"));
        assert_eq!((state.earlier_turns, state.turn_index()), (2, 2));
        assert!(state.take_unlogged_turns().is_empty(), "moved once");
        let value = serde_json::to_value(&state).expect("json");
        assert!(value.get("history").is_none(), "{value}");
        assert_eq!(value["earlier_turns"], 2);
    }

    #[test]
    fn a_new_turn_leaves_the_last_ones_work_behind() {
        let mut state = ThreadState::new_turn("t".into(), "hi".into(), 5);
        state.status = ThreadStatus::Completed;
        state.final_response = Some("hello".into());
        state.tasks.push(Task {
            id: TaskId::nth(1),
            name: "greet".into(),
            description: "hi".into(),
            keywords: Vec::new(),
            capabilities: Vec::new(),
            depends_on: Vec::new(),
            context: Vec::new(),
        });
        state.questions_asked = 3;
        let mut next = state.next_turn("again".into(), 5);
        assert_eq!(next.unlogged_turns, vec![state.as_turn()]);
        next.take_unlogged_turns();
        let mut fresh = ThreadState::new_turn("t".into(), "again".into(), 5);
        fresh.earlier_turns = 1;
        fresh.first_prompt = Some("hi".into());
        assert_eq!(
            next, fresh,
            "only the count and the first prompt carry over"
        );
    }
}
