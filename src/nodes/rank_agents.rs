//! `rank_agents`: orders each task's candidates and lets the planner judge which fit; the first
//! becomes the task's agent, the rest its fallbacks. A task nothing fits becomes a question naming
//! what the directory can do, and no agent is called for it.

use super::{NodeError, Services};
use crate::planner::MAX_CLARIFICATIONS;
use crate::state::{DecisionKind, Node, QuestionKind, ThreadState};

/// Ranks, keeps the candidates the planner judges fit (at most `max_results` per task), and
/// snapshots the cards they name into the state.
pub async fn run(services: &Services, state: &mut ThreadState) -> Result<Node, NodeError> {
    let directory = &services.directory;
    let tasks = state.tasks.clone();
    for task in &tasks {
        let found = state.candidates.remove(&task.id).unwrap_or_default();
        let ranked = directory.rank(found);
        let mut chosen = if ranked.is_empty() {
            ranked
        } else {
            services.planner.choose(state, task, ranked).await?.record(
                state,
                DecisionKind::Choose,
                Some(&task.id),
            )
        };
        chosen.truncate(state.max_results.max(1));
        state.candidates.insert(task.id.clone(), chosen);
    }
    state.agents = state
        .candidates
        .values()
        .flatten()
        .filter_map(|c| Some((c.agent_id.clone(), directory.get(&c.agent_id)?)))
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
