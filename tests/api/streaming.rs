//! Streaming A2A agents (`capabilities.streaming`): Baton sends with `SendStreamingMessage`, relays
//! what the agent says while it works as thread events, and after a kill -9 follows the agent's
//! running task again with `SubscribeToTask` rather than sending the call twice. The agent is the
//! Python a2a-sdk's own server (`tests/python/slow_agent.py --stream`), which only reports
//! progress on a stream: a progress event is proof the call was streamed.

use serde_json::{Value, json};

use crate::helpers::{
    Socket, chat_at, connect_ws, next_frame, question_text, send_frame, temp_db, thread_of,
    ws_url_of,
};
use crate::pyagent::{PyAgent, ask_weather_until_working, baton};

/// Frames until the first response that is not `processing` (a watch first answers with the
/// thread as it stands), returning the agents' progress notes seen on the way and that response.
async fn progress_until_settled(socket: &mut Socket) -> (Vec<Value>, Value) {
    let mut notes = Vec::new();
    loop {
        let frame = next_frame(socket).await;
        match frame["type"].as_str() {
            Some("event") => {
                if let Some(progress) = frame.get("progress") {
                    notes.push(progress.clone());
                }
            }
            Some("response") if frame["status"] == "processing" => {}
            _ => return (notes, frame),
        }
    }
}

/// The text of each note.
fn texts(notes: &[Value]) -> Vec<&str> {
    notes.iter().filter_map(|n| n["text"].as_str()).collect()
}

#[tokio::test]
async fn a_streaming_agents_progress_reaches_the_thread_as_events() {
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &["--stream"]);
    let server = baton(&db, Some(&agent)).await;
    let mut socket = connect_ws(&ws_url_of(&server.base)).await;
    send_frame(
        &mut socket,
        json!({"type": "start", "prompt": "What is the weather in Paris?", "thread_id": "streamed"}),
    )
    .await;
    let (notes, response) = progress_until_settled(&mut socket).await;
    assert_eq!(response["status"], "completed", "{response}");
    assert!(
        response.to_string().contains("Sunny in Paris"),
        "{response}"
    );
    let said = texts(&notes);
    assert!(
        said.iter()
            .any(|t| t.starts_with("Looking at the sky over Paris")),
        "no progress relayed: {notes:?}"
    );
    assert!(
        notes
            .iter()
            .all(|n| n["task_id"] == "t1" && n["agent_id"].is_string()),
        "{notes:?}"
    );
    assert_eq!(agent.count("first"), 1, "{:?}", agent.executions());
}

/// Baton dies while the agent streams; the restarted process finds the task by the context it
/// chose and follows it as a stream again: progress goes on reaching watchers, and the agent
/// executes the call once.
#[tokio::test]
async fn after_a_kill_9_the_stream_of_a_running_task_is_resumed_not_resent() {
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &["--stream"]);
    let server = baton(&db, Some(&agent)).await;
    let thread = "stream-killed";
    let request = ask_weather_until_working(&server, &agent, thread).await;
    server.kill9();
    let _ = request.await;

    let server = baton(&db, None).await;
    let mut socket = connect_ws(&ws_url_of(&server.base)).await;
    send_frame(&mut socket, json!({"type": "watch", "thread_id": thread})).await;
    let (notes, response) = progress_until_settled(&mut socket).await;
    assert_eq!(response["status"], "completed", "{response}");
    assert!(
        response.to_string().contains("Sunny in Paris"),
        "{response}"
    );
    assert!(
        texts(&notes)
            .iter()
            .any(|t| t.starts_with("Looking at the sky over Paris")),
        "the resumed run relayed no progress (polled instead of following the stream?): {notes:?}"
    );
    let executions = agent.executions();
    assert_eq!(agent.count("first"), 1, "executed once: {executions:?}");
    assert_eq!(agent.count("done"), 1, "{executions:?}");
}

/// The agent asks over the stream (`input-required`), and the user's answer goes back on the
/// agent's task as a stream too: its progress on the answer reaches the thread.
#[tokio::test]
async fn a_streaming_agents_question_and_the_work_on_its_answer_are_streamed() {
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &["--stream", "--ask"]);
    let server = baton(&db, Some(&agent)).await;
    let (code, asked) = chat_at(&server.base, "What is the weather in Paris?").await;
    assert_eq!(code, 200, "{asked}");
    assert_eq!(asked["status"], "pending_user_input", "{asked}");
    assert!(
        question_text(&asked).contains("Which city exactly?"),
        "{asked}"
    );
    let mut socket = connect_ws(&ws_url_of(&server.base)).await;
    send_frame(
        &mut socket,
        json!({"type": "continue", "thread_id": thread_of(&asked), "response": "Lyon"}),
    )
    .await;
    let (notes, response) = progress_until_settled(&mut socket).await;
    assert_eq!(response["status"], "completed", "{response}");
    assert!(response.to_string().contains("Sunny in Lyon"), "{response}");
    assert!(
        texts(&notes)
            .iter()
            .any(|t| t.starts_with("Looking at the sky over Lyon")),
        "{notes:?}"
    );
    assert_eq!(agent.count("first"), 1, "{:?}", agent.executions());
    assert_eq!(agent.count("answer"), 1, "{:?}", agent.executions());
}
