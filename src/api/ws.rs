//! `WS /ws/chat`: start and continue threads over one socket, with live progress.
//!
//! Client messages: `{"type":"start","prompt",…}`, `{"type":"continue","response","thread_id"}`,
//! `{"type":"cancel","thread_id"}` (stops the thread's run, answered like `continue`) and
//! `{"type":"watch","thread_id"}`.
//! Server messages: `{"type":"event",…}` as each node finishes, then `{"type":"response",…}` with
//! every `ProcessResponse` field when the run stops; `{"type":"error","error",…}` for a bad frame,
//! after which the socket stays usable. Several threads may run over one socket at once.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::chat::{ChatRequest, ContinueRequest, ProcessResponse};
use super::error::parse_json;
use super::{AppError, AppState};
use crate::engine::view::ThreadView;
use crate::engine::{Engine, EngineError};

/// Frames waiting to be written to one socket.
const OUTBOX: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Start(ChatRequest),
    Continue(ContinueRequest),
    Cancel(CancelRequest),
    Watch(WatchRequest),
}

/// `{"type":"cancel","thread_id":…}`: stop the thread's run (see `POST /api/threads/{id}/cancel`).
#[derive(Debug, Deserialize)]
struct CancelRequest {
    thread_id: String,
}

/// `{"type":"watch","thread_id":…}`: follow a thread wherever its runs execute.
#[derive(Debug, Deserialize)]
struct WatchRequest {
    thread_id: String,
}

/// How often a watch checks the store for checkpoints whose notification it missed.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Upgrades the connection.
pub async fn upgrade(ws: WebSocketUpgrade, State(app): State<AppState>) -> Response {
    ws.max_message_size(app.max_body_bytes)
        .max_frame_size(app.max_body_bytes)
        .on_upgrade(move |socket| session(socket, app.engine))
}

async fn session(socket: WebSocket, engine: Engine) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Value>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text.as_str().to_owned(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        match parse_message(&text) {
            Ok(Command::Watch(thread_id)) => {
                tokio::spawn(watch(engine.clone(), outbox.clone(), thread_id));
            }
            Ok(Command::Run(run)) => {
                tokio::spawn(run_command(engine.clone(), outbox.clone(), run));
            }
            Err(e) => {
                let _ = outbox.send(error_frame(&e, None)).await;
            }
        }
    }
    drop(outbox);
    let _ = writer.await;
}

/// A validated client message.
enum Command {
    /// Runs the thread and answers with its response.
    Run(Run),
    /// Follows a thread someone else runs.
    Watch(String),
}

/// A message that runs a thread until it pauses or ends.
enum Run {
    Start(crate::engine::StartRequest),
    Continue(ContinueRequest),
    /// Cancels the thread's run; its response is the cancelled thread.
    Cancel(String),
}

fn parse_message(text: &str) -> Result<Command, AppError> {
    let value: Value = parse_json(text.as_bytes())?;
    match value.get("type").and_then(Value::as_str) {
        Some("start" | "continue" | "cancel" | "watch") => {}
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "unknown message type {other:?}; expected \"start\", \"continue\", \"cancel\" or \"watch\""
            )));
        }
        None => {
            return Err(AppError::Invalid(
                "a message needs \"type\": \"start\", \"continue\", \"cancel\" or \"watch\""
                    .to_owned(),
            ));
        }
    }
    let message: ClientMessage = serde_json::from_value(value)
        .map_err(|e| AppError::Invalid(format!("invalid message: {e}")))?;
    match message {
        ClientMessage::Start(request) => {
            let mut start = request.validate()?;
            // The socket needs the id before the run starts, to pick out its events.
            start.thread_id.get_or_insert_with(Engine::new_thread_id);
            Ok(Command::Run(Run::Start(start)))
        }
        ClientMessage::Continue(request) => {
            request.validate()?;
            Ok(Command::Run(Run::Continue(request)))
        }
        ClientMessage::Cancel(request) => {
            super::chat::validate_thread_id(&request.thread_id)?;
            Ok(Command::Run(Run::Cancel(request.thread_id)))
        }
        ClientMessage::Watch(request) => {
            super::chat::validate_thread_id(&request.thread_id)?;
            Ok(Command::Watch(request.thread_id))
        }
    }
}

/// Follows a thread until the socket closes: its current state as a `response` frame, then every
/// checkpoint as an `event` (from this process's bus, which carries other processes' events on a
/// shared database) and a `response` each time a run stops. A poll of the store every second
/// replays from the history any checkpoint whose notification was missed.
async fn watch(engine: Engine, outbox: mpsc::Sender<Value>, thread_id: String) {
    let mut events = engine.events().subscribe();
    let current = match engine.checkpoint(&thread_id).await {
        Ok(checkpoint) => checkpoint,
        Err(e) => {
            let _ = outbox
                .send(error_frame(&AppError::Engine(e), Some(&thread_id)))
                .await;
            return;
        }
    };
    let mut seen = current.version;
    if outbox
        .send(response_frame(ThreadView::of(&current)))
        .await
        .is_err()
    {
        return;
    }
    let mut poll = tokio::time::interval(WATCH_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopped = tokio::select! {
            () = outbox.closed() => return,
            event = events.recv() => match event {
                Ok(event) if event.thread_id == thread_id && !event.is_checkpoint() => {
                    // An agent's progress: passed on as it comes, and it says nothing new of
                    // the thread's checkpoints.
                    if !send_event(&outbox, &event).await {
                        return;
                    }
                    continue;
                }
                Ok(event) if event.thread_id == thread_id => {
                    if event.version <= seen {
                        continue;
                    }
                    seen = event.version;
                    let stopped = event.status != crate::state::ThreadStatus::Processing;
                    if !send_event(&outbox, &event).await {
                        return;
                    }
                    stopped
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = poll.tick() => {
                let Ok(head) = engine.checkpoint(&thread_id).await else { continue };
                if head.version <= seen {
                    continue;
                }
                let Ok(history) = engine.store().history(&thread_id).await else { continue };
                // Only up to the head read above: the history, read after it, may already hold
                // later checkpoints, and sending those while `seen` stays at the head would
                // send them twice.
                for entry in history
                    .iter()
                    .rev()
                    .filter(|e| e.version > seen && e.version <= head.version)
                {
                    let event = crate::engine::events::ThreadEvent {
                        thread_id: thread_id.clone(),
                        node: entry.node,
                        status: entry.status,
                        next: entry.next,
                        step: entry.step,
                        version: entry.version,
                        detail: Some("replayed from the store".to_owned()),
                        progress: None,
                    };
                    if !send_event(&outbox, &event).await {
                        return;
                    }
                }
                seen = head.version;
                head.state.status != crate::state::ThreadStatus::Processing
            }
        };
        if stopped {
            match engine.status(&thread_id).await {
                Ok(view) => {
                    if outbox.send(response_frame(view)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = outbox
                        .send(error_frame(&AppError::Engine(e), Some(&thread_id)))
                        .await;
                }
            }
        }
    }
}

async fn send_event(
    outbox: &mpsc::Sender<Value>,
    event: &crate::engine::events::ThreadEvent,
) -> bool {
    let mut frame = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    frame["type"] = json!("event");
    outbox.send(frame).await.is_ok()
}

fn response_frame(view: ThreadView) -> Value {
    let mut frame = serde_json::to_value(ProcessResponse::from(view)).unwrap_or_else(|_| json!({}));
    frame["type"] = json!("response");
    frame
}

/// Runs one command, forwarding the thread's events, then its response.
async fn run_command(engine: Engine, outbox: mpsc::Sender<Value>, command: Run) {
    let thread_id = match &command {
        Run::Start(s) => s.thread_id.clone().unwrap_or_default(),
        Run::Continue(c) => c.thread_id.clone(),
        Run::Cancel(id) => id.clone(),
    };
    let mut events = engine.events().subscribe();
    let run_engine = engine.clone();
    let mut run = tokio::spawn(async move {
        match command {
            Run::Start(start) => run_engine.start(start).await,
            Run::Continue(c) => {
                run_engine
                    .answer(&c.thread_id, &c.response, c.question_id.as_deref())
                    .await
            }
            Run::Cancel(id) => run_engine.cancel(&id).await,
        }
    });
    let outcome: Result<ThreadView, EngineError> = loop {
        tokio::select! {
            joined = &mut run => {
                break joined.unwrap_or_else(|source| {
                    Err(EngineError::Aborted { thread_id: thread_id.clone(), source })
                });
            }
            event = events.recv() => {
                if !forward(&outbox, &thread_id, event).await {
                    run.abort();
                    return;
                }
            }
        }
    };
    // Events published just before the run returned are still buffered: send them first.
    loop {
        match events.try_recv() {
            Ok(event) => {
                if !forward(&outbox, &thread_id, Ok(event)).await {
                    return;
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    let frame = match outcome {
        Ok(view) => {
            let mut frame =
                serde_json::to_value(ProcessResponse::from(view)).unwrap_or_else(|_| json!({}));
            frame["type"] = json!("response");
            frame
        }
        Err(e) => error_frame(&AppError::Engine(e), Some(&thread_id)),
    };
    let _ = outbox.send(frame).await;
}

/// Sends the event if it is this thread's; false once the socket is gone.
async fn forward(
    outbox: &mpsc::Sender<Value>,
    thread_id: &str,
    event: Result<crate::engine::events::ThreadEvent, broadcast::error::RecvError>,
) -> bool {
    match event {
        Ok(event) if event.thread_id == thread_id => send_event(outbox, &event).await,
        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => true,
        Err(broadcast::error::RecvError::Closed) => true,
    }
}

fn error_frame(error: &AppError, thread_id: Option<&str>) -> Value {
    let mut frame = error.body();
    frame["type"] = json!("error");
    frame["requires_user_input"] = json!(false);
    if let (Some(id), None) = (thread_id, frame.get("thread_id")) {
        frame["thread_id"] = json!(id);
    }
    frame
}
