//! Calling agents. The engine sees one `AgentClient` trait and one reply type whatever the
//! agent speaks; the dispatcher picks the transport from the card's protocol (the demo agents
//! inside the binary, A2A in `crate::agents::a2a`, original REST, MCP).

pub mod a2a;
pub mod blocked;
pub mod builtin;
pub mod http;
pub mod mcp;
pub mod policy;
pub mod progress;
pub mod resolver;
pub mod rest;
pub mod serve;
pub mod sse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::agents::a2a::A2aClient;
use crate::agents::a2a::wire::{RpcError, WireError};
use crate::card::{AgentCard, Protocol};
use crate::state::CallIntent;
use progress::ProgressSink;

/// One call of one agent for one task.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub thread_id: String,
    pub task_id: String,
    pub skill_id: Option<String>,
    /// The task in the user's words, followed by the output of the tasks it depends on.
    pub text: String,
    /// The skill's inputs as the planner found them.
    pub inputs: BTreeMap<String, String>,
    /// `thread/turn/task/attempt`: lets an agent recognise a call repeated after a crash. A2A
    /// calls also use it as the `messageId`.
    pub idempotency_key: String,
    /// The conversation a first call opens (A2A `contextId`), chosen by Baton and checkpointed
    /// before the call leaves, so the agent's task can be found by it after a crash.
    pub context_id: Option<String>,
    /// The user's answer to a question this agent asked for this task, to send to the same
    /// agent-side task.
    pub follow_up: Option<FollowUp>,
    /// Where the agent's progress notes go while it works (streaming A2A agents report some).
    pub progress: ProgressSink,
}

/// An answer going back to the agent task that asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// The agent's task id (A2A `taskId`).
    pub task_id: Option<String>,
    /// The agent's conversation id (A2A `contextId`).
    pub context_id: Option<String>,
    pub answer: String,
}

impl FollowUp {
    /// Whether the answer goes back on the agent's own task. Without a task (a fork detaches its
    /// questions from the original's agent tasks) the answer opens a new call carrying the
    /// request and the answer.
    pub fn continues_task(&self) -> bool {
        self.task_id.is_some()
    }
}

/// An agent-side task still open for a Baton thread (waiting for the user's answer, or being
/// polled): when the user cancels the thread, the agent is told to cancel it too.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTask {
    pub card: AgentCard,
    /// The agent's task id (A2A `taskId`).
    pub task_id: String,
}

/// What an agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReply {
    /// The task is done; the text is the agent's answer.
    Completed(String),
    /// The agent refused or failed the task; the next-ranked agent may do better.
    Failed(String),
    /// The agent needs something from the user before it can finish (A2A `input-required` or
    /// `auth-required`); the answer goes back to the same agent-side task.
    InputRequired {
        question: String,
        task_id: Option<String>,
        context_id: Option<String>,
    },
}

/// Where a call found in a checkpoint without a result got to, as the agent tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reattached {
    /// The agent has the call's task; this is where it stands (waited for while it worked).
    Found {
        reply: AgentReply,
        /// The task's history holds the call's message: an answer to a question arrived even if
        /// the agent asks the same question again.
        has_message: bool,
    },
    /// The agent knows no task for the call: it never arrived, so send it.
    Unknown,
    /// The agent (or its transport) offers no way to look a call up: send it again, with the
    /// same idempotency key, and count on the agent to recognise it.
    NoLookup,
}

/// A source error of any kind, for failures Baton only reports (building a request).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call that did not produce an answer; the engine retries or falls back to the next agent.
/// The messages quote their source because they reach the user as a task's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("unknown built-in agent {0}")]
    UnknownBuiltin(String),
    /// The connection was not made within the transport's connect timeout (the whole call's
    /// deadline is the engine's, which reports it itself).
    #[error("agent did not answer in time")]
    Timeout {
        /// How long the request waited before giving up.
        elapsed: Duration,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot reach the agent: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("cannot reach the agent: MCP session: {0}")]
    McpSession(#[source] Box<rmcp::service::ClientInitializeError>),
    /// The URL policy forbids the agent's URL.
    #[error(transparent)]
    Refused(#[from] crate::agents::policy::UrlRefused),
    #[error("the agent answered HTTP {0}: {1}")]
    Status(u16, String),
    #[error("the agent's answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the agent's answer is not understood: not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the agent's answer is not understood: {0}")]
    A2aWire(#[from] WireError),
    /// An MCP request (`tools/list`, `tools/call`) failed after the session was open.
    #[error("the agent's answer is not understood: {step}: {source}")]
    Mcp {
        step: &'static str,
        #[source]
        source: Box<rmcp::ServiceError>,
    },
    /// The answer is well-formed but unusable (an MCP server without tools).
    #[error("the agent's answer is not understood: {0}")]
    BadResponse(String),
    /// The card cannot serve the request (no such endpoint or tool).
    #[error("cannot build the request: {0}")]
    BadRequest(String),
    /// The request could not be encoded (a header value, tool arguments).
    #[error("cannot build the request: {0}")]
    Unencodable(#[source] BoxError),
    #[error("the agent answered {0}")]
    Rpc(#[source] RpcError),
}

impl AgentError {
    /// Whether trying the same agent again could help (transport trouble, timeouts, 5xx); other
    /// failures go straight to the next-ranked agent.
    pub fn is_retryable(&self) -> bool {
        if self.refusal().is_some() {
            return false;
        }
        match self {
            AgentError::Transport(_) | AgentError::Timeout { .. } | AgentError::McpSession(_) => {
                true
            }
            AgentError::Status(code, _) => *code >= 500 || *code == 429,
            _ => false,
        }
    }

    /// The URL policy's refusal behind this failure, if that is what it is (also inside an MCP
    /// session that could not open because its name resolved to a blocked address).
    pub fn refusal(&self) -> Option<&crate::agents::policy::UrlRefused> {
        match self {
            AgentError::Refused(refused) => Some(refused),
            other => std::error::Error::source(other)
                .and_then(crate::agents::policy::UrlRefused::found_in),
        }
    }
}

/// Calling an agent whatever it speaks: the engine, its tests and the demo server depend on this
/// trait rather than on a transport.
#[async_trait]
pub trait AgentClient: Send + Sync {
    /// Sends `request` to the agent described by `card`.
    async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError>;

    /// Asks the agent to cancel its task `task_id`, because the user cancelled the thread that
    /// opened it. Only A2A has agent-side tasks; the other protocols have nothing to cancel.
    async fn cancel(&self, _card: &AgentCard, _task_id: &str) -> Result<(), AgentError> {
        Ok(())
    }

    /// Asks the agent to cancel whatever task it runs in `context_id` (a call whose task id Baton
    /// has not been told yet). Only A2A agents have contexts.
    async fn cancel_in_context(
        &self,
        _card: &AgentCard,
        _context_id: &str,
    ) -> Result<(), AgentError> {
        Ok(())
    }

    /// Asks the agent where the call of `intent` got to, before sending it again after a crash.
    /// Only A2A can say; other transports rely on the idempotency key.
    /// `progress` takes the agent's progress notes while Baton waits for the call.
    async fn reattach(
        &self,
        _card: &AgentCard,
        _intent: &CallIntent,
        _progress: &ProgressSink,
    ) -> Result<Reattached, AgentError> {
        Ok(Reattached::NoLookup)
    }
}

/// The one `AgentClient` the engine holds: it routes each call to the client for the card's
/// protocol, and those clients share one HTTP stack and what they learnt about agents.
#[derive(Clone)]
pub struct AgentDispatcher {
    builtin: Arc<builtin::BuiltinAgents>,
    a2a: Arc<A2aClient>,
    rest: Arc<rest::RestClient>,
    mcp: Arc<mcp::McpClient>,
    http: http::HttpAgents,
}

impl AgentDispatcher {
    /// A dispatcher for the built-in demo agents and network agents over `http`.
    pub fn new(builtin: Arc<builtin::BuiltinAgents>, http: http::HttpAgents) -> Self {
        AgentDispatcher {
            builtin,
            a2a: Arc::new(A2aClient::new(http.clone())),
            rest: Arc::new(rest::RestClient::new(http.clone())),
            mcp: Arc::new(mcp::McpClient::new(http.clone())),
            http,
        }
    }

    /// The demo agents, for counters in tests and benchmarks.
    pub fn builtin(&self) -> &Arc<builtin::BuiltinAgents> {
        &self.builtin
    }

    /// The MCP client (tool discovery).
    pub fn mcp(&self) -> &mcp::McpClient {
        &self.mcp
    }

    /// The agent tasks this process is polling for `thread_id` right now (only A2A agents keep
    /// tasks open while they work).
    pub fn tasks_in_flight(&self, thread_id: &str) -> Vec<OpenTask> {
        self.a2a.tasks_in_flight(thread_id)
    }

    /// The outbound HTTP transport (card discovery, URL policy).
    pub fn http(&self) -> &http::HttpAgents {
        &self.http
    }
}

#[async_trait]
impl AgentClient for AgentDispatcher {
    async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        match card.protocol {
            Protocol::Builtin => self.builtin.call(card, request).await,
            Protocol::A2a => self.a2a.call(card, request).await,
            Protocol::Rest => self.rest.call(card, request).await,
            Protocol::Mcp => self.mcp.call(card, request).await,
        }
    }

    async fn cancel(&self, card: &AgentCard, task_id: &str) -> Result<(), AgentError> {
        match card.protocol {
            Protocol::A2a => self.a2a.cancel(card, task_id).await,
            Protocol::Builtin | Protocol::Rest | Protocol::Mcp => Ok(()),
        }
    }

    async fn cancel_in_context(
        &self,
        card: &AgentCard,
        context_id: &str,
    ) -> Result<(), AgentError> {
        match card.protocol {
            Protocol::A2a => self.a2a.cancel_in_context(card, context_id).await,
            Protocol::Builtin | Protocol::Rest | Protocol::Mcp => Ok(()),
        }
    }

    async fn reattach(
        &self,
        card: &AgentCard,
        intent: &CallIntent,
        progress: &ProgressSink,
    ) -> Result<Reattached, AgentError> {
        match card.protocol {
            Protocol::A2a => self.a2a.reattach(card, intent, progress).await,
            Protocol::Builtin | Protocol::Rest | Protocol::Mcp => Ok(Reattached::NoLookup),
        }
    }
}

/// Timeouts and retries of agent calls: agents are other people's services, slow or failing,
/// and a thread must still finish.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    /// Longest wait for one agent call.
    pub timeout: Duration,
    /// Calls per agent before falling back to the next-ranked one.
    pub attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_secs(30),
            attempts: 2,
            backoff: Duration::from_millis(100),
        }
    }
}
