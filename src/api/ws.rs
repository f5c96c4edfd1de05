//! `WS /ws/chat`: start and continue threads over one socket, with live progress.
//!
//! Client messages: `{"type":"start","prompt",…}`, `{"type":"continue","response","thread_id"}`,
//! `{"type":"cancel","thread_id"}` (stops the thread's run, answered like `continue`),
//! `{"type":"watch","thread_id"}` and `{"type":"unwatch","thread_id"}`.
//! Server messages: `{"type":"event",…}` as each node finishes, then `{"type":"response",…}` with
//! every `ProcessResponse` field when the run stops; `{"type":"error","error",…}` for a bad frame,
//! after which the socket stays usable. Several threads may run over one socket at once.
//!
//! Everything a socket starts (its watches, and the tasks forwarding its runs' events) is owned by
//! the socket and stopped when it closes; a run itself goes on to its pause or end, as over HTTP.
//! A socket watches at most `--ws-max-watches` threads at once, sends messages of at most
//! `--ws-max-message-bytes` (a larger one closes it with code 1009) and at most
//! `--ws-messages-per-second` on average (a message beyond that gets an error frame and is not
//! acted on).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::task::{AbortHandle, Id, JoinSet};

use super::auth::Slot;
use super::chat::{ChatRequest, ContinueRequest, ProcessResponse};
use super::error::parse_json;
use super::input_limits::InputLimits;
use super::live::{Held, Holding};
use super::observe::{current_request_id, with_request_id};
use super::{AppError, AppState};
use crate::access::Access;
use crate::agents::policy::UrlPolicy;
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
    Unwatch(WatchRequest),
}

/// `{"type":"cancel","thread_id":…}`: stop the thread's run (see `POST /api/threads/{id}/cancel`).
#[derive(Debug, Deserialize)]
struct CancelRequest {
    thread_id: String,
}

/// `{"type":"watch","thread_id":…}`: follow a thread wherever its runs execute;
/// `{"type":"unwatch","thread_id":…}`: stop following it.
#[derive(Debug, Deserialize)]
struct WatchRequest {
    thread_id: String,
}

/// How often a watch checks the store for checkpoints whose notification it missed.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Upgrades the connection.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    slot: Option<Extension<Slot>>,
) -> Response {
    // The session runs in a task of its own: its error frames carry the upgrade's request id.
    let request_id = current_request_id().unwrap_or_default();
    let limits = app.input;
    ws.max_message_size(limits.ws_message_bytes)
        .max_frame_size(limits.ws_message_bytes)
        .on_upgrade(move |socket| async move {
            // The key's stream slot (`--key-max-streams`) is held while the socket is open.
            let _slot = slot;
            let session = session(socket, app.engine, access, app.ws_max_watches, limits);
            with_request_id(request_id, session).await;
        })
}

/// One socket's life, until the client closes it or breaks a limit. `access` is the upgrade
/// request's: every thread it starts is its owner's, and it may continue, cancel or watch only
/// threads that access may see.
async fn session(
    socket: WebSocket,
    engine: Engine,
    access: Access,
    max_watches: usize,
    limits: InputLimits,
) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Value>(OUTBOX);
    // Ends once every sender is gone (the tasks below are stopped first) or the client is;
    // gives the sink back for a closing frame.
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
        sink
    });
    let mut tasks = SocketTasks::new(max_watches);
    let mut rate = limits.ws_bucket();
    let mut closing = None;
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            Some(ended) = tasks.set.join_next_with_id() => {
                tasks.ended(ended);
                continue;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
            Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Err(e)) => {
                closing = too_big(e, &limits);
                break;
            }
            Some(Ok(Message::Close(_))) | None => break,
        };
        if let Err(retry_after) = rate.take() {
            let refused = AppError::TooMany {
                message: format!(
                    "too many messages on this socket (at most {} a second, \
                     --ws-messages-per-second); this one was not acted on",
                    limits.ws_messages_per_second
                ),
                retry_after,
            };
            let _ = outbox.send(error_frame(&refused, None)).await;
            continue;
        }
        let policy = engine.services().agents.http().policy();
        let refused = match parse_message(&text, policy, &limits) {
            Ok(Command::Watch(thread_id)) => tasks.watch(&engine, &access, &outbox, thread_id),
            Ok(Command::Unwatch(thread_id)) => tasks.unwatch(&thread_id),
            Ok(Command::Run(run)) => {
                let run = run_command(engine.clone(), access.clone(), outbox.clone(), run);
                tasks
                    .set
                    .spawn(with_request_id(tasks.request_id.clone(), run));
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = refused {
            let _ = outbox.send(error_frame(&e, None)).await;
        }
    }
    // The socket is gone: its watches and forwarders stop here (runs go on in their own
    // tasks), and with their senders dropped the writer ends.
    tasks.set.shutdown().await;
    drop(outbox);
    if let (Ok(mut sink), Some(frame)) = (writer.await, closing) {
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}

/// The closing frame for a read that failed because the message was larger than
/// `--ws-max-message-bytes` (1009, message too big); `None` for any other failure (the
/// connection is gone, or broke the protocol: nothing to say).
fn too_big(error: axum::Error, limits: &InputLimits) -> Option<CloseFrame> {
    let error = error.into_inner();
    let capacity = matches!(
        error.downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    );
    capacity.then(|| CloseFrame {
        code: close_code::SIZE,
        reason: format!(
            "message larger than {} bytes (--ws-max-message-bytes)",
            limits.ws_message_bytes
        )
        .into(),
    })
}

/// The tasks one socket started, stopped together when it closes.
struct SocketTasks {
    set: JoinSet<()>,
    /// The watches among them, by task: the thread each follows, and how to stop it.
    watches: std::collections::HashMap<Id, (String, AbortHandle)>,
    max_watches: usize,
    /// The upgrade request's id, carried into each task so its error frames say it too.
    request_id: String,
}

impl SocketTasks {
    fn new(max_watches: usize) -> Self {
        SocketTasks {
            set: JoinSet::new(),
            watches: std::collections::HashMap::new(),
            max_watches,
            request_id: current_request_id().unwrap_or_default(),
        }
    }

    /// Starts watching `thread_id`, unless the socket already does or is at its cap.
    fn watch(
        &mut self,
        engine: &Engine,
        access: &Access,
        outbox: &mpsc::Sender<Value>,
        thread_id: String,
    ) -> Result<(), AppError> {
        if self.watches.values().any(|(t, _)| *t == thread_id) {
            return Err(AppError::Invalid(format!(
                "this socket already watches thread {thread_id}"
            )));
        }
        if self.watches.len() >= self.max_watches {
            return Err(AppError::Invalid(format!(
                "this socket already watches {} threads, the most it may (--ws-max-watches); \
                 send {{\"type\":\"unwatch\",\"thread_id\":…}} first, or open another socket",
                self.watches.len()
            )));
        }
        let watching = watch(
            engine.clone(),
            access.clone(),
            outbox.clone(),
            thread_id.clone(),
            Holding::new(Held::WsWatch),
        );
        let task = self
            .set
            .spawn(with_request_id(self.request_id.clone(), watching));
        self.watches.insert(task.id(), (thread_id, task));
        Ok(())
    }

    /// Stops watching `thread_id`.
    fn unwatch(&mut self, thread_id: &str) -> Result<(), AppError> {
        let Some(id) = self
            .watches
            .iter()
            .find_map(|(id, (t, _))| (t == thread_id).then_some(*id))
        else {
            return Err(AppError::Invalid(format!(
                "this socket does not watch thread {thread_id}"
            )));
        };
        if let Some((_, task)) = self.watches.remove(&id) {
            task.abort();
        }
        Ok(())
    }

    /// Forgets a task that ended (a watch of an unknown thread ends at once).
    fn ended(&mut self, ended: Result<(Id, ()), tokio::task::JoinError>) {
        let id = match ended {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        self.watches.remove(&id);
    }
}

/// A validated client message.
enum Command {
    /// Runs the thread and answers with its response.
    Run(Run),
    /// Follows a thread someone else runs.
    Watch(String),
    /// Stops following it.
    Unwatch(String),
}

/// A message that runs a thread until it pauses or ends.
enum Run {
    Start(crate::engine::StartRequest),
    Continue(ContinueRequest),
    /// Cancels the thread's run; its response is the cancelled thread.
    Cancel(String),
}

fn parse_message(
    text: &str,
    policy: &UrlPolicy,
    limits: &InputLimits,
) -> Result<Command, AppError> {
    let value: Value = parse_json(text.as_bytes())?;
    match value.get("type").and_then(Value::as_str) {
        Some("start" | "continue" | "cancel" | "watch" | "unwatch") => {}
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "unknown message type {other:?}; expected \"start\", \"continue\", \"cancel\", \"watch\" or \"unwatch\""
            )));
        }
        None => {
            return Err(AppError::Invalid(
                "a message needs \"type\": \"start\", \"continue\", \"cancel\", \"watch\" or \"unwatch\""
                    .to_owned(),
            ));
        }
    }
    let message: ClientMessage = serde_json::from_value(value)
        .map_err(|e| AppError::Invalid(format!("invalid message: {e}")))?;
    match message {
        ClientMessage::Start(request) => {
            let mut start = request.validate(policy, limits)?;
            // The socket needs the id before the run starts, to pick out its events.
            start.thread_id.get_or_insert_with(Engine::new_thread_id);
            Ok(Command::Run(Run::Start(start)))
        }
        ClientMessage::Continue(request) => {
            request.validate(limits)?;
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
        ClientMessage::Unwatch(request) => {
            super::chat::validate_thread_id(&request.thread_id)?;
            Ok(Command::Unwatch(request.thread_id))
        }
    }
}

/// Follows a thread until the socket closes: its current state as a `response` frame, then every
/// checkpoint as an `event` (from this process's bus, which carries other processes' events on a
/// shared database) and a `response` each time a run stops. A poll of the store every second
/// replays from the history any checkpoint whose notification was missed. `_held` counts the
/// watch (see `api::live`) for as long as it runs.
async fn watch(
    engine: Engine,
    access: Access,
    outbox: mpsc::Sender<Value>,
    thread_id: String,
    _held: Holding,
) {
    let mut events = engine.events().subscribe();
    let current = match engine.visible(&thread_id, &access).await {
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
async fn run_command(engine: Engine, access: Access, outbox: mpsc::Sender<Value>, command: Run) {
    let thread_id = match &command {
        Run::Start(s) => s.thread_id.clone().unwrap_or_default(),
        Run::Continue(c) => c.thread_id.clone(),
        Run::Cancel(id) => id.clone(),
    };
    // Checked before any of the thread's events is forwarded: another key's thread is told as
    // missing, and none of its events reach this socket. A start of a thread that does not
    // exist yet creates it for this access.
    let checked = match &command {
        Run::Start(_) => match engine.store().get_checkpoint(&thread_id).await {
            Ok(Some(head)) if !access.may_see(head.state.owner.as_ref()) => {
                Err(EngineError::NotFound(thread_id.clone()))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(EngineError::from(e)),
        },
        Run::Continue(_) | Run::Cancel(_) => engine.check_visible(&thread_id, &access).await,
    };
    if let Err(e) = checked {
        let _ = outbox
            .send(error_frame(&AppError::Engine(e), Some(&thread_id)))
            .await;
        return;
    }
    let command = match command {
        Run::Start(start) => Run::Start(crate::engine::StartRequest { access, ..start }),
        other => other,
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
    error.log_if_server_error();
    let mut frame = serde_json::to_value(error.body()).unwrap_or_else(|_| json!({}));
    frame["type"] = json!("error");
    frame["requires_user_input"] = json!(false);
    if let (Some(id), None) = (thread_id, frame.get("thread_id")) {
        frame["thread_id"] = json!(id);
    }
    frame
}
