//! The `llm` planner end to end: a real Baton server (demo agents in process) whose planner talks
//! to a scripted fake OpenAI-compatible endpoint on a loopback port. The fake routes each request
//! to a decision by its schema's name, answers from a queue per decision (then from a standing
//! responder), and records every request with its headers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use baton::config::{PlannerKind, Settings};
use baton::planner::llm::client::ApiKey;
use serde_json::{Value, json};

use crate::helpers::serve_on_loopback;
use crate::helpers::{
    TestApp, assert_completed_by, final_text, primary_ids, spawn_app_with, thread_of,
    unreachable_base_url,
};

/// What the fake model does with one request.
#[derive(Clone)]
enum Reply {
    /// 200 with this message content (and usage 100 prompt / 20 completion tokens).
    Content(String),
    /// An error status with headers and body.
    Status(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Sleeps this long before answering `{}` (longer than the planner waits).
    Hang(Duration),
    /// 401 quoting the `Authorization` header it got, as careless endpoints do.
    EchoAuthorization,
}

impl Reply {
    fn json(value: Value) -> Reply {
        Reply::Content(value.to_string())
    }
}

type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// One request the fake received.
#[derive(Clone)]
struct Seen {
    decision: String,
    headers: HeaderMap,
    body: Value,
}

impl Seen {
    /// The decision's input: the first user message, which the planner sends as JSON.
    fn context(&self) -> Value {
        context_of(&self.body)
    }

    /// Every message's content, joined (to look for feedback and answers).
    fn transcript(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

fn context_of(body: &Value) -> Value {
    body["messages"][1]["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null)
}

#[derive(Default)]
struct Script {
    queues: HashMap<String, VecDeque<Reply>>,
    standing: HashMap<String, Responder>,
    seen: Vec<Seen>,
    /// Milliseconds every answer is delayed by.
    delay_ms: u64,
}

/// The scripted OpenAI-compatible endpoint.
#[derive(Clone)]
struct FakeLlm {
    base_url: String,
    script: Arc<Mutex<Script>>,
}

impl FakeLlm {
    /// Serves on a loopback port, with standing answers for `choose`, `arguments` and `compose`
    /// (see `standard_*`); `parse` must be scripted by each test.
    async fn start() -> FakeLlm {
        let script = Arc::new(Mutex::new(Script::default()));
        let router = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(script.clone());
        let base_url = format!("{}/v1", serve_on_loopback(|_| router).await);
        let fake = FakeLlm { base_url, script };
        fake.always("choose", standard_choose);
        fake.always("arguments", standard_arguments);
        fake.always("compose", standard_compose);
        fake
    }

    /// Queues `replies` for `decision`, answered before its standing responder.
    fn then(&self, decision: &str, replies: impl IntoIterator<Item = Reply>) {
        self.lock()
            .queues
            .entry(decision.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Answers `decision` with `respond` once its queue is empty.
    fn always(&self, decision: &str, respond: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        self.lock()
            .standing
            .insert(decision.to_owned(), Arc::new(respond));
    }

    fn delay(&self, ms: u64) {
        self.lock().delay_ms = ms;
    }

    fn seen(&self, decision: &str) -> Vec<Seen> {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.decision == decision)
            .cloned()
            .collect()
    }

    fn all_seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().expect("script lock")
    }
}

/// The decision a request is for: the schema's name, or the marker the planner puts in the
/// system prompt when it sends the schema there.
fn decision_of(body: &Value) -> String {
    if let Some(name) = body["response_format"]["json_schema"]["name"].as_str() {
        return name.to_owned();
    }
    let system = body["messages"][0]["content"].as_str().unwrap_or_default();
    system
        .split("(decision: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or("unknown")
        .to_owned()
}

async fn completions(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let decision = decision_of(&body);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (reply, delay) = {
        let mut script = script.lock().expect("script lock");
        script.seen.push(Seen {
            decision: decision.clone(),
            headers,
            body: body.clone(),
        });
        let queued = script
            .queues
            .get_mut(&decision)
            .and_then(VecDeque::pop_front);
        let reply = queued.or_else(|| script.standing.get(&decision).map(|r| r(&body)));
        (reply, script.delay_ms)
    };
    tokio::time::sleep(Duration::from_millis(delay)).await;
    match reply {
        Some(Reply::Content(content)) => axum::Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }))
        .into_response(),
        Some(Reply::Status(code, headers, text)) => {
            let mut response =
                (StatusCode::from_u16(code).expect("status"), text.to_owned()).into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
        Some(Reply::EchoAuthorization) => (
            StatusCode::UNAUTHORIZED,
            format!("{{\"error\": \"invalid credentials: {authorization}\"}}"),
        )
            .into_response(),
        Some(Reply::Hang(duration)) => {
            tokio::time::sleep(duration).await;
            axum::Json(json!({})).into_response()
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("nothing scripted for {decision}"),
        )
            .into_response(),
    }
}

/// Keeps every candidate, with a reason.
fn standard_choose(body: &Value) -> Reply {
    let chosen: Vec<Value> = context_of(body)["candidates"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| json!({"agent_id": c["agent_id"], "reason": "fits the task"}))
                .collect()
        })
        .unwrap_or_default();
    Reply::json(json!({ "chosen": chosen }))
}

/// Fills the demo inputs it knows: the location is the task description's last word.
fn standard_arguments(body: &Value) -> Reply {
    let context = context_of(body);
    let description = context["task"]["description"].as_str().unwrap_or_default();
    let last_word = description
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_owned();
    let known = BTreeMap::from([
        ("location", last_word),
        ("amount", "100".to_owned()),
        ("from_currency", "USD".to_owned()),
        ("to_currency", "EUR".to_owned()),
    ]);
    let arguments: Vec<Value> = context["skill"]["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .filter_map(|i| {
                    let name = i["name"].as_str()?;
                    let value = known.get(name)?;
                    Some(json!({"name": name, "value": value}))
                })
                .collect()
        })
        .unwrap_or_default();
    Reply::json(json!({ "arguments": arguments, "missing": null }))
}

/// "LLM summary:" and every task's output.
fn standard_compose(body: &Value) -> Reply {
    let outputs: Vec<String> = context_of(body)["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| {
                    t["result"]["output"]
                        .as_str()
                        .unwrap_or("(none)")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    Reply::json(json!({ "response": format!("LLM summary: {}", outputs.join(" | ")) }))
}

fn task(id: &str, description: &str, keywords: &[&str], depends_on: &[&str]) -> Value {
    json!({
        "id": id,
        "name": description.to_lowercase().replace(' ', "-"),
        "description": description,
        "keywords": keywords,
        "depends_on": depends_on,
    })
}

fn tasks(tasks: Vec<Value>) -> Reply {
    Reply::json(json!({"action": "tasks", "question": null, "tasks": tasks}))
}

/// A plan of one task, `t1`, that depends on nothing.
fn one_task(description: &str, keywords: &[&str]) -> Reply {
    tasks(vec![task("t1", description, keywords, &[])])
}

fn weather_and_currency() -> Reply {
    tasks(vec![
        task("t1", "Weather in Paris", &["weather", "forecast"], &[]),
        task(
            "t2",
            "Convert 100 USD to EUR",
            &["currency", "convert", "usd", "eur"],
            &[],
        ),
    ])
}

/// The decisions the rules planner made instead of the model, with why, from a thread's state.
fn fallbacks_of(state: &Value) -> &[Value] {
    state["planner"]["fallbacks"].as_array().expect("fallbacks")
}

/// Why the `i`-th decision of a thread fell back to the rules planner.
fn fallback_reason(state: &Value, i: usize) -> &str {
    fallbacks_of(state)[i]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason for fallback {i}: {state}"))
}

/// Which decisions fell back, in the order they were made.
fn decisions_of(fallbacks: &[Value]) -> Vec<&str> {
    fallbacks
        .iter()
        .map(|f| f["decision"].as_str().expect("decision"))
        .collect()
}

/// The currency agent's arguments, as a model that read them right gives them.
fn conversion_arguments(amount: &str, from: &str, to: &str) -> Reply {
    Reply::json(json!({
        "arguments": [
            {"name": "amount", "value": amount},
            {"name": "from_currency", "value": from},
            {"name": "to_currency", "value": to},
        ],
        "missing": null,
    }))
}

/// The thread's state, after checking the model made every decision (no fallback to the rules
/// planner).
async fn state_without_fallbacks(app: &TestApp, thread: &str) -> Value {
    let state = app.state_of(thread).await;
    assert_eq!(
        state["planner"]["fallbacks"],
        json!([]),
        "the model made every decision"
    );
    state
}

async fn app_for(fake: &FakeLlm, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let base_url = fake.base_url.clone();
    spawn_app_with(move |s| {
        s.planner = PlannerKind::Llm;
        s.llm_base_url = Some(base_url);
        s.llm_model = Some("test-model".to_owned());
        s.llm_timeout_ms = 2_000;
        configure(s);
    })
    .await
}

#[tokio::test]
async fn the_model_plans_several_tasks_chooses_fills_arguments_and_composes() {
    let fake = FakeLlm::start().await;
    fake.then("parse", [weather_and_currency()]);
    let app = app_for(&fake, |_| {}).await;

    let r = app
        .chat("I'm off to Paris: how's the weather, and what are 100 dollars in euros?")
        .await;
    assert_completed_by(&r, &["demo.weather", "demo.currency"]);
    let text = final_text(&r);
    assert!(text.starts_with("LLM summary: "), "{text}");
    assert!(text.contains("Weather in Paris"), "{text}");
    assert!(text.contains("100 USD = "), "{text}");

    let state = state_without_fallbacks(&app, &thread_of(&r)).await;
    assert_eq!(state["tasks"][1]["description"], "Convert 100 USD to EUR");
    let weather = &state["candidates"]["t1"][0];
    assert_eq!(weather["reason"], "fits the task");
    assert_eq!(weather["arguments"]["location"], "Paris");
    assert_eq!(
        state["candidates"]["t2"][0]["arguments"],
        json!({"amount": "100", "from_currency": "USD", "to_currency": "EUR"})
    );

    // The parse prompt shows the model the directory, so it can tell when nothing fits.
    let parse = &fake.seen("parse")[0];
    let agents = parse.context()["agents"].to_string();
    assert!(agents.contains("Currency Converter"), "{agents}");
    assert_eq!(parse.body["model"], "test-model");
    assert_eq!(parse.body["response_format"]["type"], "json_schema");
    assert_eq!(parse.body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        parse.body["response_format"]["json_schema"]["schema"]["required"],
        json!(["action", "question", "tasks"])
    );
    assert_eq!(fake.seen("choose").len(), 2, "one choice per task");
    // The model fills the arguments of the agent each task calls; a fallback agent's come from
    // the rules planner, so a failing model costs a task one deadline, not one per candidate.
    assert_eq!(
        fake.seen("arguments").len(),
        2,
        "one arguments decision per task"
    );
    let fallback = &state["candidates"]["t1"][1];
    assert_eq!(fallback["agent_id"], "demo.climate", "{state}");
    assert_eq!(fallback["arguments"]["location"], "Paris", "{state}");
    assert_eq!(fake.seen("compose").len(), 1);
    for seen in fake.all_seen() {
        assert!(
            seen.headers.get("authorization").is_none(),
            "no key configured, no Authorization header"
        );
    }
}

#[tokio::test]
async fn the_model_asks_and_the_answer_changes_the_plan() {
    let fake = FakeLlm::start().await;
    fake.then(
        "parse",
        [
            Reply::json(json!({
                "action": "ask",
                "question": "Which city are you travelling to?",
                "tasks": [],
            })),
            one_task("Weather in Rome", &["weather", "forecast"]),
        ],
    );
    let app = app_for(&fake, |_| {}).await;

    let r = app.chat("What should I pack for my trip?").await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    assert_eq!(r["question_for_user"], "Which city are you travelling to?");
    assert_eq!(
        fake.seen("choose").len(),
        0,
        "nothing planned before the answer"
    );
    let thread = thread_of(&r);

    let (code, done) = app.answer(&thread, "Rome, next week").await;
    assert_eq!(code, 200, "{done}");
    assert_completed_by(&done, &["demo.weather"]);
    let text = final_text(&done);
    assert!(text.contains("Weather in Rome"), "{text}");

    let parses = fake.seen("parse");
    assert_eq!(parses.len(), 2);
    let answers = &parses[1].context()["answers"];
    assert_eq!(answers[0]["question"], "Which city are you travelling to?");
    assert_eq!(answers[0]["answer"], "Rome, next week");
    assert_eq!(
        parses[1].context()["prompt"],
        "What should I pack for my trip?"
    );
    let state = state_without_fallbacks(&app, &thread).await;
    assert_eq!(state["tasks"][0]["description"], "Weather in Rome");
}

#[tokio::test]
async fn the_model_builds_arguments_from_the_skill_inputs() {
    let fake = FakeLlm::start().await;
    fake.then(
        "parse",
        [one_task(
            "Convert two hundred and fifty pounds into yen",
            &["currency", "convert", "exchange"],
        )],
    );
    fake.always("arguments", |body| {
        let inputs = context_of(body)["skill"]["inputs"].clone();
        if inputs.to_string().contains("from_currency") {
            conversion_arguments("250", "GBP", "JPY")
        } else {
            Reply::json(json!({"arguments": [], "missing": null}))
        }
    });
    let app = app_for(&fake, |_| {}).await;

    let r = app
        .chat("How much is two hundred and fifty pounds in yen?")
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(primary_ids(&r)[0], "demo.currency");
    let text = final_text(&r);
    assert!(text.contains("250 GBP = "), "{text}");
    assert!(text.contains("JPY"), "{text}");

    let asked = fake
        .seen("arguments")
        .into_iter()
        .find(|s| s.context()["agent"]["id"] == "demo.currency")
        .expect("arguments asked for the currency agent");
    let inputs = &asked.context()["skill"]["inputs"];
    assert_eq!(inputs[0]["name"], "amount");
    assert_eq!(inputs[0]["required"], true);
    let state = state_without_fallbacks(&app, &thread_of(&r)).await;
    assert_eq!(
        state["candidates"]["t1"][0]["arguments"],
        json!({"amount": "250", "from_currency": "GBP", "to_currency": "JPY"})
    );
}

#[tokio::test]
async fn the_model_reports_a_missing_input_and_the_user_is_asked() {
    let fake = FakeLlm::start().await;
    fake.then(
        "parse",
        [
            one_task("Convert some money", &["currency", "convert"]),
            one_task("Convert 40 EUR to USD", &["currency", "convert"]),
        ],
    );
    fake.always("arguments", |body| {
        let context = context_of(body);
        let description = context["task"]["description"].as_str().unwrap_or_default();
        if description.contains("40 EUR") {
            conversion_arguments("40", "EUR", "USD")
        } else {
            Reply::json(json!({
                "arguments": [],
                "missing": {"input": "amount", "question": "How much money should I convert, and between which currencies?"},
            }))
        }
    });
    let app = app_for(&fake, |_| {}).await;
    let r = app.chat("Convert some money").await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    assert_eq!(
        r["question_for_user"],
        "How much money should I convert, and between which currencies?"
    );
    let (_, done) = app.answer(&thread_of(&r), "40 EUR to USD").await;
    assert_eq!(done["status"], "completed", "{done}");
    let text = final_text(&done);
    assert!(text.contains("40 EUR = "), "{text}");
    let second = &fake.seen("parse")[1];
    assert_eq!(second.context()["answers"][0]["answer"], "40 EUR to USD");
    assert_eq!(second.context()["answers"][0]["input"], "amount");
}

#[tokio::test]
async fn invalid_output_is_retried_with_the_error_then_the_rules_planner_decides() {
    let fake = FakeLlm::start().await;
    fake.always("parse", |_| {
        Reply::Content("Sure! Here are your tasks: weather, currency.".into())
    });
    fake.always("choose", |_| {
        Reply::json(json!({"chosen": [{"agent_id": "demo.nonexistent", "reason": "sounds right"}]}))
    });
    let app = app_for(&fake, |_| {}).await;

    let r = app
        .chat("What's the weather in Paris and convert 100 USD to EUR")
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    // The rules planner's plan and choice: both agents still called.
    assert_eq!(primary_ids(&r), ["demo.weather", "demo.currency"]);
    let text = final_text(&r);
    assert!(
        text.starts_with("LLM summary: "),
        "compose still by the model: {text}"
    );

    let parses = fake.seen("parse");
    assert_eq!(parses.len(), 3, "first try plus two corrections");
    assert!(
        parses[1].transcript().contains("That answer is invalid"),
        "the error goes back to the model"
    );
    assert_eq!(fake.seen("choose").len(), 6, "three tries per task");

    let state = app.state_of(&thread_of(&r)).await;
    let fallbacks = fallbacks_of(&state);
    assert_eq!(fallbacks.len(), 3, "{fallbacks:?}");
    assert_eq!(fallbacks[0]["decision"], "parse");
    assert!(
        fallback_reason(&state, 0).contains("invalid output after 3 tries"),
        "{fallbacks:?}"
    );
    assert_eq!(fallbacks[1]["decision"], "choose");
    assert_eq!(fallbacks[1]["task_id"], "t1");
    assert!(
        fallback_reason(&state, 1).contains("\"demo.nonexistent\" is not one of the candidates"),
        "{fallbacks:?}"
    );
    assert_eq!(fallbacks[2]["task_id"], "t2");
    // The rules planner's reason stays with its choice.
    assert_eq!(
        state["candidates"]["t1"][0]["reason"]
            .as_str()
            .map(|r| r.starts_with("covers")),
        Some(true)
    );
}

#[tokio::test]
async fn one_invalid_answer_is_corrected_without_a_fallback() {
    let fake = FakeLlm::start().await;
    fake.then(
        "parse",
        [
            tasks(vec![
                task("t1", "Weather in Paris", &["weather"], &[]),
                task("t2", "Convert 100 USD to EUR", &["currency"], &["t3"]),
            ]),
            weather_and_currency(),
        ],
    );
    let app = app_for(&fake, |_| {}).await;
    let r = app.chat("Weather in Paris, and 100 USD in EUR").await;
    assert_completed_by(&r, &["demo.weather", "demo.currency"]);

    let parses = fake.seen("parse");
    assert_eq!(parses.len(), 2);
    let retry = &parses[1].body["messages"];
    let messages = retry.as_array().expect("messages");
    assert_eq!(messages.len(), 4, "system, request, bad answer, feedback");
    assert_eq!(messages[2]["role"], "assistant");
    assert!(
        messages[2]["content"]
            .as_str()
            .expect("content")
            .contains("t3")
    );
    assert_eq!(messages[3]["role"], "user");
    let feedback = messages[3]["content"].as_str().expect("feedback");
    assert!(
        feedback.contains("task t2 depends on \"t3\", which is not an earlier task"),
        "{feedback}"
    );
    state_without_fallbacks(&app, &thread_of(&r)).await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_then_the_answer_used() {
    let fake = FakeLlm::start().await;
    fake.then(
        "parse",
        [
            Reply::Status(429, vec![("retry-after", "1")], "slow down"),
            weather_and_currency(),
        ],
    );
    let app = app_for(&fake, |_| {}).await;
    let r = app.chat("Weather in Paris and 100 USD in EUR").await;
    assert_completed_by(&r, &["demo.weather", "demo.currency"]);
    assert_eq!(fake.seen("parse").len(), 2);
    let state = state_without_fallbacks(&app, &thread_of(&r)).await;
    let calls = state["planner"]["model_calls"].as_u64().expect("calls");
    assert_eq!(
        calls as usize,
        fake.all_seen().len(),
        "the 429 counts as a call"
    );
}

#[tokio::test]
async fn server_errors_exhaust_the_retries_then_the_rules_planner_decides() {
    let fake = FakeLlm::start().await;
    fake.always("parse", |_| Reply::Status(503, vec![], "overloaded"));
    let app = app_for(&fake, |s| s.llm_attempts = 2).await;
    let r = app.chat("What's the weather in Paris").await;
    assert_completed_by(&r, &["demo.weather"]);
    assert_eq!(fake.seen("parse").len(), 2, "--llm-attempts 2");
    let state = app.state_of(&thread_of(&r)).await;
    let fallback = &state["planner"]["fallbacks"][0];
    assert_eq!(fallback["decision"], "parse");
    let reason = fallback_reason(&state, 0);
    assert!(reason.contains("503"), "{reason}");
}

#[tokio::test]
async fn a_model_that_is_down_leaves_every_decision_to_the_rules_planner() {
    // A port nothing listens on: connection refused.
    let base = unreachable_base_url().await;
    let app = spawn_app_with(move |s| {
        s.planner = PlannerKind::Llm;
        s.llm_base_url = Some(base);
        s.llm_model = Some("m".into());
        s.llm_attempts = 1;
    })
    .await;
    let r = app
        .chat("What's the weather in Paris and convert 100 USD to EUR")
        .await;
    assert_completed_by(&r, &["demo.weather", "demo.currency"]);
    let text = final_text(&r);
    assert!(
        text.starts_with("All 2 parts of your request are done"),
        "{text}"
    );
    let state = app.state_of(&thread_of(&r)).await;
    let decisions = decisions_of(fallbacks_of(&state));
    assert_eq!(decisions.first(), Some(&"parse"));
    assert_eq!(decisions.last(), Some(&"compose"));
    assert!(decisions.contains(&"choose") && decisions.contains(&"arguments"));
    let reason = fallback_reason(&state, 0);
    assert!(
        reason.contains("cannot reach the model endpoint"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_model_that_hangs_is_cut_off_and_the_thread_completes() {
    let fake = FakeLlm::start().await;
    fake.always("parse", |_| Reply::Hang(Duration::from_secs(60)));
    fake.always("compose", |_| Reply::Hang(Duration::from_secs(60)));
    let app = app_for(&fake, |s| {
        s.llm_timeout_ms = 300;
        s.llm_attempts = 2;
        s.llm_deadline_ms = 5_000;
    })
    .await;
    let r = app.chat("What's the weather in Paris").await;
    assert_completed_by(&r, &["demo.weather"]);
    let text = final_text(&r);
    assert!(
        text.ends_with("(Answered by Weather.)"),
        "rules compose: {text}"
    );
    let state = app.state_of(&thread_of(&r)).await;
    let fallbacks = fallbacks_of(&state);
    let decisions = decisions_of(fallbacks);
    // Once the model has not answered, the turn's later decisions are not waited for: the rules
    // planner makes them at once, and the model is not asked again.
    assert_eq!(decisions, ["parse", "choose", "arguments", "compose"]);
    let first = fallback_reason(&state, 0);
    assert!(
        first.contains("did not answer within") || first.contains("deadline"),
        "{first}"
    );
    for f in &fallbacks[1..] {
        assert_eq!(
            f["reason"], "the model did not answer earlier in this turn",
            "{f}"
        );
        assert_eq!(f["model_unreachable"], true, "{f}");
    }
    assert!(fake.seen("choose").is_empty());
    assert!(fake.seen("arguments").is_empty());
    assert!(fake.seen("compose").is_empty());
}

#[tokio::test]
async fn the_deadline_bounds_a_decision_whatever_the_retries() {
    let fake = FakeLlm::start().await;
    fake.always("parse", |_| Reply::Hang(Duration::from_secs(60)));
    let app = app_for(&fake, |s| {
        s.llm_timeout_ms = 30_000;
        s.llm_attempts = 5;
        s.llm_deadline_ms = 500;
    })
    .await;
    let r = app.chat("What's the weather in Paris").await;
    assert_eq!(r["status"], "completed", "{r}");
    let state = app.state_of(&thread_of(&r)).await;
    let reason = fallback_reason(&state, 0);
    assert_eq!(reason, "no valid answer within the 500 ms deadline");
    assert_eq!(fake.seen("parse").len(), 1);
}

#[tokio::test]
async fn an_endpoint_refusing_response_format_gets_the_schema_in_the_prompt() {
    let fake = FakeLlm::start().await;
    let refuse_format = |body: &Value, then: Reply| {
        if body.get("response_format").is_some() {
            Reply::Status(400, vec![], "response_format is not supported")
        } else {
            then
        }
    };
    fake.always("parse", move |body| {
        refuse_format(body, weather_and_currency())
    });
    fake.always("choose", move |body| {
        refuse_format(body, standard_choose(body))
    });
    let app = app_for(&fake, |_| {}).await;
    let r = app.chat("Weather in Paris and 100 USD in EUR").await;
    assert_completed_by(&r, &["demo.weather", "demo.currency"]);
    let parses = fake.seen("parse");
    assert_eq!(parses.len(), 2);
    assert!(parses[1].body.get("response_format").is_none());
    let system = parses[1].body["messages"][0]["content"]
        .as_str()
        .expect("system");
    assert!(
        system.contains("\"required\":[\"action\",\"question\",\"tasks\"]"),
        "{system}"
    );
    // Remembered for the process: no later request carries response_format.
    let later = fake.all_seen();
    assert!(
        later[2..]
            .iter()
            .all(|s| s.body.get("response_format").is_none())
    );
    assert_eq!(
        fake.seen("choose").len(),
        2,
        "no refused try for later decisions"
    );
    state_without_fallbacks(&app, &thread_of(&r)).await;
}

#[tokio::test]
async fn the_key_goes_to_the_model_and_nowhere_else() {
    const KEY: &str = "sk-test-4f9a2c71e0b3d8aa";
    let fake = FakeLlm::start().await;
    fake.then(
        "parse",
        [
            Reply::json(json!({"action": "ask", "question": "Which city?", "tasks": []})),
            one_task("Weather in Oslo", &["weather"]),
        ],
    );
    fake.always("compose", |_| Reply::EchoAuthorization);
    let app = app_for(&fake, |s| s.llm_api_key = ApiKey::new(KEY)).await;

    let mut bodies = Vec::new();
    let r = app.chat("Weather please").await;
    bodies.push(r.to_string());
    let thread = thread_of(&r);
    let (_, done) = app.answer(&thread, "Oslo").await;
    assert_eq!(done["status"], "completed", "{done}");
    bodies.push(done.to_string());
    for path in [
        format!("/api/threads/{thread}/checkpoint"),
        format!("/api/threads/{thread}/history"),
        format!("/api/threads/{thread}/checkpoints/1"),
        format!("/api/chat/status/{thread}"),
        "/api/health".to_owned(),
    ] {
        let (code, body) = app.get(&path).await;
        assert_eq!(code, 200, "{path}: {body}");
        bodies.push(body.to_string());
    }
    // The endpoint quoted the key in its 401: the recorded fallback reason has it cut out.
    let checkpoint = &bodies[2];
    assert!(
        checkpoint.contains("invalid credentials: Bearer <redacted>"),
        "{checkpoint}"
    );
    for body in &bodies {
        assert!(!body.contains(KEY), "the key leaked: {body}");
        assert!(!body.contains("sk-test"), "part of the key leaked: {body}");
    }
    let seen = fake.all_seen();
    assert!(seen.len() >= 4);
    for s in seen {
        assert_eq!(
            s.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {KEY}").as_str()),
            "{} request",
            s.decision
        );
    }
}

#[tokio::test]
async fn tokens_and_model_time_are_recorded_per_thread() {
    let fake = FakeLlm::start().await;
    fake.delay(10);
    fake.then("parse", [weather_and_currency()]);
    let app = app_for(&fake, |_| {}).await;
    let r = app.chat("Weather in Paris and 100 USD in EUR").await;
    assert_eq!(r["status"], "completed", "{r}");
    let state = app.state_of(&thread_of(&r)).await;
    let planner = &state["planner"];
    let calls = fake.all_seen().len() as u64;
    // parse, a choice and arguments per task (per candidate), compose.
    assert!(calls >= 6, "{calls}");
    assert_eq!(planner["model_calls"].as_u64(), Some(calls));
    assert_eq!(planner["prompt_tokens"].as_u64(), Some(100 * calls));
    assert_eq!(planner["completion_tokens"].as_u64(), Some(20 * calls));
    // Every answer was delayed 10 ms: the model time is at least that.
    let model_ms = planner["model_ms"].as_u64().expect("model_ms");
    assert!(model_ms >= 10 * calls, "{model_ms} ms for {calls} calls");
}

#[tokio::test]
async fn the_llm_planner_needs_a_base_url_and_a_model() {
    for (url, model, missing) in [
        (None, Some("m"), "--llm-base-url"),
        (Some("http://127.0.0.1:1/v1"), None, "--llm-model"),
        (Some("not a url"), Some("m"), "not a URL"),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let settings = Settings {
            addr: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", dir.path().join("b.db").display()),
            planner: PlannerKind::Llm,
            llm_base_url: url.map(str::to_owned),
            llm_model: model.map(str::to_owned),
            ..Settings::default()
        };
        match baton::app::Application::build(&settings).await {
            Ok(_) => panic!("started without {missing}"),
            Err(e) => assert!(e.to_string().contains(missing), "{e}"),
        }
    }
}
