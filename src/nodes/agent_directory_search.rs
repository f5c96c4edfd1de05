//! `agent_directory_search`: candidates for each task from the directory's full-text index.

use super::{NodeError, Services};
use crate::state::{Node, ThreadState};

/// Searches cards by the task's keywords, restricted to cards with one of its capabilities.
pub fn run(services: &Services, state: &mut ThreadState) -> Result<Node, NodeError> {
    state.candidates.clear();
    for task in &state.tasks {
        let found = services
            .directory
            .search(&task.keywords, &task.capabilities)?;
        state.candidates.insert(task.id.clone(), found);
    }
    Ok(Node::RankAgents)
}
