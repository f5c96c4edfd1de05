//! The rules planner through the real HTTP server: agents no one on the team wrote (the eval
//! corpus's cards, served over A2A and REST on loopback), registered through the API, and what
//! those agents actually receive on the wire.

use std::path::Path;

use baton::eval::agents::ScriptedAgents;
use baton::eval::corpus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, final_text, primary_ids, spawn_app, spawn_app_with, thread_of};

/// A server with the demo agents plus every eval agent, registered over HTTP.
async fn app_with_eval_agents() -> (TestApp, ScriptedAgents) {
    let corpus = corpus::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("evals"))
        .expect("the corpus loads");
    let agents = ScriptedAgents::start(&corpus.agents)
        .await
        .expect("scripted agents start");
    let app = spawn_app().await;
    for agent in &corpus.agents {
        let raw = agent.raw.to_string().replace("{base}", agents.base());
        let card: Value = serde_json::from_str(&raw).expect("card JSON");
        let (code, body) = app.post("/api/agents", &card).await;
        assert_eq!(code, 201, "{} registers: {body}", agent.id);
    }
    (app, agents)
}

#[tokio::test]
async fn context_fills_an_input_and_is_no_task_of_its_own() {
    let (app, agents) = app_with_eval_agents().await;
    let r = app
        .chat("I am a Leo. What does my horoscope say for today? Thanks!")
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(primary_ids(&r), ["daily-horoscope"]);
    let calls = agents.calls(&thread_of(&r), 1);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].arguments.get("sign").map(String::as_str),
        Some("Leo")
    );
    assert!(
        calls[0].text.contains("I am a Leo"),
        "the agent sees the context too: {:?}",
        calls[0].text
    );
    let text = final_text(&r);
    assert!(text.contains(&calls[0].reply), "{text}");
    assert!(!text.starts_with("Here is what I found"), "{text}");
}

#[tokio::test]
async fn arguments_in_the_request_reach_rest_and_a2a_agents() {
    let (app, agents) = app_with_eval_agents().await;
    let r = app.chat("Get the current stock quote for AAPL").await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(primary_ids(&r), ["stocks"]);
    let calls = agents.calls(&thread_of(&r), 1);
    assert_eq!(
        calls[0].arguments.get("symbol").map(String::as_str),
        Some("AAPL"),
        "{calls:?}"
    );
    let text = final_text(&r);
    assert!(!text.contains('{'), "a JSON answer reads as lines: {text}");

    let r = app.chat("Translate hello world into Spanish").await;
    assert_eq!(r["status"], "completed", "the text is in the request: {r}");
    assert!(
        final_text(&r).contains("Translation into Spanish of \"hello world\""),
        "{r}"
    );
}

#[tokio::test]
async fn a_weak_match_is_a_question_and_no_agent_is_called() {
    let app = spawn_app().await;
    let r = app.chat("Book me a flight to Paris").await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    let question = r["question_for_user"].as_str().expect("question");
    assert!(question.contains("couldn't find an agent"), "{question}");
    let state = app.state_of(&thread_of(&r)).await;
    assert_eq!(state["results"], json!({}), "nothing was called");
    assert_eq!(state["candidates"]["t1"], json!([]));

    let (app, agents) = app_with_eval_agents().await;
    let r = app.chat("Buy 10 shares of Tesla for me").await;
    assert_eq!(
        r["status"], "pending_user_input",
        "a quote service cannot trade: {r}"
    );
    assert!(agents.calls(&thread_of(&r), 1).is_empty());
}

#[tokio::test]
async fn one_clause_with_two_intents_becomes_two_tasks() {
    let app = spawn_app_with(|_| {}).await;
    let r = app
        .chat("Give me the news about Rust and a chart of it")
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(primary_ids(&r), ["demo.news", "demo.charts"]);
    let state = &app.state_of(&thread_of(&r)).await;
    assert_eq!(state["tasks"][1]["depends_on"], json!(["t1"]));
    assert_eq!(state["candidates"]["t1"][0]["arguments"]["topic"], "Rust");
    assert!(
        state["candidates"]["t1"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("news")),
        "the choice keeps its reason: {state}"
    );
    let text = final_text(&r);
    assert!(
        text.starts_with("All 2 parts of your request are done."),
        "{text}"
    );
    assert!(text.contains("Top headlines on Rust"), "{text}");
    assert!(text.contains("Chart ready"), "{text}");
}
