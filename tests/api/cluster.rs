//! Several `baton serve` processes on one PostgreSQL database (the test server, see
//! `TestPostgres`; without it these tests fail): any process serves any thread, races are decided across
//! processes, a killed process's run is taken over, and a WebSocket on one process follows a run
//! on another.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    ServerProcess, Socket, TestPostgres, all_agents, answer_at, assert_one_won,
    assert_passed_through, assert_resumed_elsewhere, chat_at, connect_ws, eventually, get, http,
    next_frame, post, race_answers, start_half_done_run, thread_of, ws_url_of,
};

fn cluster(pg: &TestPostgres, flags: &[&[&str]]) -> Vec<ServerProcess> {
    flags
        .iter()
        .map(|f| ServerProcess::start_url(&pg.url, f))
        .collect()
}

#[tokio::test]
async fn a_conversation_hops_between_processes() {
    let pg = TestPostgres::create().await;
    let nodes = cluster(&pg, &[&[], &[], &[]]);
    let (a, b, c) = (&nodes[0].base, &nodes[1].base, &nodes[2].base);
    let (code, r) = chat_at(a, "Help me analyze data but I need guidance").await;
    assert_eq!(code, 200);
    assert_eq!(r["status"], "pending_user_input");
    let thread = thread_of(&r);
    let (_, s) = get(b, &format!("/api/chat/status/{thread}")).await;
    assert_eq!(s["status"], "pending_user_input");
    assert_eq!(s["question_for_user"], r["question_for_user"]);
    let (code, done) = answer_at(c, &thread, "I want to analyze sales data").await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "completed");
    let (_, s) = get(a, &format!("/api/chat/status/{thread}")).await;
    assert_eq!(s["status"], "completed");
    assert_eq!(s["final_response"], done["final_response"]);
    let (_, history) = get(b, &format!("/api/threads/{thread}/history")).await;
    let writers: std::collections::BTreeSet<&str> = history
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["writer"].as_str())
        .collect();
    assert_eq!(
        writers.len(),
        2,
        "written by the process that started and the one that answered: {writers:?}"
    );
}

#[tokio::test]
async fn racing_answers_across_processes_one_wins() {
    let pg = TestPostgres::create().await;
    let nodes = cluster(&pg, &[&[], &[], &[]]);
    let (_, r) = chat_at(&nodes[0].base, "Help me analyze data but I need guidance").await;
    let thread = thread_of(&r);
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let replies = race_answers(&bases, &thread, "sales data").await;
    assert_one_won(&replies);
}

#[tokio::test]
async fn a_killed_process_run_is_taken_over_by_another() {
    let pg = TestPostgres::create().await;
    let doomed = ServerProcess::start_url(
        &pg.url,
        &["--lease-ms", "1500", "--demo-latency", "weather=60000"],
    );
    let survivor = ServerProcess::start_url(&pg.url, &["--lease-ms", "1500"]);
    let (before, request) = start_half_done_run(&doomed.base, &survivor.base, "takeover-1").await;
    doomed.kill9();
    let _ = request.await;
    assert_resumed_elsewhere(
        &survivor.base,
        "takeover-1",
        &before,
        Duration::from_secs(30),
    )
    .await;
    let (_, history) = get(&survivor.base, "/api/threads/takeover-1/history").await;
    assert!(
        history
            .as_array()
            .expect("history")
            .iter()
            .any(|e| e["node"] == "takeover"),
        "the takeover is in the history"
    );
}

#[tokio::test]
async fn a_websocket_on_one_process_follows_a_run_on_another() {
    let pg = TestPostgres::create().await;
    let nodes = cluster(&pg, &[&["--demo-latency", "data-analysis=300"], &[]]);
    let (a, c) = (&nodes[0].base, &nodes[1].base);
    let (r, mut ws) = ask_then_watch(a, c, "watched").await;
    assert_eq!(r["status"], "pending_user_input");
    let mut frames = Vec::new();
    let first = next_frame(&mut ws).await;
    assert_eq!(first["type"], "response");
    assert_eq!(first["status"], "pending_user_input");

    let (code, _) = answer_at(a, "watched", "I want to analyze sales data").await;
    assert_eq!(code, 200);
    loop {
        let frame = next_frame(&mut ws).await;
        let done = frame["type"] == "response";
        frames.push(frame);
        if done {
            break;
        }
    }
    let response = frames.last().expect("response");
    assert_eq!(response["status"], "completed", "{response}");
    assert_passed_through(
        &frames,
        &[
            "wait_for_user_input",
            "parse_prompt",
            "execute_batch",
            "aggregate_responses",
        ],
    );
}

/// Starts the data-analysis conversation (which asks the user a question) as `thread` on
/// `run_on`, and watches the thread over a WebSocket on `watch_on`; returns the chat response and
/// the socket.
async fn ask_then_watch(run_on: &str, watch_on: &str, thread: &str) -> (Value, Socket) {
    let (_, r) = post(
        run_on,
        "/api/chat",
        json!({"prompt": "Help me analyze data but I need guidance", "thread_id": thread}),
    )
    .await;
    let mut ws = connect_ws(&ws_url_of(watch_on)).await;
    ws.send(Message::Text(
        json!({"type": "watch", "thread_id": thread})
            .to_string()
            .into(),
    ))
    .await
    .expect("sent");
    (r, ws)
}

#[tokio::test]
async fn cards_registered_on_one_process_reach_the_others() {
    let pg = TestPostgres::create().await;
    let nodes = cluster(&pg, &[&[], &[]]);
    let (a, b) = (&nodes[0].base, &nodes[1].base);
    let card = json!({"id": "shared-geo", "name": "Geo", "description": "geocoding",
                      "capabilities": ["geocode"], "endpoints": [{"endpoint": "http://127.0.0.1:9/g"}]});
    let (code, _) = post(a, "/api/agents", card).await;
    assert_eq!(code, 201);
    eventually(
        "card visible on the other process",
        Duration::from_secs(10),
        || async { (get(b, "/api/agents/shared-geo").await.0 == 200).then_some(()) },
    )
    .await;
    let (code, rated) = post(b, "/api/agents/demo.news/rate", json!({"rating": 1})).await;
    assert_eq!(code, 200);
    eventually(
        "rating visible on the other process",
        Duration::from_secs(10),
        || async {
            let (_, card) = get(a, "/api/agents/demo.news").await;
            (card["rating"] == rated["rating"]).then_some(())
        },
    )
    .await;
    let response = http()
        .delete(format!("{a}/api/agents/shared-geo"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 204);
    eventually(
        "removal visible on the other process",
        Duration::from_secs(10),
        || async { (get(b, "/api/agents/shared-geo").await.0 == 404).then_some(()) },
    )
    .await;
    // Many registrations at once on one process, some cards changed twice: the other process
    // applies each announced id from the store and ends with the same directory, page by page.
    let writes: Vec<_> = (0..60)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                let card = json!({"id": format!("bulk-{}", i % 40), "name": "Bulk",
                    "description": format!("version {i}"), "url": "http://127.0.0.1:9/a2a"});
                post(&a, "/api/agents", card).await.0
            })
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.expect("registration"), 201);
    }
    let on_a = all_agents(a, 25).await;
    assert_eq!(on_a.len(), 48, "40 bulk cards and the 8 demo agents");
    eventually(
        "both processes list the same cards",
        Duration::from_secs(10),
        || async { (all_agents(b, 25).await == on_a).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn without_notifications_a_watch_still_gets_every_event_by_polling() {
    let pg = TestPostgres::create().await;
    let nodes = cluster(&pg, &[&[], &["--pg-listen", "false"]]);
    let (a, c) = (&nodes[0].base, &nodes[1].base);
    let (r, mut ws) = ask_then_watch(a, c, "polled").await;
    assert_eq!(r["status"], "pending_user_input");
    assert_eq!(next_frame(&mut ws).await["status"], "pending_user_input");
    let (code, done) = answer_at(a, "polled", "sales data").await;
    assert_eq!(code, 200);
    let mut events = Vec::new();
    let response = loop {
        let frame = next_frame(&mut ws).await;
        if frame["type"] == "response" {
            break frame;
        }
        events.push(frame);
    };
    assert_eq!(response["status"], "completed");
    assert_eq!(response["final_response"], done["final_response"]);
    let versions: Vec<i64> = events
        .iter()
        .filter_map(|e| e["version"].as_i64())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "every checkpoint, in order: {versions:?}"
    );
    assert_eq!(
        events.last().expect("events")["node"],
        "aggregate_responses"
    );
    assert!(
        events
            .iter()
            .all(|e| e["detail"] == "replayed from the store"),
        "{events:?}"
    );
}
