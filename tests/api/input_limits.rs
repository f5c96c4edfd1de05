//! The limits on what a client sends, through the real server: a prompt and an answer past
//! `--max-prompt-chars`/`--max-answer-chars` over HTTP, the WebSocket and A2A (422, an error
//! frame, a JSON-RPC error; nothing started), a WebSocket message past `--ws-max-message-bytes`
//! (closed with 1009) and a flood past `--ws-messages-per-second` (refused frames, nothing acted
//! on, the socket still usable).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::face::rpc;
use crate::helpers::{
    TestApp, assert_refused, connect_ws, next_frame, send_frame, spawn_app_with, until_response,
};

const GUIDANCE: &str = "Help me analyze data but I need guidance";

/// A server whose prompts may be 60 characters and answers 20.
async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.max_prompt_chars = 60;
        s.max_answer_chars = 20;
        s.ws_max_message_bytes = 4096;
        s.ws_messages_per_second = 2;
    })
    .await
}

async fn thread_count(app: &TestApp) -> usize {
    let (code, listing) = app.get("/api/threads?limit=100").await;
    assert_eq!(code, 200, "{listing}");
    listing["threads"].as_array().expect("threads").len()
}

#[tokio::test]
async fn a_prompt_or_an_answer_too_long_is_422_over_http_and_starts_nothing() {
    let app = app().await;
    // 61 characters (122 bytes): counted in characters, so 60 of them would pass.
    let long = "é".repeat(61);
    let refused = app.post("/api/chat", &json!({ "prompt": long })).await;
    assert_refused(refused, 422, "--max-prompt-chars");
    assert_eq!(thread_count(&app).await, 0, "nothing was started");
    let (code, _) = app
        .post("/api/chat", &json!({ "prompt": "é".repeat(60) }))
        .await;
    assert_eq!(code, 200, "a prompt at the limit is accepted");

    let (code, asked) = app.post("/api/chat", &json!({ "prompt": GUIDANCE })).await;
    assert_eq!(code, 200, "{asked}");
    assert_eq!(asked["status"], "pending_user_input", "{asked}");
    let thread = asked["thread_id"].as_str().expect("thread id");
    let refused = app
        .post(
            "/api/chat/continue",
            &json!({"thread_id": thread, "response": "x".repeat(21)}),
        )
        .await;
    assert_refused(refused, 422, "--max-answer-chars");
    let (_, status) = app.get(&format!("/api/chat/status/{thread}")).await;
    assert_eq!(
        status["status"], "pending_user_input",
        "still waiting: {status}"
    );
    let (code, done) = app
        .post(
            "/api/chat/continue",
            &json!({"thread_id": thread, "response": "sales data"}),
        )
        .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn a_prompt_too_long_over_a2a_is_an_invalid_params_error() {
    let app = app().await;
    let message = json!({"kind": "message", "messageId": "m-long", "role": "user",
        "parts": [{"kind": "text", "text": "x".repeat(61)}]});
    let refused = rpc(&app, false, "message/send", json!({ "message": message })).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let said = refused["error"]["message"].as_str().expect("message");
    assert!(said.contains("--max-prompt-chars"), "{refused}");
    assert_eq!(thread_count(&app).await, 0, "nothing was started");
}

#[tokio::test]
async fn over_the_websocket_a_long_prompt_is_refused_and_a_huge_message_closes_with_1009() {
    let app = app().await;
    let mut socket = connect_ws(&app.ws_url()).await;
    send_frame(
        &mut socket,
        json!({"type": "start", "prompt": "x".repeat(61)}),
    )
    .await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(
        frame["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-prompt-chars"),
        "{frame}"
    );
    // Past --ws-max-message-bytes: the socket is closed with 1009 (message too big).
    socket
        .send(Message::Text("y".repeat(5000).into()))
        .await
        .expect("sent");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time")
    .expect("a close frame with a code");
    assert_eq!(closed.code, CloseCode::Size, "{closed:?}");
    assert!(
        closed.reason.contains("--ws-max-message-bytes"),
        "{closed:?}"
    );
    assert_eq!(thread_count(&app).await, 0, "nothing was started");
}

#[tokio::test]
async fn a_websocket_flood_past_its_rate_is_refused_frame_by_frame_and_the_socket_stays_usable() {
    let app = app().await;
    let mut socket = connect_ws(&app.ws_url()).await;
    // A burst of twice the rate (4) passes; the rest of 12 sent at once are refused. Each
    // message is a watch of a thread that does not exist: acted on, it answers a 404 frame.
    for n in 0..12 {
        send_frame(
            &mut socket,
            json!({"type": "watch", "thread_id": format!("nothing-{n}")}),
        )
        .await;
    }
    let mut frames: Vec<Value> = Vec::new();
    for _ in 0..12 {
        frames.push(next_frame(&mut socket).await);
    }
    let refused = frames
        .iter()
        .filter(|f| {
            f["error"]
                .as_str()
                .is_some_and(|e| e.contains("--ws-messages-per-second"))
        })
        .count();
    let acted_on = frames
        .iter()
        .filter(|f| f["error"].as_str().is_some_and(|e| e.contains("nothing-")))
        .count();
    assert!(refused >= 7, "most of the flood is refused: {frames:?}");
    assert_eq!(refused + acted_on, 12, "{frames:?}");
    // A second later there is room again: the socket works.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    send_frame(
        &mut socket,
        json!({"type": "start", "prompt": "What is the weather in Oslo"}),
    )
    .await;
    let (_, response) = until_response(&mut socket).await;
    assert_eq!(response["type"], "response", "{response}");
    assert_eq!(response["status"], "completed", "{response}");
}
