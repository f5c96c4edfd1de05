//! The WebSocket flow: progress events, responses, garbage frames, several threads on one socket.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    TestApp, assert_passed_through, connect_ws, final_text, next_frame, send_frame, spawn_app,
    spawn_app_with, until_response,
};

#[tokio::test]
async fn start_and_continue_with_progress_events() {
    let app = spawn_app().await;
    let mut ws = connect_ws(&app.ws_url()).await;
    send_frame(
        &mut ws,
        json!({"type": "start", "prompt": "Help me analyze data but I need guidance"}),
    )
    .await;
    let (events, response) = until_response(&mut ws).await;
    assert_eq!(response["type"], "response");
    assert_eq!(response["status"], "pending_user_input");
    assert_eq!(response["requires_user_input"], true);
    assert!(response["question_for_user"].is_string());
    let thread = response["thread_id"].as_str().expect("id").to_owned();
    let nodes: Vec<&str> = events.iter().filter_map(|e| e["node"].as_str()).collect();
    assert_eq!(nodes, ["start", "parse_prompt"], "{events:?}");
    assert!(events.iter().all(|e| e["thread_id"] == thread.as_str()));

    send_frame(
        &mut ws,
        json!({"type": "continue", "response": "I want to analyze sales data", "thread_id": thread}),
    )
    .await;
    let (events, response) = until_response(&mut ws).await;
    assert_eq!(response["status"], "completed", "{response}");
    assert!(final_text(&response).contains("Analysis"), "{response}");
    assert_passed_through(
        &events,
        &[
            "wait_for_user_input",
            "parse_prompt",
            "match_capabilities",
            "agent_directory_search",
            "rank_agents",
            "plan_execution",
            "execute_batch",
            "aggregate_responses",
        ],
    );
    assert_eq!(events.last().expect("events")["status"], "completed");
}

#[tokio::test]
async fn garbage_frames_get_errors_and_the_socket_stays_usable() {
    let app = spawn_app().await;
    let mut ws = connect_ws(&app.ws_url()).await;
    for garbage in [
        "not json at all",
        "{\"type\":\"bogus\"}",
        "{\"prompt\":\"no type\"}",
        "{\"type\":\"start\"}",
        "{\"type\":\"start\",\"prompt\":\"  \"}",
        "{\"type\":\"continue\",\"response\":\"x\"}",
        "[1,2,3]",
        "42",
    ] {
        send_frame(&mut ws, garbage).await;
        let frame = next_frame(&mut ws).await;
        assert_eq!(frame["type"], "error", "{garbage}: {frame}");
        assert!(
            frame["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{frame}"
        );
        assert_eq!(frame["status"], "error");
    }
    ws.send(Message::Binary(vec![0xff, 0x00, 0x13].into()))
        .await
        .expect("binary sent");
    assert_eq!(next_frame(&mut ws).await["type"], "error");

    send_frame(
        &mut ws,
        r#"{"type":"continue","response":"x","thread_id":"unknown-thread"}"#,
    )
    .await;
    let frame = next_frame(&mut ws).await;
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["thread_id"], "unknown-thread");

    send_frame(
        &mut ws,
        r#"{"type":"start","prompt":"Find me a weather agent"}"#,
    )
    .await;
    let (_, response) = until_response(&mut ws).await;
    assert_eq!(response["type"], "response");
    assert_eq!(response["status"], "completed");
}

#[tokio::test]
async fn several_threads_over_one_socket() {
    let app = spawn_app_slow_weather().await;
    let mut ws = connect_ws(&app.ws_url()).await;
    for (thread, prompt) in [
        ("slow-one", "What's the weather in Paris"),
        ("fast-one", "convert 5 EUR to USD"),
    ] {
        let start = json!({"type": "start", "prompt": prompt, "thread_id": thread});
        send_frame(&mut ws, start).await;
    }
    let mut responses = Vec::new();
    while responses.len() < 2 {
        let frame = next_frame(&mut ws).await;
        if frame["type"] == "response" {
            responses.push(frame);
        }
    }
    // The fast thread answers first although it was sent second: nothing is serialized per socket.
    assert_eq!(responses[0]["thread_id"], "fast-one");
    assert_eq!(responses[1]["thread_id"], "slow-one");
    assert!(responses.iter().all(|r| r["status"] == "completed"));
}

async fn spawn_app_slow_weather() -> TestApp {
    spawn_app_with(|s| s.demo_latency = vec![("weather".into(), 600)]).await
}
