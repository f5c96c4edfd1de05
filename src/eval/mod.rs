//! `baton eval`: measures a planner on a corpus of ordinary requests, run through the real engine
//! against the demo agents and scripted agents reached over real A2A and REST on loopback.
//!
//! Each case runs on a fresh engine over `memory://` (so ranking health measured in one case
//! cannot steer another) in a thread of its own: earlier turns first, then the request, then the
//! prepared answers to whatever the thread asks. The case passes when every check holds: the
//! primary agents of the final plan, the arguments the agents actually received, a question asked
//! exactly when one is expected, no call to an agent outside the expected set, and, where asked,
//! a composed final response. The report scores each kind of request and the whole.

pub mod agents;
pub mod corpus;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::agents::builtin;
use crate::app::{self, StartupError};
use crate::config::{PlannerKind, Settings};
use crate::directory::register::CardError;
use crate::directory::{AgentDirectory, AgentDirectoryError};
use crate::engine::view::ThreadView;
use crate::engine::{Engine, StartRequest};
use crate::state::{TaskId, TaskOutcome, ThreadState, ThreadStatus};
use crate::store::{self, Store, StoreError};
use agents::{Call, ScriptedAgents};
use corpus::{AgentOrigin, Case, Corpus, PreparedAnswer};

/// Most answers given in one case, whatever the corpus says (a planner that keeps asking must not
/// hang the eval).
const MAX_ROUNDS: usize = 8;

/// Cases run at once (each on its own engine; the machine may be small and shared).
const CONCURRENCY: usize = 4;

/// Flags of `baton eval`. The planner and its model come from the same settings `serve` reads.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The corpus directory: `agents.json` and `cases/*.jsonl`.
    #[arg(long, default_value = "evals")]
    pub corpus: PathBuf,
    /// Exit non-zero when the total score is below this (0 to 1).
    #[arg(long)]
    pub min_score: Option<f64>,
    /// Run only the cases of this kind, or whose id starts with this.
    #[arg(long)]
    pub only: Option<String>,
    /// Print every case, not only the failing ones.
    #[arg(long)]
    pub verbose: bool,
    /// The planner and the agent-call settings, as `serve` reads them (`--planner`, `--llm-*`,
    /// timeouts). The store flags are ignored: every case runs on a fresh `memory://` store.
    #[command(flatten)]
    pub settings: Settings,
}

impl EvalArgs {
    /// Which cases the text report lists, as `--verbose` asks.
    pub fn listing(&self) -> Listing {
        if self.verbose {
            Listing::EveryCase
        } else {
            Listing::Failures
        }
    }
}

/// Which cases the text report lists: a passing case is noise unless one is looking at traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Failed cases with their reasons.
    Failures,
    /// Every case, each with its trace.
    EveryCase,
}

/// Why the eval could not run (a failing case is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A line of the corpus is wrong; `path:line: message`.
    #[error("{path}:{line}: {message}")]
    Corpus {
        path: String,
        line: usize,
        message: String,
    },
    /// A corpus file is wrong as a whole.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("cannot read {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the scripted agents")]
    Agents(#[source] std::io::Error),
    #[error("agent {0}: {1}")]
    Card(String, #[source] CardError),
    #[error("--only {0:?} matches no case")]
    NoCases(String),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] AgentDirectoryError),
}

impl EvalError {
    fn file(path: &Path, message: String) -> Self {
        EvalError::File {
            path: path.display().to_string(),
            message,
        }
    }

    /// An error about the case at `source` (`file:line`).
    fn case(source: &str, message: String) -> Self {
        match source.rsplit_once(':') {
            Some((path, line)) => EvalError::Corpus {
                path: path.to_owned(),
                line: line.parse().unwrap_or(0),
                message,
            },
            None => EvalError::File {
                path: source.to_owned(),
                message,
            },
        }
    }
}

/// How one case went.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOutcome {
    /// The case's id, which the report and the JSON line name failures by.
    pub id: String,
    /// The case's kind, for the score per kind.
    pub kind: String,
    /// The case's request, so the report reads without the corpus at hand.
    pub request: String,
    /// Why it failed, one line per failed check; empty when it passed.
    pub reasons: Vec<String>,
    /// What happened, in a line (agents, questions, final response), for `--verbose`.
    pub trace: String,
}

impl CaseOutcome {
    /// Every check held.
    pub fn passed(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which planner was measured.
    pub planner: PlannerKind,
    /// One per case run, in corpus order.
    pub outcomes: Vec<CaseOutcome>,
}

impl Report {
    /// The planner as `--planner` names it, which is how the report and its JSON line show it.
    fn planner_name(&self) -> &'static str {
        match self.planner {
            PlannerKind::Rules => "rules",
            PlannerKind::Llm => "llm",
        }
    }

    /// Passed cases over all cases (1 for no cases).
    pub fn score(&self) -> f64 {
        if self.outcomes.is_empty() {
            return 1.0;
        }
        self.passed() as f64 / self.outcomes.len() as f64
    }

    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed()).count()
    }

    /// (cases, passed) per kind, in the corpus's kind order.
    pub fn kinds(&self) -> Vec<(String, usize, usize)> {
        corpus::KINDS
            .iter()
            .filter_map(|kind| {
                let of: Vec<&CaseOutcome> =
                    self.outcomes.iter().filter(|o| o.kind == *kind).collect();
                (!of.is_empty()).then(|| {
                    (
                        (*kind).to_owned(),
                        of.len(),
                        of.iter().filter(|o| o.passed()).count(),
                    )
                })
            })
            .collect()
    }

    /// The ids of the failed cases, in corpus order.
    pub fn failed(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|o| !o.passed())
            .map(|o| o.id.as_str())
            .collect()
    }

    /// The summary as one JSON value (what the last line of `baton eval` prints).
    pub fn json(&self) -> Value {
        let kinds: serde_json::Map<String, Value> = self
            .kinds()
            .into_iter()
            .map(|(kind, cases, passed)| (kind, json!({"cases": cases, "passed": passed})))
            .collect();
        json!({
            "planner": self.planner_name(),
            "cases": self.outcomes.len(),
            "passed": self.passed(),
            "score": (self.score() * 1000.0).round() / 1000.0,
            "kinds": kinds,
            "failed": self.failed(),
        })
    }

    /// The summary as one line, keys in a fixed order: planner, cases, passed, score, kinds (in
    /// corpus order), failed. Scripts read this line; people read `text`.
    pub fn json_line(&self) -> String {
        let kinds: Vec<String> = self
            .kinds()
            .into_iter()
            .map(|(kind, cases, passed)| {
                format!("{}:{{\"cases\":{cases},\"passed\":{passed}}}", json!(kind))
            })
            .collect();
        format!(
            "{{\"planner\":{},\"cases\":{},\"passed\":{},\"score\":{},\"kinds\":{{{}}},\"failed\":{}}}",
            json!(self.planner_name()),
            self.outcomes.len(),
            self.passed(),
            json!((self.score() * 1000.0).round() / 1000.0),
            kinds.join(","),
            json!(self.failed()),
        )
    }

    /// The human-readable report: the cases `listing` asks for, a score per kind, and the total.
    pub fn text(&self, listing: Listing) -> String {
        let verbose = listing == Listing::EveryCase;
        let mut out = String::new();
        for o in &self.outcomes {
            if o.passed() && !verbose {
                continue;
            }
            let mark = if o.passed() { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark} {} [{}] {}\n", o.id, o.kind, o.request));
            for reason in &o.reasons {
                out.push_str(&format!("       - {reason}\n"));
            }
            if verbose {
                out.push_str(&format!("       · {}\n", o.trace));
            }
        }
        out.push('\n');
        for (kind, cases, passed) in self.kinds() {
            out.push_str(&format!(
                "{kind:14} {passed:3}/{cases:<3} {:.3}\n",
                passed as f64 / cases as f64
            ));
        }
        out.push_str(&format!(
            "{:14} {:3}/{:<3} {:.3}  (planner {})\n",
            "total",
            self.passed(),
            self.outcomes.len(),
            self.score(),
            self.planner_name()
        ));
        out
    }
}

/// `baton eval`: loads the corpus and runs it with the settings' planner.
pub async fn run(args: &EvalArgs) -> Result<Report, EvalError> {
    let corpus = corpus::load(&args.corpus)?;
    run_corpus(&corpus, &args.settings, args.only.as_deref()).await
}

/// Runs every case of `corpus` (only those of kind `only` or whose id starts with it, when
/// given).
pub async fn run_corpus(
    corpus: &Corpus,
    settings: &Settings,
    only: Option<&str>,
) -> Result<Report, EvalError> {
    let cases: Vec<&Case> = corpus
        .cases
        .iter()
        .filter(|c| only.is_none_or(|o| c.kind == o || c.id.starts_with(o)))
        .collect();
    if cases.is_empty() {
        return Err(EvalError::NoCases(only.unwrap_or_default().to_owned()));
    }
    let scripted = Arc::new(ScriptedAgents::start(&corpus.agents).await?);
    let mut settings = settings.clone();
    settings.database_url = "memory://".to_owned();
    let demo = builtin::demo_cards().map_err(StartupError::DemoCards)?;
    let runner = Runner {
        settings,
        scripted,
        demo_ids: demo.iter().map(|c| c.id.clone()).collect(),
        demo_names: demo
            .iter()
            .filter_map(|c| Some((c.id.clone(), c.builtin_name()?.to_owned())))
            .collect(),
    };
    let outcomes: Vec<Result<CaseOutcome, EvalError>> = futures_util::stream::iter(cases)
        .map(|case| runner.run_case(case))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(Report {
        planner: runner.settings.planner,
        outcomes: outcomes.into_iter().collect::<Result<_, _>>()?,
    })
}

/// What the cases of one run share: each builds its own engine from these.
struct Runner {
    settings: Settings,
    scripted: Arc<ScriptedAgents>,
    demo_ids: BTreeSet<String>,
    /// Demo card id → builtin agent name.
    demo_names: BTreeMap<String, String>,
}

/// Calls seen in one case: agent id → the arguments of each call (an answer to the agent's own
/// question merged into the call it answered).
type CallsByAgent = BTreeMap<String, Vec<BTreeMap<String, String>>>;

impl Runner {
    /// A fresh engine whose directory holds the case's agents. The scripted cards go into the
    /// store before the engine loads its directory from it; demo cards the case leaves out are
    /// removed through the directory service, as a user would remove them.
    async fn engine_for(&self, case: &Case) -> Result<Engine, EvalError> {
        let store: Arc<dyn Store> =
            store::connect("memory://", &self.settings.store_options()).await?;
        for card in self.scripted.cards() {
            if case.directory.holds(&card.id, AgentOrigin::Corpus) {
                store.put_agent(card).await?;
            }
        }
        let wants_demo = self
            .demo_ids
            .iter()
            .any(|id| case.directory.holds(id, AgentOrigin::Demo));
        let mut settings = self.settings.clone();
        settings.no_demo_agents = !wants_demo;
        let engine = app::engine_over(store, &settings).await?;
        let directory = AgentDirectory::new(
            engine.services().directory.clone(),
            engine.store().clone(),
            engine.services().agents.http().clone(),
        );
        for id in &self.demo_ids {
            if wants_demo && !case.directory.holds(id, AgentOrigin::Demo) {
                directory.remove(id).await?;
            }
        }
        Ok(engine)
    }

    async fn run_case(&self, case: &Case) -> Result<CaseOutcome, EvalError> {
        let engine = self.engine_for(case).await?;
        let thread_id = format!("eval-{}-{}", case.id, uuid::Uuid::now_v7().simple());
        let mut outcome = CaseOutcome {
            id: case.id.clone(),
            kind: case.kind.clone(),
            request: case.request.clone(),
            reasons: Vec::new(),
            trace: String::new(),
        };
        for (i, turn) in case.turns.iter().enumerate() {
            match start(&engine, &thread_id, turn).await {
                Ok(view) if view.status == ThreadStatus::Completed => {}
                Ok(view) => {
                    outcome.reasons.push(format!(
                        "earlier turn {} ({turn:?}) did not complete: {}",
                        i + 1,
                        describe(&view)
                    ));
                    return Ok(outcome);
                }
                Err(e) => {
                    outcome
                        .reasons
                        .push(format!("earlier turn {} failed: {e}", i + 1));
                    return Ok(outcome);
                }
            }
        }
        let builtin = engine.services().agents.builtin().clone();
        let before: BTreeMap<String, u64> = self
            .demo_names
            .iter()
            .map(|(id, name)| (id.clone(), builtin.calls(name)))
            .collect();
        let first = match start(&engine, &thread_id, &case.request).await {
            Ok(view) => view,
            Err(e) => {
                outcome.reasons.push(format!("the request failed: {e}"));
                return Ok(outcome);
            }
        };
        let mut questions: Vec<String> = first.questions.iter().map(|q| q.text.clone()).collect();
        let mut view = first.clone();
        let mut unused: Vec<PreparedAnswer> = case.answers.clone();
        let mut rounds = 0;
        while view.status == ThreadStatus::PendingUserInput && rounds < MAX_ROUNDS {
            let Some(question) = view.questions.first().cloned() else {
                break;
            };
            let Some(pick) = unused.iter().position(|a| {
                a.when
                    .as_deref()
                    .is_none_or(|w| mentions(&question.text, w))
            }) else {
                break;
            };
            let answer = unused.remove(pick);
            rounds += 1;
            view = match engine
                .answer(&thread_id, &answer.text, Some(&question.id))
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    outcome
                        .reasons
                        .push(format!("answering {:?} failed: {e}", answer.text));
                    return Ok(outcome);
                }
            };
            for q in &view.questions {
                if !questions.contains(&q.text) {
                    questions.push(q.text.clone());
                }
            }
        }
        let state = match engine.checkpoint(&thread_id).await {
            Ok(cp) => cp.state,
            Err(e) => {
                outcome.reasons.push(format!("cannot read the thread: {e}"));
                return Ok(outcome);
            }
        };
        let turn = case.turns.len() + 1;
        let wire = self.scripted.calls(&thread_id, turn);
        let calls = self.calls(&state, &wire, &builtin, &before);
        outcome.trace = trace(&state, &calls, &questions);
        check(
            case,
            &first,
            &view,
            &state,
            &wire,
            &calls,
            &unused,
            &mut outcome.reasons,
        );
        Ok(outcome)
    }

    /// Every agent called in the case's turn with the arguments it received: scripted agents as
    /// recorded on the wire; demo agents (in process) from the counters and the arguments the
    /// plan gave the agent that produced each result.
    fn calls(
        &self,
        state: &ThreadState,
        wire: &[Call],
        builtin: &builtin::BuiltinAgents,
        before: &BTreeMap<String, u64>,
    ) -> CallsByAgent {
        let mut out: CallsByAgent = BTreeMap::new();
        for call in wire {
            let list = out.entry(call.agent_id.clone()).or_default();
            match list.last_mut() {
                Some(last) if call.follow_up => last.extend(call.arguments.clone()),
                _ => list.push(call.arguments.clone()),
            }
        }
        for (id, name) in &self.demo_names {
            let made = builtin
                .calls(name)
                .saturating_sub(before.get(id).copied().unwrap_or(0));
            if made == 0 {
                continue;
            }
            let mut planned: Vec<BTreeMap<String, String>> = state
                .results
                .values()
                .filter(|r| r.outcome.agent_id() == Some(id.as_str()))
                .filter_map(|r| {
                    state
                        .candidates
                        .get(&r.task_id)?
                        .iter()
                        .find(|c| &c.agent_id == id)?
                        .arguments
                        .clone()
                })
                .collect();
            if planned.is_empty() {
                planned.push(BTreeMap::new());
            }
            out.insert(id.clone(), planned);
        }
        out
    }
}

async fn start(engine: &Engine, thread_id: &str, prompt: &str) -> Result<ThreadView, String> {
    engine
        .start(StartRequest {
            thread_id: Some(thread_id.to_owned()),
            prompt: prompt.to_owned(),
            max_results: 5,
            opened_by: None,
            webhook: None,
            access: crate::access::Access::Open,
        })
        .await
        .map_err(|e| e.to_string())
}

fn describe(view: &ThreadView) -> String {
    match view.status {
        ThreadStatus::PendingUserInput => format!(
            "it asked {:?}",
            view.questions.first().map_or("", |q| q.text.as_str())
        ),
        ThreadStatus::Error => format!("error: {}", view.error.as_deref().unwrap_or("?")),
        other => other.as_str().to_owned(),
    }
}

/// At most 160 characters of `text` (questions listing the whole directory are long).
fn short(text: &str) -> String {
    if text.chars().count() <= 160 {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(160).collect::<String>())
}

/// Whether `text` contains one of the `|`-separated alternatives, ignoring case.
fn mentions(text: &str, alternatives: &str) -> bool {
    let low = text.to_lowercase();
    alternatives
        .split('|')
        .map(|a| a.trim().to_lowercase())
        .any(|a| !a.is_empty() && low.contains(&a))
}

/// Two argument values agree: trimmed and case-insensitive, or numerically.
fn same_value(got: &str, want: &str) -> bool {
    let (g, w) = (got.trim(), want.trim());
    if g.eq_ignore_ascii_case(w) || g.to_lowercase() == w.to_lowercase() {
        return true;
    }
    matches!((g.parse::<f64>(), w.parse::<f64>()), (Ok(a), Ok(b)) if (a - b).abs() < 1e-9)
}

/// The primary agent of every task that has one, in task order.
fn primaries(state: &ThreadState) -> Vec<String> {
    state
        .tasks
        .iter()
        .filter_map(|t| state.candidates.get(&t.id)?.first())
        .map(|c| c.agent_id.clone())
        .collect()
}

fn trace(state: &ThreadState, calls: &CallsByAgent, questions: &[String]) -> String {
    let called: Vec<String> = calls
        .iter()
        .map(|(id, list)| {
            let args: Vec<String> = list
                .iter()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            format!("{id}({})", args.join(" | "))
        })
        .collect();
    let tasks: Vec<String> = state
        .tasks
        .iter()
        .map(|t| format!("{:?}", t.description))
        .collect();
    format!(
        "tasks [{}]; called [{}]; asked {:?}; {}: {:?}",
        tasks.join(", "),
        called.join(", "),
        questions,
        state.status.as_str(),
        state
            .final_response
            .as_deref()
            .map(|r| r.chars().take(240).collect::<String>())
            .unwrap_or_default()
    )
}

/// Whether `text` shows a JSON object (`{"key": …}`) as it came from an agent.
fn has_json_object(text: &str) -> bool {
    text.char_indices()
        .filter(|(_, c)| *c == '{')
        .any(|(i, _)| {
            matches!(
                serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>().next(),
                Some(Ok(Value::Object(map))) if !map.is_empty()
            )
        })
}

/// Numbers in an agent's output (or the scalar values of a JSON output): the facts a composed
/// answer must keep.
fn facts(output: &str) -> Vec<String> {
    if let Ok(value) = serde_json::from_str::<Value>(output)
        && value.is_object()
    {
        let mut out = Vec::new();
        scalars(&value, &mut out);
        return out;
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = output.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let inner = (*c == '.' || *c == ',')
            && !current.is_empty()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || inner {
            current.push(*c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn scalars(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(list) => list.iter().for_each(|v| scalars(v, out)),
        Value::Object(map) => map.values().for_each(|v| scalars(v, out)),
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    case: &Case,
    first: &ThreadView,
    last: &ThreadView,
    state: &ThreadState,
    wire: &[Call],
    calls: &CallsByAgent,
    unused: &[PreparedAnswer],
    reasons: &mut Vec<String>,
) {
    let e = &case.expect;
    // A question first, exactly when one is expected.
    let asked_first = first.status == ThreadStatus::PendingUserInput && !first.questions.is_empty();
    let first_text: Vec<&str> = first.questions.iter().map(|q| q.text.as_str()).collect();
    if asked_first && !e.question {
        reasons.push(format!(
            "asked {:?} but no question was expected",
            short(&first_text.join(" / "))
        ));
    }
    if !asked_first && e.question {
        reasons.push(format!(
            "expected a question first, but the thread went {}",
            if first.status == ThreadStatus::Completed {
                "straight to an answer"
            } else {
                first.status.as_str()
            }
        ));
    }
    if asked_first {
        let all = first_text.join(" ");
        for m in &e.question_mentions {
            if !mentions(&all, m) {
                reasons.push(format!("the question {all:?} does not mention {m:?}"));
            }
        }
        if let Some(n) = e.first_questions
            && first.questions.len() != n
        {
            reasons.push(format!(
                "expected {n} questions at once, got {}: {first_text:?}",
                first.questions.len()
            ));
        }
    }
    // The conversation ran its course.
    match last.status {
        ThreadStatus::PendingUserInput if !case.answers.is_empty() => {
            reasons.push(format!(
                "still asking after the prepared answers: {:?}",
                short(last.questions.first().map_or("", |q| q.text.as_str()))
            ));
        }
        ThreadStatus::Error => reasons.push(format!(
            "the thread failed: {}",
            last.error.as_deref().unwrap_or("no reason given")
        )),
        _ => {}
    }
    if !unused.is_empty() && last.status == ThreadStatus::Completed {
        reasons.push(format!(
            "{} prepared answer(s) never asked for (first: {:?})",
            unused.len(),
            unused[0].text
        ));
    }
    // Routing: the primaries of the final plan.
    let mut got = primaries(state);
    got.sort();
    let mut want = e.agents.clone();
    want.sort();
    if got != want {
        reasons.push(format!("routed to {got:?}, expected {want:?}"));
    }
    // Calls: none outside the expected set, none at all for no_call, every expected agent called
    // once the thread completed.
    let called: Vec<&String> = calls.keys().collect();
    if e.no_call && !called.is_empty() {
        reasons.push(format!("called {called:?} although no agent fits"));
    } else {
        for id in &called {
            if !e.agents.contains(id) {
                reasons.push(format!("called {id}, which is not expected"));
            }
        }
    }
    if last.status == ThreadStatus::Completed {
        for id in &e.agents {
            if !calls.contains_key(id) {
                reasons.push(format!("{id} was never called"));
            }
        }
    }
    // Arguments: each expected call matched by one call the agent received.
    for (agent, expected_calls) in &e.arguments {
        let Some(received) = calls.get(agent) else {
            // A thread stopped by a question it should not have asked is reported as such.
            if last.status == ThreadStatus::Completed {
                reasons.push(format!(
                    "{agent} received no call, so none of its arguments"
                ));
            }
            continue;
        };
        for expected in expected_calls {
            let matches = |got: &BTreeMap<String, String>| {
                expected.iter().all(|(k, accepted)| {
                    got.get(k)
                        .is_some_and(|v| accepted.iter().any(|a| same_value(v, a)))
                })
            };
            if !received.iter().any(matches) {
                let want: Vec<String> = expected
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.join("|")))
                    .collect();
                let got: Vec<String> = received.iter().map(|a| format!("{a:?}")).collect();
                reasons.push(format!(
                    "{agent} should get {} but received {}",
                    want.join(", "),
                    got.join(" / ")
                ));
            }
        }
    }
    // The rest needs a finished turn (a thread still asking is reported above).
    if last.status != ThreadStatus::Completed {
        return;
    }
    // Dependencies: the consumer's task consumes the producer's, and reads its output.
    for (consumer, producer) in &e.depends {
        let task_of = |agent: &str| {
            state.results.values().find_map(|r| match &r.outcome {
                TaskOutcome::Done { agent_id, output } if agent_id == agent => {
                    Some((r.task_id.clone(), output.clone()))
                }
                _ => None,
            })
        };
        match (task_of(consumer), task_of(producer)) {
            (Some((consumer_task, _)), Some((producer_task, output))) => {
                let linked = state
                    .task(&consumer_task)
                    .is_some_and(|t| t.depends_on.contains(&producer_task));
                if !linked {
                    reasons.push(format!("{consumer} does not wait for {producer}'s output"));
                }
                let on_wire: Vec<&Call> = wire.iter().filter(|c| &c.agent_id == consumer).collect();
                let head: String = output.chars().take(40).collect();
                if !on_wire.is_empty()
                    && !on_wire.iter().any(|c| {
                        c.text.contains(&head) || c.arguments.values().any(|v| v.contains(&head))
                    })
                {
                    reasons.push(format!("{consumer} did not receive {producer}'s output"));
                }
            }
            _ => reasons.push(format!(
                "{consumer} after {producer}: not both answered, cannot chain them"
            )),
        }
    }
    // The final response.
    let response = state.final_response.clone().unwrap_or_default();
    for m in &e.response_mentions {
        if !mentions(&response, m) {
            reasons.push(format!("the final response does not mention {m:?}"));
        }
    }
    if e.composed {
        let low = response.trim_start().to_lowercase();
        if response.trim().is_empty() {
            reasons.push("no final response".to_owned());
        } else {
            if low.starts_with("here is what i found") {
                reasons.push(
                    "the final response is a raw list under \"Here is what I found\"".to_owned(),
                );
            }
            if has_json_object(&response) {
                reasons.push("the final response shows raw JSON".to_owned());
            }
            // The answers nobody consumed are what the user reads: each must show in the
            // response by at least one of its facts (case-specific essentials go in
            // response_mentions).
            let consumed: BTreeSet<&TaskId> =
                state.tasks.iter().flat_map(|t| &t.depends_on).collect();
            let lower = response.to_lowercase();
            for (agent_id, output) in state
                .results
                .values()
                .filter(|r| !consumed.contains(&r.task_id))
                .filter_map(|r| match &r.outcome {
                    TaskOutcome::Done { agent_id, output } => Some((agent_id, output)),
                    TaskOutcome::Failed { .. } => None,
                })
            {
                let facts = facts(output);
                if !facts.is_empty() && !facts.iter().any(|f| lower.contains(&f.to_lowercase())) {
                    reasons.push(format!(
                        "the final response drops what {agent_id} said (none of {facts:?})"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_numbers_or_json_scalars() {
        assert_eq!(
            facts("[demo data] Weather in Paris: 23°C, sunny, 40% chance of rain."),
            ["23", "40"]
        );
        assert_eq!(facts("AAPL 1,234.5 up"), ["1,234.5"]);
        let mut json = facts(r#"{"symbol":"AAPL","price":187.42}"#);
        json.sort();
        assert_eq!(json, ["187.42", "AAPL"]);
    }

    #[test]
    fn raw_json_is_told_from_prose() {
        assert!(has_json_object(r#"Quote: {"symbol":"AAPL","price":1}"#));
        assert!(!has_json_object(
            r#"Here is what I found for "x": {not json}"#
        ));
        assert!(!has_json_object("an empty {} pair"));
    }

    #[test]
    fn values_compare_loosely() {
        assert!(same_value(" aapl ", "AAPL"));
        assert!(same_value("100.0", "100"));
        assert!(!same_value("MSFT", "AAPL"));
        assert!(mentions("Which ticker symbol?", "symbol|ticker"));
        assert!(!mentions("Which date?", "symbol|ticker"));
    }
}
