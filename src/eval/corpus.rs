//! The eval corpus on disk, loaded and checked before anything runs, so that a typo in a case is
//! reported with its file and line instead of showing up as a mysterious failing score.
//!
//! - `agents.json`: the extra agents, a JSON array of `{"card": {…}, "script": {…}}`. The card is
//!   registered as given (A2A v1.0 or v0.3, or an original-system REST card) after `{base}` in it
//!   is replaced by the loopback address of the scripted agent server; the script says how that
//!   server answers for the agent.
//! - `cases/*.jsonl`: one case per line (blank lines and lines starting with `#` are skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::EvalError;
use crate::card::{AgentCard, Protocol};
use crate::directory::register::{CardError, parse_card};

/// The kinds of request the corpus measures; every case names one, and the report scores each.
pub const KINDS: &[&str] = &[
    "context",
    "arguments",
    "weak-match",
    "multi-intent",
    "compose",
    "routing",
    "multi-task",
    "dependencies",
    "questions",
];

/// The placeholder in `agents.json` that becomes the scripted server's base URL.
pub const BASE_PLACEHOLDER: &str = "{base}";

/// A base URL used only to check the cards while loading, before the server runs.
const CHECK_BASE: &str = "http://127.0.0.1:9";

/// Everything under a corpus directory, checked.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Where it was read from (for messages).
    pub dir: PathBuf,
    /// The extra agents, served by the scripted server and registered beside the demo ones.
    pub agents: Vec<EvalAgent>,
    /// The cases, in file then line order (the report keeps that order).
    pub cases: Vec<Case>,
}

/// One extra agent: its card as written (with `{base}`) and how its stand-in answers.
#[derive(Debug, Clone)]
pub struct EvalAgent {
    /// The card's directory id (given, or derived from the name as registration does).
    pub id: String,
    /// The card as written in the file, `{base}` not yet replaced.
    pub raw: Value,
    /// How the stand-in answers (its text, its JSON body, its own question).
    pub script: Script,
    /// The card's skills' inputs by name, to check that cases name real inputs.
    pub inputs: BTreeSet<String>,
}

impl EvalAgent {
    /// The card with `{base}` replaced, parsed exactly as `POST /api/agents` would parse it.
    pub fn card(&self, base: &str) -> Result<AgentCard, CardError> {
        parse_card(replace_base(&self.raw, base))
    }
}

/// How the scripted stand-in of an agent answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The answer's text. `{agent}`, `{skill}`, `{args}` and `{INPUT}` (any argument received)
    /// are filled in; an argument not received reads `unknown`. Default:
    /// `"{agent} did {skill} with {args}"`.
    #[serde(default)]
    pub reply: Option<String>,
    /// REST agents only: the JSON body answered instead of `{"result": reply}`; string values
    /// are templates like `reply`.
    #[serde(default)]
    pub response: Option<Value>,
    /// A2A agents only: ask the user (`input-required`) when this input was not received.
    #[serde(default)]
    pub asks: Option<Ask>,
}

/// An agent-side question: asked when `input` is missing, answered on the same A2A task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The input whose absence makes the agent ask (and which the answer fills).
    pub input: String,
    /// What the agent asks, as its `input-required` status message.
    pub question: String,
}

/// Where an agent of the eval comes from: the `demo` and `eval` directories choose by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOrigin {
    /// One of Baton's demo agents.
    Demo,
    /// A scripted agent of the corpus's `agents.json`.
    Corpus,
}

/// Every agent id a case may name, with its origin and input names, to check cases against.
pub type KnownAgents = BTreeMap<String, (AgentOrigin, BTreeSet<String>)>;

/// Which agents a case's directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorySpec {
    /// The demo agents and every agent of `agents.json` (the default).
    All,
    /// The eight demo agents only.
    Demo,
    /// The agents of `agents.json` only.
    Eval,
    /// Exactly these agent ids.
    Only(Vec<String>),
}

/// A prepared answer: given to the oldest pending question it fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedAnswer {
    /// Alternatives (`a|b`) of which one must appear in the question; `None` fits any question.
    pub when: Option<String>,
    /// What the user answers.
    pub text: String,
}

/// Accepted values of one argument (any of them, compared case-insensitively and trimmed,
/// numbers numerically).
pub type Accepted = Vec<String>;

/// What a careful human expects of a good orchestrator for this request.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The primary agents of the final plan, one per task (a multiset: order does not matter).
    pub agents: Vec<String>,
    /// Per agent, the arguments of each expected call: every listed argument must be among what
    /// the agent received in one of its calls.
    pub arguments: BTreeMap<String, Vec<BTreeMap<String, Accepted>>>,
    /// The first response is a question.
    pub question: bool,
    /// Words (alternatives `a|b`) that must appear in the first response's questions.
    pub question_mentions: Vec<String>,
    /// How many questions the first response holds at once (agents of one batch asking).
    pub first_questions: Option<usize>,
    /// No agent may be called at all.
    pub no_call: bool,
    /// The final response must be composed: something of every final agent answer in it (a
    /// number, or a value of a JSON answer), no raw JSON, not a list under "Here is what I
    /// found".
    pub composed: bool,
    /// Words (alternatives `a|b`) the final response must contain.
    pub response_mentions: Vec<String>,
    /// Consumer agent → producer agent: the consumer runs after and reads the producer's output.
    pub depends: BTreeMap<String, String>,
}

/// One request and what should come of it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique across the corpus; the report and the JSON line name failures by it.
    pub id: String,
    /// One of `KINDS`: what the case measures, for the score per kind.
    pub kind: String,
    /// The user's request, sent as the prompt of the thread's last turn.
    pub request: String,
    /// The agents the case's directory holds (so a weak match can be staged on purpose).
    pub directory: DirectorySpec,
    /// Earlier turns of the same thread, run to completion first (context).
    pub turns: Vec<String>,
    /// The user's answers, given in order to whatever the thread asks.
    pub answers: Vec<PreparedAnswer>,
    /// What should come of it.
    pub expect: Expect,
    /// `file:line`, for messages.
    pub source: String,
}

impl DirectorySpec {
    /// Whether the directory holds the agent `id`.
    pub fn holds(&self, id: &str, origin: AgentOrigin) -> bool {
        match self {
            DirectorySpec::All => true,
            DirectorySpec::Demo => origin == AgentOrigin::Demo,
            DirectorySpec::Eval => origin == AgentOrigin::Corpus,
            DirectorySpec::Only(ids) => ids.iter().any(|i| i == id),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    card: Value,
    #[serde(default)]
    script: Script,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: String,
    kind: String,
    request: String,
    #[serde(default)]
    directory: Option<Value>,
    #[serde(default)]
    turns: Vec<String>,
    #[serde(default)]
    answers: Vec<Value>,
    expect: RawExpect,
    /// Why the case exists; for people reading the file.
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    arguments: BTreeMap<String, Value>,
    #[serde(default)]
    question: bool,
    #[serde(default)]
    question_mentions: Vec<String>,
    #[serde(default)]
    first_questions: Option<usize>,
    #[serde(default)]
    no_call: bool,
    #[serde(default)]
    composed: bool,
    #[serde(default)]
    response_mentions: Vec<String>,
    #[serde(default)]
    depends: BTreeMap<String, String>,
}

/// Reads and checks `dir/agents.json` and every `dir/cases/*.jsonl`.
pub fn load(dir: &Path) -> Result<Corpus, EvalError> {
    let demo: Vec<AgentCard> = crate::agents::builtin::demo_cards()
        .map_err(|e| EvalError::file(Path::new("demo_agents.json"), e.to_string()))?;
    let agents = load_agents(&dir.join("agents.json"), &demo)?;
    let known: KnownAgents = demo
        .iter()
        .map(|c| (c.id.clone(), (AgentOrigin::Demo, inputs_of(c))))
        .chain(
            agents
                .iter()
                .map(|a| (a.id.clone(), (AgentOrigin::Corpus, a.inputs.clone()))),
        )
        .collect();
    let cases_dir = dir.join("cases");
    let entries = std::fs::read_dir(&cases_dir).map_err(|source| EvalError::Io {
        path: cases_dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| EvalError::Io {
            path: file.display().to_string(),
            source,
        })?;
        for case in parse_cases(file, &text, &known)? {
            if let Some(first) = seen.insert(case.id.clone(), case.source.clone()) {
                return Err(EvalError::case(
                    &case.source,
                    format!("case id {:?} is already used at {first}", case.id),
                ));
            }
            cases.push(case);
        }
    }
    if cases.is_empty() {
        return Err(EvalError::file(
            &cases_dir,
            "no cases (*.jsonl) found".into(),
        ));
    }
    Ok(Corpus {
        dir: dir.to_owned(),
        agents,
        cases,
    })
}

fn inputs_of(card: &AgentCard) -> BTreeSet<String> {
    card.skills
        .iter()
        .flat_map(|s| s.inputs.iter().map(|i| i.name.clone()))
        .collect()
}

fn replace_base(value: &Value, base: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(BASE_PLACEHOLDER, base)),
        Value::Array(list) => Value::Array(list.iter().map(|v| replace_base(v, base)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), replace_base(v, base)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn load_agents(path: &Path, demo: &[AgentCard]) -> Result<Vec<EvalAgent>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let raw: Vec<RawAgent> = serde_json::from_str(&text).map_err(|e| EvalError::Corpus {
        path: path.display().to_string(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let mut out: Vec<EvalAgent> = Vec::with_capacity(raw.len());
    for (i, agent) in raw.into_iter().enumerate() {
        let name = agent
            .card
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let fail = |message: String| {
            EvalError::file(path, format!("agent #{} ({name:?}): {message}", i + 1))
        };
        let card =
            parse_card(replace_base(&agent.card, CHECK_BASE)).map_err(|e| fail(e.to_string()))?;
        let mut urls: Vec<&str> = vec![card.url.as_str()];
        urls.extend(card.endpoints.iter().map(|e| e.endpoint.as_str()));
        if urls.iter().any(|u| !u.starts_with(CHECK_BASE)) {
            return Err(fail(format!(
                "every URL must start with {BASE_PLACEHOLDER} (the scripted server)"
            )));
        }
        if demo.iter().any(|c| c.id == card.id) || out.iter().any(|a| a.id == card.id) {
            return Err(fail(format!("id {:?} is already taken", card.id)));
        }
        let inputs = inputs_of(&card);
        if let Some(ask) = &agent.script.asks {
            if card.protocol != Protocol::A2a {
                return Err(fail(
                    "only A2A agents can ask (script.asks); REST has no input-required".into(),
                ));
            }
            if ask.question.trim().is_empty() {
                return Err(fail("script.asks.question is blank".into()));
            }
        }
        if agent.script.response.is_some() && card.protocol != Protocol::Rest {
            return Err(fail("script.response is for REST agents only".into()));
        }
        out.push(EvalAgent {
            id: card.id,
            raw: agent.card,
            script: agent.script,
            inputs,
        });
    }
    Ok(out)
}

/// Parses the lines of one case file, checking the agents it names against `known`.
pub fn parse_cases(file: &Path, text: &str, known: &KnownAgents) -> Result<Vec<Case>, EvalError> {
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let source = format!("{}:{}", file.display(), i + 1);
        let raw: RawCase = serde_json::from_str(trimmed)
            .map_err(|e| EvalError::case(&source, format!("not a case: {e}")))?;
        cases.push(check_case(raw, source, known)?);
    }
    Ok(cases)
}

fn check_case(raw: RawCase, source: String, known: &KnownAgents) -> Result<Case, EvalError> {
    let err = |message: String| EvalError::case(&source, message);
    let id_ok = !raw.id.is_empty()
        && raw
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        return Err(err(format!(
            "id {:?} must be lower-case letters, digits and dashes",
            raw.id
        )));
    }
    if !KINDS.contains(&raw.kind.as_str()) {
        return Err(err(format!(
            "unknown kind {:?} (expected one of {})",
            raw.kind,
            KINDS.join(", ")
        )));
    }
    if raw.request.trim().is_empty() {
        return Err(err("request is blank".into()));
    }
    if raw.turns.iter().any(|t| t.trim().is_empty()) {
        return Err(err("an earlier turn is blank".into()));
    }
    let directory = match raw.directory {
        None => DirectorySpec::All,
        Some(Value::String(s)) => match s.as_str() {
            "all" => DirectorySpec::All,
            "demo" => DirectorySpec::Demo,
            "eval" => DirectorySpec::Eval,
            other => {
                return Err(err(format!(
                    "directory {other:?} must be \"all\", \"demo\", \"eval\" or a list of agent ids"
                )));
            }
        },
        Some(Value::Array(list)) => {
            let mut ids = Vec::new();
            for v in list {
                match v.as_str() {
                    Some(id) if known.contains_key(id) => ids.push(id.to_owned()),
                    _ => return Err(err(format!("directory names an unknown agent {v}"))),
                }
            }
            DirectorySpec::Only(ids)
        }
        Some(other) => {
            return Err(err(format!(
                "directory must be a string or a list of agent ids, not {other}"
            )));
        }
    };
    let answers = raw
        .answers
        .into_iter()
        .map(|a| match a {
            Value::String(text) => Ok(PreparedAnswer { when: None, text }),
            Value::Object(map) => {
                let text = map.get("answer").and_then(Value::as_str);
                let when = map.get("if").and_then(Value::as_str);
                match (text, when, map.len()) {
                    (Some(text), Some(when), 2) => Ok(PreparedAnswer {
                        when: Some(when.to_owned()),
                        text: text.to_owned(),
                    }),
                    _ => Err(err(format!(
                        "an answer is a string or {{\"if\": \"word|word\", \"answer\": \"…\"}}, not {}",
                        Value::Object(map)
                    ))),
                }
            }
            other => Err(err(format!("an answer must be a string, not {other}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if answers.iter().any(|a| a.text.trim().is_empty()) {
        return Err(err("an answer is blank".into()));
    }
    let e = raw.expect;
    let case_has = |id: &str| {
        known
            .get(id)
            .is_some_and(|(origin, _)| directory.holds(id, *origin))
    };
    for id in e
        .agents
        .iter()
        .chain(e.arguments.keys())
        .chain(e.depends.keys())
        .chain(e.depends.values())
    {
        if !known.contains_key(id) {
            return Err(err(format!(
                "expect names an unknown agent {id:?} (demo ids are demo.NAME; others come from agents.json)"
            )));
        }
        if !case_has(id) {
            return Err(err(format!(
                "expect names agent {id:?}, which is not in this case's directory"
            )));
        }
    }
    let mut arguments = BTreeMap::new();
    for (agent, value) in e.arguments {
        if !e.agents.contains(&agent) {
            return Err(err(format!(
                "arguments for {agent:?}, which is not among expect.agents"
            )));
        }
        let calls = match value {
            Value::Array(list) => list,
            other => vec![other],
        };
        let inputs = known
            .get(&agent)
            .map(|(_, i)| i.clone())
            .unwrap_or_default();
        let mut parsed = Vec::new();
        for call in calls {
            let Value::Object(map) = call else {
                return Err(err(format!(
                    "arguments of {agent:?} must be an object (or a list of objects, one per call)"
                )));
            };
            let mut args = BTreeMap::new();
            for (name, v) in map {
                if !inputs.contains(&name) {
                    return Err(err(format!(
                        "{agent:?} has no input {name:?} (its inputs: {})",
                        inputs.iter().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                let accepted: Option<Vec<String>> = match v {
                    Value::String(s) => Some(vec![s]),
                    Value::Number(n) => Some(vec![n.to_string()]),
                    Value::Array(list) => list
                        .into_iter()
                        .map(|x| match x {
                            Value::String(s) => Some(s),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .collect(),
                    _ => None,
                };
                match accepted {
                    Some(list) if !list.is_empty() => {
                        args.insert(name, list);
                    }
                    _ => {
                        return Err(err(format!(
                            "argument {name:?} of {agent:?} must be a string, a number or a list of accepted values"
                        )));
                    }
                }
            }
            parsed.push(args);
        }
        arguments.insert(agent, parsed);
    }
    for (consumer, producer) in &e.depends {
        if !e.agents.contains(consumer) || !e.agents.contains(producer) {
            return Err(err(format!(
                "depends {consumer:?} on {producer:?}: both must be among expect.agents"
            )));
        }
    }
    if e.no_call && (!e.agents.is_empty() || !arguments.is_empty() || e.composed) {
        return Err(err(
            "no_call cannot go with agents, arguments or composed".into()
        ));
    }
    if !e.question && (!answers.is_empty() || !e.question_mentions.is_empty()) {
        return Err(err(
            "answers or question_mentions given, but no question expected (set expect.question)"
                .into(),
        ));
    }
    if e.first_questions.is_some_and(|n| n == 0 || !e.question) {
        return Err(err(
            "first_questions must be at least 1, with expect.question".into(),
        ));
    }
    if !e.no_call && e.agents.is_empty() {
        return Err(err(
            "expect.agents is empty: name the agents, or set no_call".into(),
        ));
    }
    Ok(Case {
        id: raw.id,
        kind: raw.kind,
        request: raw.request,
        directory,
        turns: raw.turns,
        answers,
        expect: Expect {
            agents: e.agents,
            arguments,
            question: e.question,
            question_mentions: e.question_mentions,
            first_questions: e.first_questions,
            no_call: e.no_call,
            composed: e.composed,
            response_mentions: e.response_mentions,
            depends: e.depends,
        },
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownAgents {
        BTreeMap::from([(
            "demo.weather".to_owned(),
            (AgentOrigin::Demo, BTreeSet::from(["location".to_owned()])),
        )])
    }

    #[test]
    fn a_good_line_parses_and_a_bad_one_names_file_and_line() {
        let text = "# a comment\n\n{\"id\":\"w-1\",\"kind\":\"routing\",\"request\":\"weather in Oslo\",\"expect\":{\"agents\":[\"demo.weather\"],\"arguments\":{\"demo.weather\":{\"location\":\"Oslo\"}}}}\n{\"id\":\"w-2\",\"kind\":\"routing\",\"request\":\"x\",\"expect\":{\"agents\":[\"demo.nope\"]}}\n";
        let err = parse_cases(Path::new("cases/r.jsonl"), text, &known())
            .expect_err("second case is wrong");
        let message = err.to_string();
        assert!(message.starts_with("cases/r.jsonl:4:"), "{message}");
        assert!(message.contains("demo.nope"), "{message}");
        let good = parse_cases(
            Path::new("cases/r.jsonl"),
            text.lines().take(3).collect::<Vec<_>>().join("\n").as_str(),
            &known(),
        )
        .expect("first case is fine");
        assert_eq!(good.len(), 1);
        assert_eq!(
            good[0].expect.arguments["demo.weather"][0]["location"],
            ["Oslo"]
        );
    }
}
