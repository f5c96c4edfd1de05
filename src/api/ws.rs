//! `WS /ws/chat`: start and continue threads over one socket, with live progress.
//!
//! Client messages: `{"type":"start","prompt",…}` and `{"type":"continue","response","thread_id"}`.
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
}

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
            Ok(command) => {
                tokio::spawn(run_command(engine.clone(), outbox.clone(), command));
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
    Start(crate::engine::StartRequest),
    Continue(ContinueRequest),
}

fn parse_message(text: &str) -> Result<Command, AppError> {
    let value: Value = parse_json(text.as_bytes())?;
    match value.get("type").and_then(Value::as_str) {
        Some("start" | "continue") => {}
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "unknown message type {other:?}; expected \"start\" or \"continue\""
            )));
        }
        None => {
            return Err(AppError::Invalid(
                "a message needs \"type\": \"start\" or \"continue\"".to_owned(),
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
            Ok(Command::Start(start))
        }
        ClientMessage::Continue(request) => {
            request.validate()?;
            Ok(Command::Continue(request))
        }
    }
}

/// Runs one command, forwarding the thread's events, then its response.
async fn run_command(engine: Engine, outbox: mpsc::Sender<Value>, command: Command) {
    let thread_id = match &command {
        Command::Start(s) => s.thread_id.clone().unwrap_or_default(),
        Command::Continue(c) => c.thread_id.clone(),
    };
    let mut events = engine.events().subscribe();
    let run_engine = engine.clone();
    let mut run = tokio::spawn(async move {
        match command {
            Command::Start(start) => run_engine.start(start).await,
            Command::Continue(c) => {
                run_engine
                    .answer(&c.thread_id, &c.response, c.question_id.as_deref())
                    .await
            }
        }
    });
    let outcome: Result<ThreadView, EngineError> = loop {
        tokio::select! {
            joined = &mut run => {
                break joined.unwrap_or_else(|_| Err(EngineError::Aborted(thread_id.clone())));
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
        Ok(event) if event.thread_id == thread_id => {
            let mut frame = serde_json::to_value(&event).unwrap_or_else(|_| json!({}));
            frame["type"] = json!("event");
            outbox.send(frame).await.is_ok()
        }
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
