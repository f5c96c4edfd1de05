//! The model's four decisions as typed outputs, their prompts and JSON Schemas, and the checks an
//! output must pass before the flow acts on it.
//!
//! A model's answer is read into the decision's serde struct, then checked against what the flow
//! knows (the candidates it was given, the skill's inputs, the tasks before it). Every check
//! failure is a sentence addressed to the model: it is sent back so the model can correct itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::card::{AgentSkill, Letters, slug_with};
use crate::planner::{Inputs, ParseOutcome, TextSource};
use crate::state::{Candidate, DecisionKind, QuestionKind, Task, TaskId};

/// Longest one-line reason kept for a chosen agent.
const MAX_REASON_CHARS: usize = 300;

/// Longest task name kept from the model: `task_name` is a label ("weather-paris"), and the model
/// sometimes writes a sentence there. Unlike directory ids, it keeps letters of any script.
const MAX_TASK_NAME_CHARS: usize = 60;

/// One decision's name (sent as the schema's name), instructions and schema.
#[derive(Debug, Clone)]
pub struct Spec {
    pub kind: DecisionKind,
    /// `parse`, `choose`, `arguments` or `compose`.
    pub name: &'static str,
    /// The system prompt (`prompts/NAME.md`).
    pub prompt: &'static str,
    /// The output's JSON Schema (`prompts/NAME.schema.json`).
    pub schema: Value,
}

/// The four specs, read from the files compiled into the binary.
#[derive(Debug, Clone)]
pub struct Specs {
    pub parse: Spec,
    pub choose: Spec,
    pub arguments: Spec,
    pub compose: Spec,
}

impl Specs {
    /// Parses the embedded schemas; fails only if a schema file is not JSON (a build mistake the
    /// tests catch), so start-up reports it instead of the first request.
    pub fn load() -> Result<Self, serde_json::Error> {
        let spec = |kind: DecisionKind, prompt: &'static str, schema: &str| {
            Ok::<_, serde_json::Error>(Spec {
                kind,
                name: kind.as_str(),
                prompt,
                schema: serde_json::from_str(schema)?,
            })
        };
        Ok(Specs {
            parse: spec(
                DecisionKind::Parse,
                include_str!("prompts/parse.md"),
                include_str!("prompts/parse.schema.json"),
            )?,
            choose: spec(
                DecisionKind::Choose,
                include_str!("prompts/choose.md"),
                include_str!("prompts/choose.schema.json"),
            )?,
            arguments: spec(
                DecisionKind::Arguments,
                include_str!("prompts/arguments.md"),
                include_str!("prompts/arguments.schema.json"),
            )?,
            compose: spec(
                DecisionKind::Compose,
                include_str!("prompts/compose.md"),
                include_str!("prompts/compose.schema.json"),
            )?,
        })
    }
}

/// Reads a model's answer into `T`. Tolerates what models add around JSON when the schema is
/// only in the prompt (a ```json fence, a sentence before the object).
pub fn read<T: DeserializeOwned>(content: &str) -> Result<T, String> {
    let text = content.trim();
    let text = match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => text,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!(
                "the answer is not the JSON object the schema describes: {}",
                e.inner()
            )
        } else {
            format!("at `{path}`: {}", e.inner())
        }
    })
}

/// What the model says about the request: tasks, or a question first.
#[derive(Debug, Clone, Deserialize)]
pub struct ParseOutput {
    pub action: ParseAction,
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub tasks: Vec<TaskOutput>,
}

/// Which of `question` and `tasks` counts. The strict schema makes the model write both fields,
/// so the action, not which field is filled, says whether to ask or to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParseAction {
    Tasks,
    Ask,
}

/// One task as the model writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskOutput {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// Checks a parse: a question must be non-blank (and not one too many); tasks are numbered
/// `t1..tn` in order, have a name, a description and keywords, and depend only on earlier tasks.
pub fn validate_parse(
    output: ParseOutput,
    questions_answered: usize,
) -> Result<ParseOutcome, String> {
    match output.action {
        ParseAction::Ask => {
            let question = output
                .question
                .as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .ok_or("action is \"ask\" but `question` is empty")?;
            if questions_answered >= crate::planner::MAX_CLARIFICATIONS {
                return Err(format!(
                    "the user has already answered {questions_answered} questions about this request; do not ask again: plan tasks from what is known (action \"tasks\")"
                ));
            }
            Ok(ParseOutcome::Ask {
                task_id: None,
                kind: QuestionKind::Guidance,
                question: question.to_owned(),
            })
        }
        ParseAction::Tasks => {
            if output.tasks.is_empty() {
                return Err(
                    "action is \"tasks\" but `tasks` is empty (ask a question instead if nothing can be done)"
                        .to_owned(),
                );
            }
            let mut tasks = Vec::with_capacity(output.tasks.len());
            let mut earlier = BTreeSet::new();
            for (i, task) in output.tasks.into_iter().enumerate() {
                let id = TaskId::nth(i + 1);
                if task.id.trim() != id.as_str() {
                    return Err(format!(
                        "task {} has id {:?}; ids must be t1, t2, … in order",
                        i + 1,
                        task.id
                    ));
                }
                let name = slug_with(&task.name, Letters::Any, MAX_TASK_NAME_CHARS);
                if name.is_empty() {
                    return Err(format!("task {id} has an empty `name`"));
                }
                let description = one_line(&task.description);
                if description.is_empty() {
                    return Err(format!("task {id} has an empty `description`"));
                }
                let mut keywords: Vec<String> = Vec::new();
                for k in &task.keywords {
                    let k = k.trim().to_lowercase();
                    if !k.is_empty() && !keywords.contains(&k) {
                        keywords.push(k);
                    }
                }
                if keywords.is_empty() {
                    return Err(format!(
                        "task {id} has no `keywords`; give the words an agent directory search needs"
                    ));
                }
                let mut depends_on: Vec<TaskId> = Vec::new();
                for dep in &task.depends_on {
                    let dep = dep.trim();
                    let Some(dep) = earlier.get(dep) else {
                        return Err(format!(
                            "task {id} depends on {dep:?}, which is not an earlier task"
                        ));
                    };
                    if !depends_on.contains(dep) {
                        depends_on.push(dep.clone());
                    }
                }
                earlier.insert(id.clone());
                tasks.push(Task {
                    id,
                    name,
                    description,
                    keywords,
                    capabilities: Vec::new(),
                    depends_on,
                    // The model writes self-contained descriptions; context is already in them.
                    context: Vec::new(),
                });
            }
            Ok(ParseOutcome::Tasks(tasks))
        }
    }
}

/// Which candidates fit, in the order to try them.
#[derive(Debug, Clone, Deserialize)]
pub struct ChooseOutput {
    pub chosen: Vec<ChoiceOutput>,
}

/// One chosen candidate and why.
#[derive(Debug, Clone, Deserialize)]
pub struct ChoiceOutput {
    pub agent_id: String,
    pub reason: String,
}

/// Checks a choice: every agent is one of the candidates, once, with a non-blank reason. Returns
/// those candidates in the model's order, each with its reason (one line).
pub fn validate_choose(
    output: ChooseOutput,
    ranked: &[Candidate],
) -> Result<Vec<Candidate>, String> {
    let mut chosen: Vec<Candidate> = Vec::with_capacity(output.chosen.len());
    for choice in output.chosen {
        let id = choice.agent_id.trim();
        let Some(candidate) = ranked.iter().find(|c| c.agent_id == id) else {
            let known: Vec<&str> = ranked.iter().map(|c| c.agent_id.as_str()).collect();
            return Err(format!(
                "agent_id {id:?} is not one of the candidates ({})",
                known.join(", ")
            ));
        };
        if chosen.iter().any(|c| c.agent_id == id) {
            return Err(format!("agent_id {id:?} is chosen twice"));
        }
        let reason: String = one_line(&choice.reason)
            .chars()
            .take(MAX_REASON_CHARS)
            .collect();
        if reason.is_empty() {
            return Err(format!("the reason for {id:?} is empty"));
        }
        let mut candidate = candidate.clone();
        candidate.reason = Some(reason);
        chosen.push(candidate);
    }
    Ok(chosen)
}

/// The arguments of one call, or the required input nobody gave.
#[derive(Debug, Clone, Deserialize)]
pub struct ArgumentsOutput {
    #[serde(default)]
    pub arguments: Vec<ArgumentOutput>,
    #[serde(default)]
    pub missing: Option<MissingOutput>,
}

/// One argument. The value is a string in the schema; numbers and booleans are accepted too.
#[derive(Debug, Clone, Deserialize)]
pub struct ArgumentOutput {
    pub name: String,
    pub value: Value,
}

/// A required input the user must be asked for.
#[derive(Debug, Clone, Deserialize)]
pub struct MissingOutput {
    pub input: String,
    pub question: String,
}

/// One input of a skill, merged from `inputs` and the JSON Schema's `properties`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub description: String,
    pub required: bool,
    /// The property's schema, when the skill has an input schema naming it.
    pub schema: Option<Value>,
}

/// The inputs of `skill`: its declared `inputs`, then properties only its `input_schema` names.
/// `text` is not required when earlier tasks' output supplies it.
pub fn skill_inputs(skill: &AgentSkill, text_source: TextSource) -> Vec<InputSpec> {
    let properties = skill
        .input_schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let schema_required: BTreeSet<&str> = skill
        .input_schema
        .as_ref()
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut specs: Vec<InputSpec> = skill
        .inputs
        .iter()
        .map(|i| InputSpec {
            name: i.name.clone(),
            description: i.description.clone(),
            required: i.required || schema_required.contains(i.name.as_str()),
            schema: properties.and_then(|p| p.get(&i.name)).cloned(),
        })
        .collect();
    if let Some(properties) = properties {
        for (name, schema) in properties {
            if specs.iter().any(|s| &s.name == name) {
                continue;
            }
            specs.push(InputSpec {
                name: name.clone(),
                description: schema
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                required: schema_required.contains(name.as_str()),
                schema: Some(schema.clone()),
            });
        }
    }
    for spec in &mut specs {
        if text_source == TextSource::EarlierTasks && spec.name == "text" {
            spec.required = false;
        }
    }
    specs
}

/// Checks arguments: names are the skill's inputs (once each), values are non-blank scalars of
/// the type the input schema gives, and every required input has a value unless it is the one
/// reported missing (with a question).
pub fn validate_arguments(output: ArgumentsOutput, inputs: &[InputSpec]) -> Result<Inputs, String> {
    let names = || {
        inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut found = BTreeMap::new();
    for argument in output.arguments {
        let name = argument.name.trim();
        let Some(spec) = inputs.iter().find(|i| i.name == name) else {
            return Err(format!(
                "argument {name:?} is not an input of the skill (inputs: {})",
                names()
            ));
        };
        let value = match &argument.value {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => return Err(format!("argument {name:?} must be a plain string value")),
        };
        if value.is_empty() {
            // An empty value is no value; a required one must be reported missing.
            continue;
        }
        if let Some(schema) = &spec.schema {
            check_type(name, &value, schema)?;
        }
        if found.insert(name.to_owned(), value).is_some() {
            return Err(format!("argument {name:?} is given twice"));
        }
    }
    if let Some(missing) = output.missing {
        let input = missing.input.trim();
        let Some(spec) = inputs.iter().find(|i| i.name == input) else {
            return Err(format!(
                "missing input {input:?} is not an input of the skill (inputs: {})",
                names()
            ));
        };
        if !spec.required {
            return Err(format!(
                "input {input:?} is optional: leave it out instead of reporting it missing"
            ));
        }
        if found.contains_key(input) {
            return Err(format!(
                "input {input:?} is reported missing but also given a value"
            ));
        }
        let question = one_line(&missing.question);
        if question.is_empty() {
            return Err(format!("the question for missing input {input:?} is empty"));
        }
        return Ok(Inputs::Missing {
            input: input.to_owned(),
            question,
        });
    }
    if let Some(spec) = inputs
        .iter()
        .find(|i| i.required && !found.contains_key(&i.name))
    {
        return Err(format!(
            "required input {:?} has no value; give it, or report it in `missing` with a question for the user",
            spec.name
        ));
    }
    Ok(Inputs::Ready(found))
}

/// A value against its property's `type` and `enum`, where the schema gives them.
fn check_type(name: &str, value: &str, schema: &Value) -> Result<(), String> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = |t: &str| match t {
        "number" => value.parse::<f64>().is_ok_and(f64::is_finite),
        "integer" => value.parse::<i64>().is_ok(),
        "boolean" => matches!(value, "true" | "false"),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| fits(t)) {
        return Err(format!(
            "argument {name:?} = {value:?} is not of type {}",
            types.join(" or ")
        ));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        let ok = allowed.iter().any(|a| match a {
            Value::String(s) => s == value,
            other => serde_json::from_str::<Value>(value).is_ok_and(|v| &v == other),
        });
        if !ok {
            return Err(format!(
                "argument {name:?} = {value:?} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    Ok(())
}

/// The model's final response, in an object of its own so that it has a schema to be held to
/// like the other decisions (a bare string could not be told from a chatty refusal).
#[derive(Debug, Clone, Deserialize)]
pub struct ComposeOutput {
    pub response: String,
}

/// Only blankness is checked: what a good response says is the model's to judge, and the eval's.
pub fn validate_compose(output: ComposeOutput) -> Result<String, String> {
    let response = output.response.trim();
    if response.is_empty() {
        return Err("`response` is empty".to_owned());
    }
    Ok(response.to_owned())
}

/// Whitespace (newlines included) collapsed to single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::SkillInput;
    use serde_json::json;

    fn task(id: &str, deps: &[&str]) -> Value {
        json!({"id": id, "name": "N", "description": "do it", "keywords": ["k"], "depends_on": deps})
    }

    fn parse(value: Value, asked: usize) -> Result<ParseOutcome, String> {
        validate_parse(read(&value.to_string())?, asked)
    }

    #[test]
    fn every_schema_and_prompt_loads() {
        let specs = Specs::load().expect("schemas are JSON");
        for spec in [
            &specs.parse,
            &specs.choose,
            &specs.arguments,
            &specs.compose,
        ] {
            assert_eq!(spec.schema["type"], "object", "{}", spec.name);
            assert_eq!(spec.schema["additionalProperties"], false, "{}", spec.name);
            assert!(!spec.prompt.trim().is_empty());
        }
    }

    #[test]
    fn parse_checks_ids_dependencies_and_texts() {
        let ok = parse(
            json!({"action": "tasks", "question": null, "tasks": [task("t1", &[]), task("t2", &["t1"])]}),
            0,
        )
        .expect("valid");
        let ParseOutcome::Tasks(tasks) = ok else {
            panic!("tasks")
        };
        assert_eq!(tasks[1].depends_on, ["t1"]);
        assert_eq!(tasks[0].name, "n");
        let bad = |v: Value| parse(v, 0).expect_err("invalid");
        assert!(bad(json!({"action": "tasks", "tasks": [task("t2", &[])]})).contains("t1, t2"));
        assert!(
            bad(json!({"action": "tasks", "tasks": [task("t1", &["t1"])]}))
                .contains("not an earlier task")
        );
        assert!(bad(json!({"action": "tasks", "tasks": []})).contains("empty"));
        assert!(bad(json!({"action": "ask", "question": " "})).contains("question"));
        assert!(bad(json!({"action": "maybe"})).contains("action"));
        assert!(read::<ParseOutput>("not json").is_err());
        assert!(
            parse(json!({"action": "ask", "question": "Which city?"}), 2)
                .expect_err("asked enough")
                .contains("do not ask again")
        );
    }

    #[test]
    fn read_tolerates_fences() {
        let out: ComposeOutput = read("```json\n{\"response\": \"hi\"}\n```").expect("fenced");
        assert_eq!(out.response, "hi");
    }

    #[test]
    fn choose_keeps_only_candidates() {
        let ranked = vec![
            Candidate::hit("a".into(), None, 1.0, 1.0),
            Candidate::hit("b".into(), None, 0.5, 0.5),
        ];
        let out = validate_choose(
            read(r#"{"chosen":[{"agent_id":"b","reason":"fits\nwell"}]}"#).expect("json"),
            &ranked,
        )
        .expect("valid");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason.as_deref(), Some("fits well"));
        let err = validate_choose(
            read(r#"{"chosen":[{"agent_id":"z","reason":"r"}]}"#).expect("json"),
            &ranked,
        )
        .expect_err("unknown");
        assert!(err.contains("not one of the candidates"), "{err}");
    }

    #[test]
    fn arguments_follow_the_skill() {
        let skill = AgentSkill {
            id: "s".into(),
            name: "S".into(),
            description: String::new(),
            tags: vec![],
            examples: vec![],
            inputs: vec![SkillInput {
                name: "amount".into(),
                description: "how much".into(),
                required: true,
                value_type: None,
            }],
            input_schema: Some(json!({
                "type": "object",
                "properties": {"amount": {"type": "number"}, "unit": {"type": "string", "enum": ["a", "b"]}},
                "required": ["amount"]
            })),
        };
        let inputs = skill_inputs(&skill, TextSource::Request);
        assert_eq!(inputs.len(), 2);
        let check = |v: Value| validate_arguments(read(&v.to_string())?, &inputs);
        assert_eq!(
            check(json!({"arguments": [{"name": "amount", "value": "12.5"}], "missing": null})),
            Ok(Inputs::Ready(BTreeMap::from([(
                "amount".to_owned(),
                "12.5".to_owned()
            )])))
        );
        assert!(
            check(json!({"arguments": [{"name": "amount", "value": "lots"}]}))
                .expect_err("type")
                .contains("number")
        );
        assert!(
            check(json!({"arguments": [{"name": "amount", "value": 1}, {"name": "unit", "value": "c"}]}))
                .expect_err("enum")
                .contains("one of")
        );
        assert!(
            check(json!({"arguments": [{"name": "colour", "value": "x"}]}))
                .expect_err("unknown")
                .contains("not an input")
        );
        assert!(
            check(json!({"arguments": []}))
                .expect_err("required")
                .contains("required input")
        );
        assert_eq!(
            check(
                json!({"arguments": [], "missing": {"input": "amount", "question": "How much?"}})
            ),
            Ok(Inputs::Missing {
                input: "amount".into(),
                question: "How much?".into()
            })
        );
    }
}
