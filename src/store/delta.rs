//! Checkpoint history as reverse deltas: the head of a thread is stored whole, and each earlier
//! checkpoint as what turns its successor back into it. Growing lists (answers, tasks) are undone
//! by truncation, so a checkpoint costs what changed. Earlier turns are not in the state at all
//! (the store's turn log keeps them; the state counts them), so a new turn's undo holds the
//! previous turn once and a long thread stores O(turns) bytes.
//!
//! An undo is a JSON object `{field: {"set": old value} | {"truncate": old length}}` over the
//! top-level fields of `ThreadState`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::state::ThreadState;

/// What turns `next` back into `previous`.
pub fn undo(previous: &ThreadState, next: &ThreadState) -> Value {
    let mut out = Map::new();
    // Destructured so that a new field of ThreadState cannot be forgotten here.
    let ThreadState {
        thread_id,
        status,
        prompt,
        max_results,
        earlier_turns,
        unlogged_turns,
        first_prompt,
        answers,
        tasks,
        candidates,
        agents,
        plan,
        next_batch,
        results,
        pending_questions,
        remote_tasks,
        intents,
        questions_asked,
        final_response,
        error,
        planner,
        forked_from,
        opened_by,
        webhook,
        owner,
    } = previous;
    set_if_changed(&mut out, "thread_id", thread_id, &next.thread_id);
    set_if_changed(&mut out, "status", status, &next.status);
    set_if_changed(&mut out, "prompt", prompt, &next.prompt);
    set_if_changed(&mut out, "max_results", max_results, &next.max_results);
    set_if_changed(
        &mut out,
        "earlier_turns",
        earlier_turns,
        &next.earlier_turns,
    );
    list_if_changed(&mut out, "history", unlogged_turns, &next.unlogged_turns);
    set_if_changed(&mut out, "first_prompt", first_prompt, &next.first_prompt);
    list_if_changed(&mut out, "answers", answers, &next.answers);
    list_if_changed(&mut out, "tasks", tasks, &next.tasks);
    set_if_changed(&mut out, "candidates", candidates, &next.candidates);
    set_if_changed(&mut out, "agents", agents, &next.agents);
    list_if_changed(&mut out, "plan", plan, &next.plan);
    set_if_changed(&mut out, "next_batch", next_batch, &next.next_batch);
    set_if_changed(&mut out, "results", results, &next.results);
    set_if_changed(
        &mut out,
        "pending_questions",
        pending_questions,
        &next.pending_questions,
    );
    set_if_changed(&mut out, "remote_tasks", remote_tasks, &next.remote_tasks);
    set_if_changed(&mut out, "intents", intents, &next.intents);
    set_if_changed(
        &mut out,
        "questions_asked",
        questions_asked,
        &next.questions_asked,
    );
    set_if_changed(
        &mut out,
        "final_response",
        final_response,
        &next.final_response,
    );
    set_if_changed(&mut out, "error", error, &next.error);
    set_if_changed(&mut out, "planner", planner, &next.planner);
    set_if_changed(&mut out, "forked_from", forked_from, &next.forked_from);
    set_if_changed(&mut out, "opened_by", opened_by, &next.opened_by);
    set_if_changed(&mut out, "webhook", webhook, &next.webhook);
    set_if_changed(&mut out, "owner", owner, &next.owner);
    Value::Object(out)
}

fn set_if_changed<T: PartialEq + Serialize>(
    out: &mut Map<String, Value>,
    name: &str,
    old: &T,
    new: &T,
) {
    if old != new {
        out.insert(name.to_owned(), json!({ "set": old }));
    }
}

fn list_if_changed<T: PartialEq + Serialize>(
    out: &mut Map<String, Value>,
    name: &str,
    old: &[T],
    new: &[T],
) {
    if old == new {
        return;
    }
    let change = if new.len() > old.len() && new.starts_with(old) {
        json!({ "truncate": old.len() })
    } else {
        json!({ "set": old })
    };
    out.insert(name.to_owned(), change);
}

/// Applies an undo to a state in its JSON form. Unknown shapes are ignored field by field, so a
/// damaged history row degrades one field of one past checkpoint, not the whole thread.
pub fn apply(state: &mut Value, undo: &Value) {
    let (Some(state), Some(undo)) = (state.as_object_mut(), undo.as_object()) else {
        return;
    };
    for (field, change) in undo {
        if let Some(old) = change.get("set") {
            state.insert(field.clone(), old.clone());
        } else if let Some(len) = change.get("truncate").and_then(Value::as_u64)
            && let Some(list) = state.get_mut(field).and_then(Value::as_array_mut)
        {
            list.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ThreadStatus, Turn};

    fn state() -> ThreadState {
        ThreadState::new_turn("t".into(), "weather in Paris".into(), 5)
    }

    #[test]
    fn undo_restores_the_previous_state() {
        let previous = state();
        let mut next = previous.clone();
        next.status = ThreadStatus::Completed;
        next.final_response = Some("done".into());
        next.unlogged_turns.push(Turn {
            prompt: "earlier".into(),
            answers: Vec::new(),
            final_response: None,
            opened_by: None,
        });
        next.take_unlogged_turns();
        let undo = undo(&previous, &next);
        assert_eq!(undo["earlier_turns"], json!({"set": 0}));
        let mut value = serde_json::to_value(&next).expect("json");
        apply(&mut value, &undo);
        let back: ThreadState = serde_json::from_value(value).expect("state");
        assert_eq!(back, previous);
    }

    #[test]
    fn the_write_that_moves_an_old_states_turns_out_undoes_back_to_the_old_shape() {
        let mut old = state();
        old.unlogged_turns = vec![Turn {
            prompt: "before the turn log".into(),
            answers: Vec::new(),
            final_response: Some("done".into()),
            opened_by: None,
        }];
        let mut moved = old.clone();
        moved.take_unlogged_turns();
        let undo = undo(&old, &moved);
        let mut value = serde_json::to_value(&moved).expect("json");
        apply(&mut value, &undo);
        let back: ThreadState = serde_json::from_value(value).expect("state");
        assert_eq!(
            back, old,
            "an older version is rebuilt in the shape it was written in"
        );
    }

    #[test]
    fn unchanged_state_has_an_empty_undo() {
        assert_eq!(undo(&state(), &state()), json!({}));
    }
}
