//! `rank_agents`: orders each task's candidates; the first becomes the task's agent, the rest its
//! fallbacks. A task nothing fits becomes a question naming what the directory can do.

use super::{MAX_CLARIFICATIONS, NodeError, Services};
use crate::state::{Node, QuestionKind, ThreadState};

/// Ranks, keeps `max_results` per task, and snapshots the cards they name into the state.
pub fn run(services: &Services, state: &mut ThreadState) -> Result<Node, NodeError> {
    let directory = &services.directory;
    for candidates in state.candidates.values_mut() {
        let mut ranked = directory.rank(std::mem::take(candidates));
        ranked.truncate(state.max_results.max(1));
        *candidates = ranked;
    }
    state.agents = state
        .candidates
        .values()
        .flatten()
        .filter_map(|c| {
            Some((
                c.agent_id.clone(),
                directory.get(&c.agent_id)?.as_ref().clone(),
            ))
        })
        .collect();
    let unmatched = state.tasks.iter().find(|t| {
        state.candidates.get(&t.id).is_none_or(Vec::is_empty)
            && state
                .answers_for(&t.id)
                .filter(|a| a.question.kind == QuestionKind::NoAgent)
                .count()
                < MAX_CLARIFICATIONS
    });
    if let Some(task) = unmatched {
        let question = format!(
            "I couldn't find an agent for \"{}\". The directory has: {}. What would you like me to do instead?",
            task.description,
            directory.summary()
        );
        state.ask(Some(task.id.clone()), QuestionKind::NoAgent, question);
        return Ok(Node::WaitForUserInput);
    }
    Ok(Node::PlanExecution)
}
