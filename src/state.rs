//! The data model of a thread: one plain serde value that the store checkpoints after every node.
//!
//! Nothing in here holds a handle, a trait object or anything else that cannot round-trip through
//! JSON; that is what makes a thread survive restarts (the system Baton replaces failed exactly
//! there).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::card::AgentCard;

/// Identifies a task inside one turn of a thread (`t1`, `t2`, …), stable across re-planning.
pub type TaskId = String;

/// Names one Baton process: the lease holder of a run, the writer of a checkpoint, the caller of
/// an agent. One type for all three, so a process is never compared with a string of another kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl ThreadStatus {
    /// The wire string, also stored in the database's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Processing => "processing",
            ThreadStatus::PendingUserInput => "pending_user_input",
            ThreadStatus::Completed => "completed",
            ThreadStatus::Error => "error",
        }
    }

    /// A finished turn accepts a new prompt on the same thread.
    pub fn is_finished(self) -> bool {
        matches!(self, ThreadStatus::Completed | ThreadStatus::Error)
    }
}

/// The nodes of the flow; a checkpoint records which one runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
pub struct TaskResult {
    pub task_id: TaskId,
    /// The agent that produced the output (a fallback when the primary failed).
    pub agent_id: String,
    pub ok: bool,
    /// The agent's answer, or the reason the task failed.
    pub output: String,
    /// Calls made for this task, fallbacks included.
    pub attempts: u32,
    /// Which Baton process made the call; shows after a restart that no answer was fetched twice.
    pub worker: String,
    /// The task description the agent saw; a re-planned task with other words is called again.
    pub input: String,
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
}

/// Everything a thread knows. Serialized whole into every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadState {
    pub thread_id: String,
    pub status: ThreadStatus,
    pub prompt: String,
    pub max_results: usize,
    /// Earlier turns of this thread, oldest first.
    #[serde(default)]
    pub history: Vec<Turn>,
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
    pub agents: BTreeMap<String, AgentCard>,
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
    /// Bumped for every question asked, to give each a unique id within the thread.
    #[serde(default)]
    pub questions_asked: u32,
    pub final_response: Option<String>,
    pub error: Option<String>,
    /// What the planner cost (model calls, tokens, latency) and where it fell back.
    #[serde(default)]
    pub planner: PlannerRecord,
}

impl ThreadState {
    /// A fresh turn for `prompt`, carrying the thread's earlier turns as context.
    pub fn new_turn(
        thread_id: String,
        prompt: String,
        max_results: usize,
        history: Vec<Turn>,
    ) -> Self {
        ThreadState {
            thread_id,
            status: ThreadStatus::Processing,
            prompt,
            max_results,
            history,
            answers: Vec::new(),
            tasks: Vec::new(),
            candidates: BTreeMap::new(),
            agents: BTreeMap::new(),
            plan: Vec::new(),
            next_batch: 0,
            results: BTreeMap::new(),
            pending_questions: Vec::new(),
            remote_tasks: BTreeMap::new(),
            questions_asked: 0,
            final_response: None,
            error: None,
            planner: PlannerRecord::default(),
        }
    }

    /// This finished turn, as context for the next one.
    pub fn as_turn(&self) -> Turn {
        Turn {
            prompt: self.prompt.clone(),
            answers: self.answers.clone(),
            final_response: self.final_response.clone(),
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
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// Answers to questions about `task_id` in this turn, oldest first.
    pub fn answers_for<'a>(
        &'a self,
        task_id: &'a str,
    ) -> impl DoubleEndedIterator<Item = &'a Answer> + 'a {
        self.answers
            .iter()
            .filter(move |a| a.question.task_id.as_deref() == Some(task_id))
    }
}
