//! `match_capabilities`: each task gets the skill tags it needs.

use super::{NodeError, Services};
use crate::state::{Node, ThreadState};

/// A task's capabilities are its keywords that some card in the directory lists as a tag.
pub fn run(services: &Services, state: &mut ThreadState) -> Result<Node, NodeError> {
    for task in &mut state.tasks {
        task.capabilities = services.directory.capabilities_of(&task.keywords);
    }
    Ok(Node::AgentDirectorySearch)
}
