//! The nodes of the flow, one file each. A node takes the thread's state, changes it, and says
//! which node runs next; the engine checkpoints after every node.

pub mod agent_directory_search;
pub mod aggregate_responses;
pub mod execute_batch;
pub mod match_capabilities;
pub mod parse_prompt;
pub mod plan_execution;
pub mod rank_agents;
pub mod wait_for_user_input;

use std::sync::Arc;

use async_trait::async_trait;

use crate::agents::progress::AgentProgress;
use crate::agents::{AgentDispatcher, CallPolicy};
use crate::directory::{Directory, DirectoryError};
use crate::metrics::Metrics;
use crate::planner::{Planner, PlannerError};
use crate::state::{Node, ThreadState, Turn, WorkerId};
use crate::store::StoreError;

/// What the nodes need from the rest of the system.
#[derive(Clone)]
pub struct Services {
    pub directory: Arc<Directory>,
    pub planner: Arc<dyn Planner>,
    pub agents: AgentDispatcher,
    /// This process: the lease holder and writer of its runs, named in task results (shows which
    /// process made a call).
    pub worker: WorkerId,
    pub calls: CallPolicy,
    /// Where runs, nodes, agent calls and questions are counted (the server's `/metrics`).
    pub metrics: Metrics,
}

/// Why a node could not finish; the thread ends in `error` with this message.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Planner(#[from] PlannerError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A progress checkpoint inside a node failed; the run stops and resumes later.
    #[error(transparent)]
    Checkpoint(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// Receives the state while a node is still running, to checkpoint partial progress (each agent
/// result as it arrives).
#[async_trait]
pub trait Progress: Send {
    async fn save(&mut self, state: &ThreadState) -> Result<(), StoreError>;

    /// Passes on what an agent said it is doing, for people watching; nothing is written.
    fn relay(&mut self, state: &ThreadState, note: AgentProgress);
}

/// Runs one node. `earlier` is the thread's last earlier turns, the planner's context.
pub async fn run(
    node: Node,
    services: &Services,
    state: &mut ThreadState,
    earlier: &[Turn],
    progress: &mut dyn Progress,
) -> Result<Node, NodeError> {
    match node {
        Node::ParsePrompt => parse_prompt::run(services, state, earlier).await,
        Node::MatchCapabilities => match_capabilities::run(services, state),
        Node::AgentDirectorySearch => agent_directory_search::run(services, state),
        Node::RankAgents => rank_agents::run(services, state).await,
        Node::PlanExecution => plan_execution::run(services, state, earlier).await,
        Node::ExecuteBatch => execute_batch::run(services, state, progress).await,
        Node::AggregateResponses => aggregate_responses::run(services, state).await,
        Node::WaitForUserInput | Node::End => Err(NodeError::Invalid(format!(
            "{} is not a runnable node",
            node.as_str()
        ))),
    }
}
