//! `plan_execution`: checks each task's inputs, then orders the tasks into batches: tasks in a
//! batch run in parallel, and a task that consumes another's output runs in a later batch.

use std::collections::{BTreeMap, BTreeSet};

use super::{NodeError, Services};
use crate::planner::Inputs;
use crate::planner::MAX_CLARIFICATIONS;
use crate::state::{
    DecisionKind, Node, QuestionKind, TaskId, TaskOutcome, TaskResult, ThreadState, Turn,
};

/// A candidate that needs no question may go first when its fit is at least this share of the
/// first candidate's.
const READY_INSTEAD: f32 = 0.8;

/// Decides each candidate's arguments, asks for a missing required input of a task's first
/// agent, fails tasks that cannot run, and writes the batches. `earlier` is the planner's
/// context: the thread's last earlier turns.
pub async fn run(
    services: &Services,
    state: &mut ThreadState,
    earlier: &[Turn],
) -> Result<Node, NodeError> {
    let mut failed: Vec<(TaskId, String)> = Vec::new();
    let tasks = state.tasks.clone();
    for task in &tasks {
        let candidates = state.candidates.get(&task.id).cloned().unwrap_or_default();
        if candidates.is_empty() {
            failed.push((
                task.id.clone(),
                format!("No agent in the directory can do \"{}\".", task.description),
            ));
            continue;
        }
        if state
            .results
            .get(&task.id)
            .is_some_and(|r| r.input == task.description)
        {
            // Done in an earlier pass with these very words; nothing to decide again.
            continue;
        }
        let mut decided = Vec::with_capacity(candidates.len());
        let mut primary_missing = None;
        for (rank, mut candidate) in candidates.into_iter().enumerate() {
            let card = state.agents.get(&candidate.agent_id).cloned();
            let skill = card
                .as_ref()
                .zip(candidate.skill_id.as_deref())
                .and_then(|(card, id)| card.skill(id).cloned());
            candidate.arguments = match (card, skill) {
                (Some(card), Some(skill)) => {
                    let inputs = services
                        .planner
                        .arguments(state, earlier, task, &card, &skill)
                        .await?
                        .record(state, DecisionKind::Arguments, Some(&task.id));
                    match inputs {
                        Inputs::Ready(found) => Some(found),
                        Inputs::Missing { input, question } => {
                            if rank == 0 {
                                primary_missing = Some((input, question));
                            }
                            None
                        }
                    }
                }
                _ => Some(BTreeMap::new()),
            };
            decided.push(candidate);
        }
        // Ask only when needed: an agent that fits about as well and can act on what the user
        // already said goes first, rather than asking for what the first one lacks.
        if primary_missing.is_some()
            && let Some(best) = decided.first().map(|c| c.fit)
            && let Some(ready) = decided
                .iter()
                .position(|c| c.arguments.is_some() && c.fit >= best * READY_INSTEAD)
        {
            let candidate = decided.remove(ready);
            decided.insert(0, candidate);
            primary_missing = None;
        }
        state.candidates.insert(task.id.clone(), decided);
        if let Some((input, question)) = primary_missing {
            let asked = state
                .answers_for(&task.id)
                .filter(|a| matches!(&a.question.kind, QuestionKind::MissingInput { input: i } if *i == input))
                .count();
            if asked < MAX_CLARIFICATIONS {
                state.ask(
                    Some(task.id.clone()),
                    QuestionKind::MissingInput { input },
                    question,
                );
                return Ok(Node::WaitForUserInput);
            }
            failed.push((
                task.id.clone(),
                format!("Missing {input}; it was asked for but not given."),
            ));
        }
    }
    for (task_id, reason) in failed {
        let input = state
            .task(&task_id)
            .map(|t| t.description.clone())
            .unwrap_or_default();
        state.results.insert(
            task_id.clone(),
            TaskResult {
                task_id,
                outcome: TaskOutcome::Failed {
                    agent_id: None,
                    reason,
                },
                attempts: 0,
                worker: services.worker.clone(),
                input,
                latency_ms: None,
            },
        );
    }
    state.plan = batches(state);
    state.next_batch = 0;
    Ok(if state.plan.is_empty() {
        Node::AggregateResponses
    } else {
        Node::ExecuteBatch
    })
}

/// Layers the tasks that still need a call: a task goes one batch after the latest batch of the
/// tasks it depends on.
fn batches(state: &ThreadState) -> Vec<Vec<TaskId>> {
    let done: BTreeSet<&TaskId> = state
        .tasks
        .iter()
        .filter(|t| {
            state
                .results
                .get(&t.id)
                .is_some_and(|r| r.input == t.description)
        })
        .map(|t| &t.id)
        .collect();
    let mut level: BTreeMap<&TaskId, usize> = BTreeMap::new();
    let mut plan: Vec<Vec<TaskId>> = Vec::new();
    for task in &state.tasks {
        let deps_level = task
            .depends_on
            .iter()
            .filter_map(|d| level.get(d).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        if done.contains(&task.id) {
            continue;
        }
        level.insert(&task.id, deps_level);
        if plan.len() <= deps_level {
            plan.resize(deps_level + 1, Vec::new());
        }
        plan[deps_level].push(task.id.clone());
    }
    plan.retain(|b| !b.is_empty());
    plan
}
