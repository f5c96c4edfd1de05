//! Calling agents. One `AgentClient` trait; the dispatcher picks the implementation from the
//! card's URL (`builtin://` for the demo agents inside the binary; network transports join it).

pub mod builtin;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::directory::card::AgentCard;

/// One call of one agent for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRequest {
    pub thread_id: String,
    pub task_id: String,
    pub skill_id: Option<String>,
    /// The task in the user's words, followed by the output of the tasks it depends on.
    pub text: String,
    /// The skill's inputs as the planner found them.
    pub inputs: BTreeMap<String, String>,
    /// `thread/task/attempt`: lets an agent recognise a call repeated after a crash.
    pub idempotency_key: String,
}

/// What an agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReply {
    /// The task is done; the text is the agent's answer.
    Completed(String),
    /// The agent refused or failed the task for a reason a fallback will not fix.
    Failed(String),
}

/// A call that did not produce an answer; the engine retries or falls back to the next agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no client for agent url {0}")]
    UnsupportedUrl(String),
    #[error("unknown built-in agent {0}")]
    UnknownBuiltin(String),
    #[error("agent did not answer within {0} ms")]
    Timeout(u64),
}

/// A transport to agents.
#[async_trait]
pub trait AgentClient: Send + Sync {
    /// Sends `request` to the agent described by `card`.
    async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError>;
}

/// Routes each call to the client for the card's URL scheme.
#[derive(Clone)]
pub struct AgentDispatcher {
    builtin: Arc<builtin::BuiltinAgents>,
}

impl AgentDispatcher {
    /// A dispatcher that knows the built-in demo agents.
    pub fn new(builtin: Arc<builtin::BuiltinAgents>) -> Self {
        AgentDispatcher { builtin }
    }

    /// The demo agents, for counters in tests and benchmarks.
    pub fn builtin(&self) -> &Arc<builtin::BuiltinAgents> {
        &self.builtin
    }
}

#[async_trait]
impl AgentClient for AgentDispatcher {
    async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        if card.url.starts_with(builtin::SCHEME) {
            self.builtin.call(card, request).await
        } else {
            Err(AgentError::UnsupportedUrl(card.url.clone()))
        }
    }
}
