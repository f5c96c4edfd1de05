//! `GET /api/threads/{id}/events` read with a real HTTP client: a run seen live in order (also
//! from a stream opened with `wait=true` before its thread existed), a
//! reconnect with `Last-Event-ID` that loses and repeats nothing, a stream on one process of a
//! run on another (PostgreSQL), and the WebSocket's housekeeping (a watch ends with its socket,
//! watches per socket are capped).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    ServerProcess, TestApp, TestPostgres, answer_at, connect_ws, eventually, get, http, next_frame,
    post, send_frame, spawn_app_with, temp_db, ws_url_of,
};

/// One server-sent event: its id (none for progress notes), its kind and its JSON data.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

/// A response body read as server-sent events, chunk by chunk.
struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

impl SseStream {
    /// Opens the thread's event stream at `base`, resuming after `last_event_id` (sent as the
    /// header) when given; panics unless the answer is a 200 event stream.
    async fn open(base: &str, thread: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = http_streaming().get(format!("{base}/api/threads/{thread}/events"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        Self::from_request(request).await
    }

    async fn from_request(request: reqwest::RequestBuilder) -> SseStream {
        let response = request.send().await.expect("stream opened");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); fails after 20 s of silence.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("an event in time")
                .expect("stream readable")
                .expect("stream still open");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Events up to and including the first of kind `last`.
    async fn until(&mut self, last: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.event == last;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

/// A client without the harness's whole-request timeout (a stream stays open for as long as it is
/// read; each read has its own timeout above).
fn http_streaming() -> reqwest::Client {
    crate::helpers::http_builder().build().expect("client")
}

/// One event block; `None` for a comment-only block (keep-alive).
fn parse_block(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    Some(SseEvent {
        id,
        event: event?,
        data: serde_json::from_str(&data).expect("JSON data"),
    })
}

/// The kinds of events, in order, without the node ones (those say which node ran, which the
/// planner decides; the rest is what the test is about).
fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.event.as_str())
        .filter(|k| *k != "node_finished")
        .collect()
}

/// The events of kind `kind`.
fn of_kind<'a>(events: &'a [SseEvent], kind: &str) -> Vec<&'a SseEvent> {
    events.iter().filter(|e| e.event == kind).collect()
}

/// An id's (version, index), to check ids only ever go up.
fn position(event: &SseEvent) -> (i64, i64) {
    let id = event.id.as_deref().expect("an id");
    let (version, index) = id.split_once('.').expect("VERSION.INDEX");
    (
        version.parse().expect("version"),
        index.parse().expect("index"),
    )
}

/// Checks that every event has an id, that ids strictly increase, and that each event's data
/// repeats its id and kind.
fn assert_well_formed(events: &[SseEvent]) {
    for event in events {
        assert_eq!(event.data["id"].as_str(), event.id.as_deref(), "{event:?}");
        assert_eq!(event.data["type"], event.event.as_str(), "{event:?}");
    }
    let positions: Vec<(i64, i64)> = events.iter().map(position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "ids in order, none twice: {positions:?}"
    );
}

#[tokio::test]
async fn with_wait_a_stream_opened_before_its_thread_starts_follows_the_run_from_its_start() {
    let app = spawn_app_with(|_| {}).await;
    // Without `wait`, an unknown thread is still a 404.
    let (code, body) = get(&app.base(), "/api/threads/not-yet/events").await;
    assert_eq!(code, 404, "{body}");
    // With it, the stream opens at once and waits.
    let mut stream = SseStream::from_request(
        http_streaming().get(app.url("/api/threads/not-yet/events?last_event_id=0&wait=true")),
    )
    .await;
    let (code, asked) = app
        .chat_in("not-yet", "Help me analyze data but I need guidance")
        .await;
    assert_eq!(code, 200, "{asked}");
    let paused = stream.until("run_paused").await;
    assert_eq!(paused[0].event, "node_finished");
    assert_eq!(paused[0].data["node"], "start");
    assert_eq!(
        paused[0].id.as_deref(),
        Some("1.0"),
        "from the first checkpoint"
    );
    assert_eq!(
        kinds(&paused),
        ["run_started", "question_asked", "run_paused"]
    );
    assert_well_formed(&paused);
    // A client's answer (sent the same way the page does) comes through as well.
    let (code, _) = app.answer("not-yet", "sales data").await;
    assert_eq!(code, 200);
    let finished = stream.until("run_finished").await;
    let answered = &of_kind(&finished, "answer_received")[0].data;
    assert_eq!(answered["answer"], "sales data");
    assert_eq!(answered["question"], asked["question_for_user"]);
}

#[tokio::test]
async fn a_whole_interactive_run_is_seen_live_in_order() {
    let app = spawn_app_with(|s| {
        s.demo_latency = vec![("data-analysis".into(), 200), ("translation".into(), 100)];
    })
    .await;
    let (code, first) = app
        .chat_in(
            "live-1",
            "What's the weather in Paris and convert 100 USD to EUR",
        )
        .await;
    assert_eq!(code, 200, "{first}");
    let mut stream = SseStream::open(&app.base(), "live-1", None).await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["status"], "completed");
    assert_eq!(snapshot.data["final_response"], first["final_response"]);
    let head = snapshot.data["version"].as_i64().expect("version");
    assert_eq!(snapshot.id, Some(head.to_string()));

    // A new turn asks the planner's question, live.
    let (code, asked) = app
        .chat_in("live-1", "Help me analyze data but I need guidance")
        .await;
    assert_eq!(code, 200, "{asked}");
    let paused = stream.until("run_paused").await;
    assert_eq!(
        kinds(&paused),
        ["run_started", "question_asked", "run_paused"]
    );
    assert_well_formed(&paused);
    assert_eq!(
        position(&paused[0]),
        (head + 1, 0),
        "the next version, first"
    );
    let question = of_kind(&paused, "question_asked")[0];
    assert_eq!(question.data["question_id"], asked["question_id"]);
    assert_eq!(question.data["text"], asked["question_for_user"]);
    assert_eq!(question.data["asked_by"], "planner");

    let (code, done) = app.answer("live-1", "I want to analyze sales data").await;
    assert_eq!(code, 200, "{done}");
    let finished = stream.until("run_finished").await;
    assert_eq!(
        kinds(&finished),
        [
            "answer_received",
            "task_started",
            "task_finished",
            "run_finished"
        ]
    );
    assert_well_formed(&[paused.clone(), finished.clone()].concat());
    let answered = &of_kind(&finished, "answer_received")[0].data;
    assert_eq!(answered["question_id"], asked["question_id"]);
    // The exchange whole, so a client replaying the history can show it.
    assert_eq!(answered["question"], asked["question_for_user"]);
    assert_eq!(answered["answer"], "I want to analyze sales data");
    assert_eq!(answered["asked_by"], "planner");
    let started = of_kind(&finished, "task_started")[0];
    assert_eq!(started.data["agent_id"], "demo.data-analysis");
    let task = of_kind(&finished, "task_finished")[0];
    assert_eq!(task.data["task_id"], started.data["task_id"]);
    assert_eq!(task.data["agent_id"], "demo.data-analysis");
    assert_eq!(task.data["outcome"], "ok");
    let latency = task.data["latency_ms"].as_u64().expect("latency");
    assert!(latency >= 200, "the agent's simulated 200 ms: {latency}");
    assert_eq!(
        of_kind(&finished, "run_finished")[0].data["final_response"],
        done["final_response"]
    );
    let nodes: Vec<&str> = finished
        .iter()
        .filter(|e| e.event == "node_finished")
        .filter_map(|e| e.data["node"].as_str())
        .collect();
    assert_eq!(nodes.first(), Some(&"wait_for_user_input"), "{nodes:?}");
    assert_eq!(nodes.last(), Some(&"aggregate_responses"), "{nodes:?}");

    // A third turn: the agent asks, the answer goes back to it.
    let (code, asked) = app
        .chat_in("live-1", "Translate my notes into French")
        .await;
    assert_eq!(code, 200, "{asked}");
    assert_eq!(asked["status"], "pending_user_input", "{asked}");
    let paused = stream.until("run_paused").await;
    let question = of_kind(&paused, "question_asked")[0];
    assert_eq!(question.data["asked_by"], "agent");
    assert_eq!(question.data["agent_id"], "demo.translation");
    assert_eq!(
        of_kind(&paused, "task_started")[0].data["agent_id"],
        "demo.translation"
    );
    let (code, _) = app.answer("live-1", "Meeting at noon").await;
    assert_eq!(code, 200);
    let finished = stream.until("run_finished").await;
    assert_eq!(
        kinds(&finished),
        [
            "answer_received",
            "task_started",
            "task_finished",
            "run_finished"
        ]
    );
    assert_eq!(
        of_kind(&finished, "task_started")[0].data["agent_id"],
        "demo.translation",
        "the answer goes back to the agent that asked"
    );
}

/// Everything the stream of `thread` at `base` replays after `after` (an event id), up to and
/// including the first `run_finished`.
async fn replayed_after(base: &str, thread: &str, after: &str) -> Vec<SseEvent> {
    SseStream::open(base, thread, Some(after))
        .await
        .until("run_finished")
        .await
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_loses_and_repeats_nothing() {
    let app = spawn_app_with(|s| {
        s.demo_latency = vec![("news".into(), 300), ("summarization".into(), 1500)];
    })
    .await;
    let (code, _) = app.chat_in("resume-1", "What is the weather in Oslo").await;
    assert_eq!(code, 200);
    let mut first = SseStream::open(&app.base(), "resume-1", None).await;
    let snapshot = first.next().await;
    let snapshot_id = snapshot.id.clone().expect("snapshot id");
    // Two batches: the news, then the summary of it, each slow.
    let base = app.base();
    let run = tokio::spawn(async move {
        post(
            &base,
            "/api/chat",
            json!({"prompt": "Get the latest news about AI and then summarize it",
                   "thread_id": "resume-1"}),
        )
        .await
    });
    // Read until the news call is out, then go away mid-run.
    let before = first.until("task_started").await;
    drop(first);
    let last_seen = before.last().and_then(|e| e.id.clone()).expect("an id");
    // Meanwhile the news task finishes and the summary starts; reconnect as EventSource does.
    let after = replayed_after(&app.base(), "resume-1", &last_seen).await;
    let (code, done) = run.await.expect("run");
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");

    let joined = [before.clone(), after].concat();
    let full = replayed_after(&app.base(), "resume-1", &snapshot_id).await;
    assert_eq!(joined, full, "no gap, no repeat");
    assert_well_formed(&full);
    assert_eq!(
        kinds(&full),
        [
            "run_started",
            "task_started",
            "task_finished",
            "task_started",
            "task_finished",
            "run_finished"
        ]
    );
    let agents: Vec<&Value> = of_kind(&full, "task_finished")
        .iter()
        .map(|e| &e.data["agent_id"])
        .collect();
    assert_eq!(agents, [&json!("demo.news"), &json!("demo.summarization")]);

    // A resume point in the middle of a version replays the rest of that version, and the
    // query parameter stands in for the header.
    let middle = full
        .iter()
        .position(|e| e.event == "task_started")
        .expect("a task started");
    let (version, index) = position(&full[middle]);
    assert!(index > 0, "task_started follows its node_finished");
    let from_query = SseStream::from_request(http_streaming().get(app.url(&format!(
        "/api/threads/resume-1/events?last_event_id={version}.{}",
        index - 1
    ))))
    .await
    .until("run_finished")
    .await;
    assert_eq!(from_query, full[middle..].to_vec());

    // `0` replays the whole kept history, turn one included.
    let mut everything = SseStream::open(&app.base(), "resume-1", Some("0")).await;
    let opening = everything.next().await;
    assert_eq!(opening.id.as_deref(), Some("1.0"));
    assert_eq!(opening.data["node"], "start");
}

#[tokio::test]
async fn unknown_threads_and_bad_event_ids_are_refused() {
    let app = spawn_app_with(|_| {}).await;
    let (code, body) = app.get("/api/threads/no-such-thread/events").await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["thread_id"], "no-such-thread");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown thread"))
    );
    app.chat_in("known", "What is the weather in Oslo").await;
    let response = http()
        .get(app.url("/api/threads/known/events"))
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.expect("JSON error");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("soon")),
        "{body}"
    );
}

#[tokio::test]
async fn a_stream_on_one_process_follows_a_run_on_another() {
    let pg = TestPostgres::create().await;
    let runner = ServerProcess::start_url(&pg.url, &["--demo-latency", "data-analysis=300"]);
    let listening = ServerProcess::start_url(&pg.url, &[]);
    let polling = ServerProcess::start_url(&pg.url, &["--pg-listen", "false"]);
    let (code, asked) = post(
        &runner.base,
        "/api/chat",
        json!({"prompt": "Help me analyze data but I need guidance", "thread_id": "across"}),
    )
    .await;
    assert_eq!(code, 200, "{asked}");
    let mut streams = Vec::new();
    for process in [&listening, &polling] {
        let mut stream = SseStream::open(&process.base, "across", None).await;
        let snapshot = stream.next().await;
        assert_eq!(snapshot.data["status"], "pending_user_input");
        assert_eq!(snapshot.data["question_id"], asked["question_id"]);
        streams.push((stream, snapshot.id.expect("snapshot id")));
    }
    let (code, done) = answer_at(&runner.base, "across", "I want to analyze sales data").await;
    assert_eq!(code, 200, "{done}");
    let mut seen = Vec::new();
    for (stream, _) in &mut streams {
        seen.push(stream.until("run_finished").await);
    }
    let replayed = replayed_after(&listening.base, "across", &streams[0].1).await;
    assert_eq!(
        seen[0], replayed,
        "live on another process, as the history tells it"
    );
    assert_eq!(
        seen[1], replayed,
        "without notifications, by polling: the same events"
    );
    assert_eq!(
        kinds(&replayed),
        [
            "answer_received",
            "task_started",
            "task_finished",
            "run_finished"
        ]
    );
    let task = of_kind(&replayed, "task_finished")[0];
    assert_eq!(task.data["agent_id"], "demo.data-analysis");
    assert!(task.data["latency_ms"].as_u64().is_some_and(|ms| ms >= 300));
}

/// The process's live counts (`GET /api/health`'s `live`).
async fn live(base: &str) -> Value {
    let (code, health) = get(base, "/api/health").await;
    assert_eq!(code, 200, "{health}");
    health["live"].clone()
}

/// Waits until the process at `base` counts `count` of `what` (`ws_watches`, `event_streams`).
async fn live_count_becomes(base: &str, what: &str, count: u64) {
    eventually(
        &format!("{what} = {count}"),
        Duration::from_secs(10),
        || async { (live(base).await[what] == count).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_watch_on_an_idle_thread_ends_with_its_socket() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &[]);
    let base = &server.base;
    let (code, _) = post(
        base,
        "/api/chat",
        json!({"prompt": "What is the weather in Oslo", "thread_id": "idle"}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(live(base).await["ws_watches"], 0);
    let mut socket = connect_ws(&ws_url_of(base)).await;
    send_frame(&mut socket, json!({"type": "watch", "thread_id": "idle"})).await;
    assert_eq!(next_frame(&mut socket).await["status"], "completed");
    assert_eq!(
        live(base).await["ws_watches"],
        1,
        "the watch polls the store"
    );
    socket.close(None).await.expect("closed");
    drop(socket);
    live_count_becomes(base, "ws_watches", 0).await;

    // Dropped without a close frame, too; and an event stream ends when its client goes.
    let mut socket = connect_ws(&ws_url_of(base)).await;
    send_frame(&mut socket, json!({"type": "watch", "thread_id": "idle"})).await;
    next_frame(&mut socket).await;
    let mut stream = SseStream::open(base, "idle", None).await;
    stream.next().await;
    assert_eq!(
        live(base).await,
        json!({"ws_watches": 1, "event_streams": 1})
    );
    drop(socket);
    drop(stream);
    live_count_becomes(base, "ws_watches", 0).await;
    live_count_becomes(base, "event_streams", 0).await;
}

#[tokio::test]
async fn watches_per_socket_are_capped() {
    let app: TestApp = spawn_app_with(|s| s.ws_max_watches = 2).await;
    for thread in ["cap-1", "cap-2", "cap-3"] {
        let (code, _) = app.chat_in(thread, "What is the weather in Oslo").await;
        assert_eq!(code, 200);
    }
    let mut socket = connect_ws(&app.ws_url()).await;
    for thread in ["cap-1", "cap-2"] {
        send_frame(&mut socket, json!({"type": "watch", "thread_id": thread})).await;
        assert_eq!(next_frame(&mut socket).await["thread_id"], thread);
    }
    send_frame(&mut socket, json!({"type": "watch", "thread_id": "cap-3"})).await;
    let refused = next_frame(&mut socket).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("--ws-max-watches")),
        "{refused}"
    );
    send_frame(&mut socket, json!({"type": "watch", "thread_id": "cap-1"})).await;
    let twice = next_frame(&mut socket).await;
    assert!(
        twice["error"]
            .as_str()
            .is_some_and(|e| e.contains("already watches thread cap-1")),
        "{twice}"
    );
    send_frame(
        &mut socket,
        json!({"type": "unwatch", "thread_id": "cap-1"}),
    )
    .await;
    send_frame(&mut socket, json!({"type": "watch", "thread_id": "cap-3"})).await;
    let admitted = next_frame(&mut socket).await;
    assert_eq!(admitted["type"], "response", "{admitted}");
    assert_eq!(admitted["thread_id"], "cap-3");
    send_frame(
        &mut socket,
        json!({"type": "unwatch", "thread_id": "cap-1"}),
    )
    .await;
    let not_watched = next_frame(&mut socket).await;
    assert!(
        not_watched["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not watch thread cap-1")),
        "{not_watched}"
    );
}

#[tokio::test]
async fn a_streaming_agents_progress_comes_live_without_an_id() {
    use crate::pyagent::{PyAgent, ask_weather_until_working, baton};
    let (dir, db) = temp_db();
    let agent = PyAgent::start(dir.path(), &["--stream"]);
    let server = baton(&db, Some(&agent)).await;
    let request = ask_weather_until_working(&server, &agent, "noted").await;
    let mut stream = SseStream::open(&server.base, "noted", None).await;
    assert_eq!(stream.next().await.data["status"], "processing");
    let events = stream.until("run_finished").await;
    let notes = of_kind(&events, "progress");
    assert!(
        notes.iter().any(|n| n.data["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Looking at the sky over Paris"))),
        "no progress relayed: {events:?}"
    );
    assert!(
        notes
            .iter()
            .all(|n| n.id.is_none() && n.data["task_id"] == "t1" && n.data["thread_id"] == "noted"),
        "{notes:?}"
    );
    let finished = of_kind(&events, "task_finished");
    assert_eq!(finished[0].data["outcome"], "ok", "{events:?}");
    let checkpointed: Vec<SseEvent> = events
        .into_iter()
        .filter(|e| e.event != "progress")
        .collect();
    assert_well_formed(&checkpointed);
    let response = request.await.expect("joined").expect("answered");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_cancelled_thread_says_so() {
    let app = spawn_app_with(|_| {}).await;
    let (code, _) = app
        .chat_in("to-cancel", "Help me analyze data but I need guidance")
        .await;
    assert_eq!(code, 200);
    let mut stream = SseStream::open(&app.base(), "to-cancel", None).await;
    assert_eq!(stream.next().await.data["status"], "pending_user_input");
    let (code, cancelled) = app.post("/api/threads/to-cancel/cancel", &json!({})).await;
    assert_eq!(code, 200, "{cancelled}");
    let events = stream.until("run_cancelled").await;
    assert_eq!(events[0].event, "node_finished");
    assert_eq!(events[0].data["node"], "cancel");
    assert_eq!(events[0].data["status"], "cancelled");
    assert_eq!(kinds(&events), ["run_cancelled"]);
}
