//! The rules planner's final response: one answer written from the task results, not a dump of
//! them. A single task answers with its result and says who gave it; several tasks get a short
//! lead saying how many were done, then one titled paragraph each; what could not be done says
//! why. Agents' JSON answers are turned into readable lines.

use serde_json::Value;

use crate::state::{Task, TaskOutcome, ThreadState};

/// The final response of a turn when the rules planner writes it (also the `llm` planner's
/// fallback). A turn with no tasks was politeness, and is answered in kind.
pub fn compose(state: &ThreadState) -> String {
    if state.tasks.is_empty() {
        let thanks = state.prompt.to_lowercase().contains("thank");
        return if thanks {
            "You're welcome. Tell me whenever you need something else."
        } else {
            "Hello! Tell me what you need, and I will find the agents for it."
        }
        .to_owned();
    }
    let agent_name = |agent_id: &str| {
        state
            .agents
            .get(agent_id)
            .map_or(agent_id.to_owned(), |c| c.name.clone())
    };
    let outcome = |task: &Task| state.results.get(&task.id).map(|r| &r.outcome);
    let done = state
        .tasks
        .iter()
        .filter(|t| outcome(t).is_some_and(TaskOutcome::is_done))
        .count();
    if let [task] = state.tasks.as_slice() {
        return match outcome(task) {
            Some(TaskOutcome::Done { agent_id, output }) => format!(
                "{}\n\n(Answered by {}.)",
                readable(output),
                agent_name(agent_id)
            ),
            Some(TaskOutcome::Failed { reason, .. }) => format!(
                "I could not get that done: \"{}\" is not done. {}",
                task.description, reason
            ),
            None => format!("\"{}\" is not done.", task.description),
        };
    }
    let total = state.tasks.len();
    let lead = if done == total {
        format!("All {total} parts of your request are done.")
    } else if done == 0 {
        format!("None of the {total} parts of your request could be done.")
    } else {
        format!("{done} of the {total} parts of your request are done.")
    };
    let mut out = vec![lead];
    for task in &state.tasks {
        out.push(match outcome(task) {
            Some(TaskOutcome::Done { agent_id, output }) => format!(
                "**{}** ({})\n{}",
                title(task),
                agent_name(agent_id),
                readable(output)
            ),
            Some(TaskOutcome::Failed { reason, .. }) => {
                format!("**{}**: not done. {}", title(task), reason)
            }
            None => format!("**{}**: not done.", title(task)),
        });
    }
    out.join("\n\n")
}

/// The task's words as a heading: first letter up, no trailing stop.
fn title(task: &Task) -> String {
    capitalized(task.description.trim().trim_end_matches(['.', '?', '!']))
}

/// An agent's answer for a person: JSON objects and lists become lines, text stays as it is.
fn readable(output: &str) -> String {
    let trimmed = output.trim();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return trimmed.to_owned();
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => lines(&value, 0).join("\n"),
        Err(_) => trimmed.to_owned(),
    }
}

fn lines(value: &Value, depth: usize) -> Vec<String> {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Object(_) | Value::Array(_) => {
                    let mut out = vec![format!("{indent}{}:", label(k))];
                    out.extend(lines(v, depth + 1));
                    out
                }
                other => vec![format!("{indent}{}: {}", label(k), scalar(other))],
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .flat_map(|v| match v {
                Value::Object(_) | Value::Array(_) => {
                    let mut inner = lines(v, depth + 1);
                    if let Some(first) = inner.first_mut() {
                        *first = format!("{indent}- {}", first.trim_start());
                    }
                    inner
                }
                other => vec![format!("{indent}- {}", scalar(other))],
            })
            .collect(),
        other => vec![format!("{indent}{}", scalar(other))],
    }
}

/// A JSON key as a person reads it: `wind_speed` → `Wind speed`.
fn label(key: &str) -> String {
    capitalized(&key.replace(['_', '-'], " "))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_read_as_lines() {
        assert_eq!(
            readable(r#"{"symbol":"AAPL","price":189.5,"tags":["a","b"]}"#),
            "Price: 189.5\nSymbol: AAPL\nTags:\n  - a\n  - b"
        );
        assert_eq!(readable("plain text "), "plain text");
    }
}
