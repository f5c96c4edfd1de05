//! Agents over the wire: the demo agents served over real A2A (v1.0 and v0.3), agents asking
//! the user, original REST agents, and agents that misbehave (junk, wrong types, huge answers,
//! hanging, failing once).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton::agents::builtin::BuiltinAgents;
use baton::agents::serve::{self, Versions};
use serde_json::{Value, json};

use crate::helpers::serve_on_loopback;
use crate::helpers::{
    TestApp, assert_completed_saying, assert_contains_all, assert_refused, final_text,
    question_text, spawn_app_with, thread_of,
};

async fn demo_agents(versions: Versions) -> (String, Arc<BuiltinAgents>) {
    let agents = Arc::new(BuiltinAgents::new(BTreeMap::new()));
    let served = agents.clone();
    let base =
        serve_on_loopback(|base| serve::router(base, served, versions).expect("router")).await;
    (base, agents)
}

async fn app_without_demo_agents(timeout_ms: u64) -> TestApp {
    spawn_app_with(|s| {
        s.no_demo_agents = true;
        s.agent_timeout_ms = timeout_ms;
    })
    .await
}

/// Discovers the agent at `url`, which must succeed; returns its card.
async fn discover_ok(app: &TestApp, url: &str) -> Value {
    let (code, card) = app.discover(&json!({ "url": url })).await;
    assert_eq!(code, 201, "{card}");
    card
}

/// Registers `card`, which must succeed; returns the stored card.
async fn register_ok(app: &TestApp, card: &Value) -> Value {
    let (code, stored) = app.register(card).await;
    assert_eq!(code, 201, "{stored}");
    stored
}

/// Asks for the weather in Paris and checks the thread completed (`case` names the case in the
/// messages); returns the response and the record of its one task.
async fn weather_in_paris(app: &TestApp, case: &str) -> (Value, Value) {
    let r = app.chat("What's the weather in Paris").await;
    assert_eq!(r["status"], "completed", "{case}: {r}");
    let result = app.state_of(&thread_of(&r)).await["results"]["t1"].clone();
    (r, result)
}

/// Checks a task's record: answered by `agent` after `attempts` calls.
fn assert_answered_by(result: &Value, agent: &str, attempts: u64, case: &str) {
    assert_eq!(result["ok"], true, "{case}: {result}");
    assert_eq!(result["agent_id"], agent, "{case}: answered by: {result}");
    assert_eq!(result["attempts"], attempts, "{case}: attempts: {result}");
}

#[tokio::test]
async fn demo_agents_over_a2a_v1_including_a_question_from_the_agent() {
    let (base, agents) = demo_agents(Versions::Both).await;
    let app = app_without_demo_agents(10_000).await;
    let weather = discover_ok(&app, &format!("{base}/weather")).await;
    assert_eq!(weather["url"], format!("{base}/weather"));
    assert_eq!(weather["protocol"], "a2a");
    discover_ok(&app, &format!("{base}/translation")).await;

    let r = app
        .chat("What's the weather in Paris and translate my notes into German")
        .await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    assert_contains_all(
        question_text(&r),
        &["Which text should I translate into German?"],
    );
    assert_eq!(agents.calls("weather"), 1);
    assert_eq!(agents.calls("translation"), 1);
    let thread = thread_of(&r);
    let remote = &app.state_of(&thread).await["remote_tasks"]["t2"];
    assert!(
        remote["task_id"].is_string(),
        "the agent's A2A task id is kept: {remote}"
    );

    let (code, done) = app.answer(&thread, "Guten Morgen").await;
    assert_eq!(code, 200);
    assert_completed_saying(
        &done,
        &[
            "Weather in Paris",
            "Translation into German of \"Guten Morgen\"",
        ],
    );
    assert_eq!(
        agents.calls("weather"),
        1,
        "the weather agent was not called again"
    );
    assert_eq!(
        agents.calls("translation"),
        2,
        "the answer went back to the translator"
    );
}

#[tokio::test]
async fn agents_that_speak_only_v03_are_reached() {
    let (base, agents) = demo_agents(Versions::V03Only).await;
    let app = app_without_demo_agents(10_000).await;
    let card = discover_ok(&app, &format!("{base}/currency")).await;
    assert_eq!(card["protocolVersion"], "0.3.0");
    let r = app.chat("convert 20 EUR to USD").await;
    assert_completed_saying(&r, &["20 EUR = "]);
    assert_eq!(agents.calls("currency"), 1);

    let r = app.chat("convert 5 GBP to EUR").await;
    assert_eq!(r["status"], "completed", "{r}");
}

#[tokio::test]
async fn a_card_that_claims_v1_for_a_v03_only_agent_falls_back_to_v03() {
    let (base, agents) = demo_agents(Versions::V03Only).await;
    let app = app_without_demo_agents(10_000).await;
    // The weather agent's own card, claiming v1.0: the only weather agent Baton knows.
    let mut lying: Value = app
        .client
        .get(format!("{base}/weather/.well-known/agent-card.json"))
        .send()
        .await
        .expect("card")
        .json()
        .await
        .expect("card JSON");
    lying["id"] = json!("lying-weather");
    lying["protocolVersion"] = json!("1.0");
    lying["supportedInterfaces"] = json!([{"url": format!("{base}/weather"),
        "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]);
    let stored = register_ok(&app, &lying).await;
    assert_eq!(stored["protocolVersion"], "1.0");

    for round in 1..=2 {
        let case = format!("round {round}");
        let (r, result) = weather_in_paris(&app, &case).await;
        let text = final_text(&r);
        assert!(
            text.contains("Weather in Paris"),
            "{case}: the v0.3 agent's answer came through: {text}"
        );
        // One attempt: the fallback is not a retry.
        assert_answered_by(&result, "lying-weather", 1, &case);
        assert_eq!(agents.calls("weather"), round, "{case}");
    }
}

/// A misbehaving agent server: every route answers badly in its own way, and records the
/// idempotency keys it saw.
#[derive(Clone, Default)]
struct Misbehaving {
    keys: Arc<Mutex<Vec<String>>>,
    flaky_calls: Arc<Mutex<u32>>,
}

fn a2a_completed(text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"task": {"id": "x", "contextId": "c",
        "status": {"state": "TASK_STATE_COMPLETED"},
        "artifacts": [{"artifactId": "a", "parts": [{"text": text}]}]}}})
}

/// `POST /{route}`: records the idempotency key, then answers as `route` says: `junk` (cut-off
/// JSON), `html`, `huge` (3 MiB), `hang` (never), `flaky` (503 once, then an answer).
async fn misbehave(
    State(s): State<Misbehaving>,
    Path(route): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        s.keys.lock().expect("lock").push(key.to_owned());
    }
    match route.as_str() {
        "junk" => (
            [("content-type", "application/json")],
            "{\"jsonrpc\": \"2.0\", \"res",
        )
            .into_response(),
        "html" => (
            [("content-type", "text/html")],
            "<html><body>hello</body></html>",
        )
            .into_response(),
        "huge" => axum::Json(a2a_completed(&"x".repeat(3 * 1024 * 1024))).into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            "never".into_response()
        }
        "flaky" => {
            let first = {
                let mut calls = s.flaky_calls.lock().expect("lock");
                *calls += 1;
                *calls == 1
            };
            if first {
                (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
            } else {
                axum::Json(a2a_completed("[flaky] sunny after all")).into_response()
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn misbehaving_router(state: Misbehaving) -> Router {
    Router::new()
        .route("/{route}", post(misbehave))
        .with_state(state)
}

/// A weather agent card at `url`, ranked above the demo weather agent (rating 5, Paris in it).
fn bad_weather_card(id: &str, url: &str) -> Value {
    json!({
        "id": id, "name": format!("Weather {id}"), "url": url, "protocolVersion": "1.0", "rating": 5.0,
        "description": "Weather forecasts for Paris",
        "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast for Paris",
                    "tags": ["weather", "forecast", "paris"]}]
    })
}

#[tokio::test]
async fn misbehaving_agents_fall_back_to_the_next_ranked_one() {
    let state = Misbehaving::default();
    let bad = serve_on_loopback(|_| misbehaving_router(state.clone())).await;
    let (demo, demo_agents) = demo_agents(Versions::Both).await;
    let app = app_without_demo_agents(400).await;
    discover_ok(&app, &format!("{demo}/weather")).await;
    for (route, expected_attempts) in [("junk", 1), ("html", 1), ("huge", 1), ("hang", 2)] {
        register_ok(&app, &bad_weather_card(route, &format!("{bad}/{route}"))).await;
        let (r, result) = weather_in_paris(&app, route).await;
        assert_eq!(
            r["task_agent_pairs"][0]["primary"]["id"], route,
            "{route} is ranked first"
        );
        // The bad agent's tries, then the demo agent's one: it fell back.
        assert_answered_by(&result, "demo.weather", expected_attempts + 1, route);
        let code = app.delete(&format!("/api/agents/{route}")).await;
        assert_eq!(code, 204, "{route}");
    }
    assert_eq!(demo_agents.calls("weather"), 4);
    let keys = state.keys.lock().expect("lock").clone();
    assert!(!keys.is_empty());
    for key in &keys {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 4, "thread/turn/task/attempt: {key}");
        assert_eq!(parts[2], "t1");
    }
}

#[tokio::test]
async fn a_failing_agent_is_retried_and_a_dead_one_never_hangs_the_thread() {
    let state = Misbehaving::default();
    let bad = serve_on_loopback(|_| misbehaving_router(state.clone())).await;
    let app = app_without_demo_agents(300).await;
    app.register(&bad_weather_card("flaky", &format!("{bad}/flaky")))
        .await;
    let (r, result) = weather_in_paris(&app, "flaky").await;
    assert_contains_all(final_text(&r), &["[flaky] sunny after all"]);
    assert_eq!(result["attempts"], 2, "503 once, then a retry");

    let app = app_without_demo_agents(300).await;
    app.register(&bad_weather_card("hang", &format!("{bad}/hang")))
        .await;
    let (r, _) = weather_in_paris(&app, "hang").await;
    assert_contains_all(
        final_text(&r),
        &["not done", "did not answer within 300 ms"],
    );
}

#[derive(Clone, Default)]
struct RestAgent {
    seen: Arc<Mutex<Vec<Value>>>,
}

#[tokio::test]
async fn original_rest_agents_register_and_ask_for_missing_parameters() {
    let rest = RestAgent::default();
    let state = rest.clone();
    let base = serve_on_loopback(move |_| {
        Router::new()
            .route("/geocode", get(|State(s): State<RestAgent>, Query(q): Query<BTreeMap<String, String>>| async move {
                s.seen.lock().expect("lock").push(json!(q));
                axum::Json(json!({"result": format!("{} is at 48.85N 2.35E", q.get("address").cloned().unwrap_or_default())}))
            }))
            .route("/route", post(|State(s): State<RestAgent>, axum::Json(body): axum::Json<Value>| async move {
                s.seen.lock().expect("lock").push(body.clone());
                axum::Json(json!({"output": format!("route by {}", body["mode"])}))
            }))
            .with_state(state)
    })
    .await;
    let app = app_without_demo_agents(5_000).await;
    let card = json!({
        "id": "geo", "owner_id": "owner-1", "name": "Geo Services", "description": "Geocoding and routing",
        "capabilities": ["geocode", "geocoding", "address", "route", "directions"], "price_per_call_usd": 0.02,
        "status": "active", "rating": 4.1, "public_key_pem": null,
        "endpoints": [
            {"endpoint": format!("{base}/geocode"), "http_method": "GET", "description": "Geocode an address",
             "parameters": [{"name": "address", "param_type": "string", "required": true, "default_value": null,
                             "description": "the street address to geocode"}]},
            {"endpoint": format!("{base}/route"), "http_method": "POST", "description": "Directions between places",
             "parameters": [{"name": "mode", "param_type": "string", "required": false, "default_value": "walking",
                             "description": "travel mode"}]}
        ]
    });
    let stored = register_ok(&app, &card).await;
    assert_eq!(stored["protocol"], "rest");
    assert_eq!(stored["owner_id"], "owner-1", "original fields are kept");

    // The question names the parameter.
    let done = app
        .ask_and_answer(
            "geocode my office address",
            &["the street address to geocode"],
            "10 Rue de Rivoli, Paris",
        )
        .await;
    assert_completed_saying(&done, &["10 Rue de Rivoli, Paris is at"]);

    let r = app.chat("directions route to the station").await;
    assert_completed_saying(&r, &["route by \"walking\""]);
    let seen = rest.seen.lock().expect("lock").clone();
    assert_eq!(
        seen[0]["address"], "10 Rue de Rivoli, Paris",
        "GET sends the query"
    );
    assert_eq!(
        seen[1]["mode"], "walking",
        "POST sends a JSON body with defaults"
    );
}

#[tokio::test]
async fn a_rest_endpoint_method_is_get_or_post_in_any_case() {
    let app = app_without_demo_agents(1_000).await;
    let card = |id: &str, method: &str| {
        json!({"id": id, "name": id, "capabilities": ["geocode"],
               "endpoints": [{"endpoint": "http://127.0.0.1:9/geocode", "http_method": method}]})
    };
    let stored = register_ok(&app, &card("lower", "post")).await;
    assert_eq!(stored["endpoints"][0]["http_method"], "POST");
    assert_refused(app.register(&card("put", "PUT")).await, 422, "GET or POST");
}

/// The ids of the agents a search found, best first.
fn hit_ids(hits: &Value) -> Vec<&str> {
    hits.as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["agent"]["id"].as_str())
        .collect()
}

#[tokio::test]
async fn the_directory_api() {
    let app = spawn_app_with(|_| {}).await;
    assert_refused(
        app.register(&json!({"name": "no url"})).await,
        422,
        "invalid agent card",
    );
    let (code, _) = app.register(&json!({"id": "r", "name": "r", "capabilities": ["x"], "endpoints": [{"endpoint": "ftp://x"}]})).await;
    assert_eq!(code, 422);
    let (code, r) = app.discover(&json!({"url": "http://127.0.0.1:1"})).await;
    assert_eq!(code, 422, "{r}");

    let (_, hits) = app.get("/api/agents/search?q=forecast&min_rating=4").await;
    let ids = hit_ids(&hits);
    assert_eq!(ids.first(), Some(&"demo.weather"), "{hits}");
    assert!(
        !ids.contains(&"demo.climate"),
        "rating 3.9 is filtered out: {ids:?}"
    );
    let (_, hits) = app
        .get("/api/agents/search?capabilities=currency&max_price=0.001")
        .await;
    assert_eq!(hits.as_array().expect("hits").len(), 1, "{hits}");
    // With words too, the capability still filters: weather-ish words, only cards tagged "data".
    let (_, hits) = app
        .get("/api/agents/search?q=weather%20data&capabilities=data")
        .await;
    let ids = hit_ids(&hits);
    assert!(!ids.is_empty(), "{hits}");
    assert!(!ids.contains(&"demo.weather"), "not tagged data: {ids:?}");
    let (code, _) = app.get("/api/agents/search?max_price=cheap").await;
    assert_eq!(code, 422);

    let (code, rated) = app
        .post("/api/agents/demo.news/rate", &json!({"rating": 2.3}))
        .await;
    assert_eq!(code, 200, "{rated}");
    assert!(
        (rated["rating"].as_f64().expect("r") - (4.3 + 2.3) / 2.0).abs() < 1e-9,
        "{rated}"
    );
    assert_eq!(rated["rating_count"], 2);
    for (path, rating, expected) in [
        ("/api/agents/demo.news/rate", 7, 422),
        ("/api/agents/nobody/rate", 3, 404),
    ] {
        let (code, r) = app.post(path, &json!({ "rating": rating })).await;
        assert_eq!(code, expected, "{path} {rating}: {r}");
    }

    assert_eq!(app.delete("/api/agents/demo.news").await, 204);
    let (code, _) = app.get("/api/agents/demo.news").await;
    assert_eq!(code, 404);
    assert_eq!(
        app.delete("/api/agents/demo.news").await,
        404,
        "deleted twice"
    );
}

#[tokio::test]
async fn the_url_policy_limits_which_agents_can_be_registered_and_called() {
    let (base, _) = demo_agents(Versions::Both).await;
    let allowed = base.trim_start_matches("http://").to_owned();
    let app = spawn_app_with(|s| {
        s.no_demo_agents = true;
        s.agent_url_allow = vec![allowed.clone()];
    })
    .await;
    discover_ok(&app, &format!("{base}/weather")).await;
    assert_refused(
        app.register(&bad_weather_card("elsewhere", "http://127.0.0.2:9/a2a"))
            .await,
        422,
        "not allowed",
    );
    let (code, r) = app.discover(&json!({"url": "http://127.0.0.2:9/x"})).await;
    assert_eq!(code, 422, "{r}");
    let r = app.chat("What's the weather in Paris").await;
    assert_eq!(r["status"], "completed", "{r}");
}
