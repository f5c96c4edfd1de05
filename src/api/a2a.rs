//! Baton as an A2A agent: its card at `/.well-known/agent-card.json` and the JSON-RPC binding at
//! [`RPC_PATH`], v1.0 and v0.3, through the same server face as the demo agents
//! (`crate::agents::a2a::server`), so one Baton can be an agent in another Baton's directory and
//! any A2A client can drive a whole orchestration, questions included.
//!
//! The mapping: a thread is an A2A context (its id is the `contextId`), a turn of it is a task
//! (its id is a [`TurnId`], `{thread_id}:{turn}`). A turn that waits for the user is
//! `input-required` with the oldest pending question as the status message; a message carrying
//! that task's id answers it; a completed turn carries the final response as an artifact; a
//! failed one says why in its status message. Nothing is kept in memory: every answer is
//! rebuilt from the thread's checkpoint (earlier turns from the store's turn log, read a turn
//! at a time: `Engine::earlier_turns`, `Engine::turn_opened_by`).

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::http::header::HOST;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::AppState;
use super::chat::{DEFAULT_MAX_RESULTS, validate_thread_id};
use super::error::ErrorBody;
use super::input_limits::InputLimits;
use super::openapi::{A2aCard, JsonRpcRequest, JsonRpcResponse};
use crate::access::Access;
use crate::agents::a2a::server::{self, EventStream, Handler, Versions, card_json};
use crate::agents::a2a::wire::{
    Artifact, Message, Part, Role, RpcError, RpcRequest, StreamEvent, Task, TaskState, TaskStatus,
    readable,
};
use crate::agents::progress::AgentProgress;
use crate::card::{AgentCapabilities, AgentCard, AgentSkill, Protocol};
use crate::engine::events::ThreadEvent;
use crate::engine::view::ThreadView;
use crate::engine::{Engine, EngineError, StartRequest};
use crate::state::ThreadStatus;
use crate::store::{Checkpoint, LoggedTurn};

/// Where Baton answers A2A JSON-RPC requests; the card names it.
pub const RPC_PATH: &str = "/a2a";

/// Most tags of the directory's agents the card's skill lists.
const MAX_TAGS: usize = 64;

/// Most examples of the directory's agents the card's skill lists.
const MAX_EXAMPLES: usize = 8;

/// A turn of a thread as an A2A task id, `{thread_id}:{turn}` (turn counted from 0). Thread ids
/// may themselves contain `:`, so the turn is what follows the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnId {
    pub thread_id: String,
    pub turn: usize,
}

/// A task id Baton did not hand out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a task of this agent (tasks are named thread:turn)")]
pub struct NotATurn(String);

impl FromStr for TurnId {
    type Err = NotATurn;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let (thread_id, turn) = id.rsplit_once(':').ok_or_else(|| NotATurn(id.to_owned()))?;
        let turn = turn.parse().map_err(|_| NotATurn(id.to_owned()))?;
        if validate_thread_id(thread_id).is_err() {
            return Err(NotATurn(id.to_owned()));
        }
        Ok(TurnId {
            thread_id: thread_id.to_owned(),
            turn,
        })
    }
}

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.thread_id, self.turn)
    }
}

impl From<NotATurn> for RpcError {
    fn from(e: NotATurn) -> Self {
        RpcError::new(RpcError::TASK_NOT_FOUND, e.to_string())
    }
}

/// `GET /.well-known/agent-card.json`: Baton's card, pointing at [`RPC_PATH`] under
/// `--public-url` or, without it, under the host the request was sent to.
///
/// So any A2A client (another Baton included) can find Baton and drive a whole orchestration.
#[utoipa::path(
    get,
    path = "/.well-known/agent-card.json",
    operation_id = "a2a_card",
    tag = "a2a",
    responses((status = 200, description = "Baton's A2A Agent Card", body = A2aCard))
)]
pub async fn card(State(app): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = match &app.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{}", request_host(&headers)),
    };
    let url = format!("{base}{RPC_PATH}");
    let mut card = card_json(&baton_card(&app, &url), &url, Versions::Both);
    if app.auth.is_some() {
        declare_bearer(&mut card);
    }
    Json(card)
}

/// Says on Baton's card that `/a2a` wants `Authorization: Bearer KEY`, in both shapes the card
/// carries: v0.3's (`securitySchemes` of OpenAPI-like objects, `security`) and v1.0's
/// (`securitySchemes` of proto `oneof` wrappers, `securityRequirements`). One scheme object holds
/// both spellings, since the two versions share the field name.
fn declare_bearer(card: &mut Value) {
    let Some(object) = card.as_object_mut() else {
        return;
    };
    let description = "An API key of this Baton server (or a token from POST /api/auth/token)";
    object.insert(
        "securitySchemes".into(),
        serde_json::json!({
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": description,
                "httpAuthSecurityScheme": {"scheme": "Bearer", "description": description},
            }
        }),
    );
    object.insert("security".into(), serde_json::json!([{"bearer": []}]));
    object.insert(
        "securityRequirements".into(),
        serde_json::json!([{"schemes": {"bearer": {"list": []}}}]),
    );
}

/// The `Host` the request named, if it is a plain authority (anything else could not be a URL's
/// host); `localhost` otherwise.
fn request_host(headers: &HeaderMap) -> String {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map_or_else(|| "localhost".to_owned(), |a| a.to_string())
}

/// How many of the directory's cards (by id) Baton's own card is made from.
const MAX_CARDS_DESCRIBED: usize = 200;

/// Baton's card: one skill, "orchestrate", whose tags and examples are those of the agents in
/// its directory, so another Baton's planner finds it for what those agents do.
fn baton_card(app: &AppState, url: &str) -> AgentCard {
    // The first page: a card's description cannot name 100k agents.
    let agents = app.agents.page(None, MAX_CARDS_DESCRIBED).cards;
    let mut tags: Vec<String> = agents
        .iter()
        .flat_map(|card| card.skills.iter().flat_map(|s| s.tags.iter().cloned()))
        .collect();
    tags.sort();
    tags.dedup();
    tags.truncate(MAX_TAGS);
    let examples = agents
        .iter()
        .flat_map(|card| card.skills.iter().flat_map(|s| s.examples.first().cloned()))
        .take(MAX_EXAMPLES)
        .collect();
    let mut names: Vec<&str> = agents.iter().map(|card| card.name.as_str()).collect();
    names.sort_unstable();
    let skill = AgentSkill {
        id: "orchestrate".into(),
        name: "Orchestrate".into(),
        description: format!(
            "Splits a request into tasks, picks an agent for each from its directory ({}), calls \
             them, asks when something is missing, and composes one answer.",
            names.join(", ")
        ),
        tags,
        examples,
        inputs: Vec::new(),
        input_schema: None,
    };
    AgentCard {
        id: "baton".into(),
        name: "Baton".into(),
        description: "An orchestrator: answers a request by planning it over the agents in its \
                      directory and calling them, asking the user when it needs to."
            .into(),
        url: url.to_owned(),
        version: env!("CARGO_PKG_VERSION").into(),
        capabilities: AgentCapabilities {
            streaming: true,
            push_notifications: false,
        },
        default_input_modes: vec!["text/plain".into()],
        default_output_modes: vec!["text/plain".into()],
        skills: vec![skill],
        price_per_call_usd: 0.0,
        rating: 0.0,
        rating_count: 0,
        protocol: Protocol::A2a,
        protocol_version: None,
        endpoints: Vec::new(),
        extra: serde_json::Map::new(),
    }
}

/// `POST /a2a`: one JSON-RPC request, answered in the version it negotiates.
///
/// v0.3 by default, v1.0 with the header `A2A-Version: 1.0`. Whatever the request says, the
/// answer is 200 with a JSON-RPC response (an `error` for what cannot be served); the streaming
/// methods answer with an event stream whose every `data:` is one.
#[utoipa::path(
    post,
    path = "/a2a",
    operation_id = "a2a_rpc",
    tag = "a2a",
    params(("A2A-Version" = Option<String>, Header, description = "`1.0` for the v1.0 binding")),
    request_body = JsonRpcRequest,
    responses(
        (status = 200, description = "A JSON-RPC response, or for `message/stream`, `tasks/resubscribe`, `SendStreamingMessage` and `SubscribeToTask` the task's events as Server-Sent Events, each `data:` a JSON-RPC response",
         content((JsonRpcResponse = "application/json"), (String = "text/event-stream"))),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
    )
)]
pub async fn rpc(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    request: RpcRequest,
) -> Response {
    let face = Face {
        engine: app.engine.clone(),
        access,
        limits: app.input,
    };
    server::answer(&request, &headers, Versions::Both, &face).await
}

/// What a message to Baton does to a thread.
enum Order {
    /// A new turn of this thread (a new thread if it does not exist), opened by the message
    /// with this id (if it has one).
    Start {
        thread_id: String,
        prompt: String,
        opened_by: Option<String>,
    },
    /// The answer to the question the turn waits on.
    Answer(TurnId, String),
    /// The turn this very message opened before: a caller sending it again (after a crash, say)
    /// gets that turn, not a second one.
    Again(TurnId),
}

impl Order {
    fn thread_id(&self) -> &str {
        match self {
            Order::Start { thread_id, .. } => thread_id,
            Order::Answer(turn, _) | Order::Again(turn) => &turn.thread_id,
        }
    }

    /// Runs the thread until it pauses or ends.
    async fn run(self, engine: Engine, access: Access) -> Result<ThreadView, EngineError> {
        match self {
            Order::Start {
                thread_id,
                prompt,
                opened_by,
            } => {
                let request = StartRequest {
                    thread_id: Some(thread_id),
                    prompt,
                    max_results: usize::try_from(DEFAULT_MAX_RESULTS).unwrap_or(5),
                    opened_by,
                    webhook: None,
                    access,
                };
                engine.start(request).await
            }
            Order::Answer(turn, text) => engine.answer(&turn.thread_id, &text, None).await,
            // Whatever the turn is doing, it is the thread's to finish: wait for it.
            Order::Again(turn) => until_paused(&engine, &turn.thread_id).await,
        }
    }
}

/// The engine behind the A2A face, for one request.
#[derive(Clone)]
struct Face {
    engine: Engine,
    /// Who sent the request: only threads it may see are read, answered, listed or cancelled;
    /// another key's thread is "task not found".
    access: Access,
    /// A message's text is a prompt or an answer, held to their lengths.
    limits: InputLimits,
}

impl Face {
    /// What a message asks for: the answer to the turn its `taskId` names, or else a new turn
    /// (of the thread its `contextId` names, or of a new thread).
    async fn order(&self, message: &Message) -> Result<Order, RpcError> {
        let text = readable(&message.parts);
        if text.trim().is_empty() {
            return Err(invalid("the message has no text".into()));
        }
        if let Some(id) = &message.task_id {
            self.limits
                .check_answer("the message's text", &text)
                .map_err(|e| invalid(e.to_string()))?;
            return Ok(Order::Answer(self.answerable(message, id).await?, text));
        }
        self.limits
            .check_prompt("the message's text", &text)
            .map_err(|e| invalid(e.to_string()))?;
        let opened_by = Some(message.message_id.clone()).filter(|id| !id.is_empty());
        if let Some(context) = &message.context_id {
            validate_thread_id(context).map_err(|e| invalid(format!("contextId: {e}")))?;
            if let Some(id) = &opened_by
                && let Some(turn) = self.opened_by(context, id).await?
            {
                return Ok(Order::Again(turn));
            }
        }
        Ok(Order::Start {
            // Named here rather than by the engine, so a stream knows which thread to follow.
            thread_id: message
                .context_id
                .clone()
                .unwrap_or_else(Engine::new_thread_id),
            prompt: text,
            opened_by,
        })
    }

    /// The turn of thread `thread_id` that the message `message_id` opened, if one did.
    async fn opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<TurnId>, RpcError> {
        let checkpoint = match self.engine.visible(thread_id, &self.access).await {
            Err(EngineError::NotFound(_)) => return Ok(None),
            other => other.map_err(engine_error)?,
        };
        let turn = self
            .engine
            .turn_opened_by(&checkpoint.state, message_id)
            .await
            .map_err(engine_error)?;
        Ok(turn.map(|turn| TurnId {
            thread_id: thread_id.to_owned(),
            turn,
        }))
    }

    /// The turn a message with `taskId` `id` may answer: its thread's current turn, in the
    /// message's context if it names one. (Whether it still waits, the engine decides.)
    async fn answerable(&self, message: &Message, id: &str) -> Result<TurnId, RpcError> {
        let turn: TurnId = id.parse()?;
        if message
            .context_id
            .as_ref()
            .is_some_and(|c| *c != turn.thread_id)
        {
            return Err(invalid(format!(
                "task {id} is not in context {}",
                message.context_id.as_deref().unwrap_or_default()
            )));
        }
        let checkpoint = self.checkpoint(&turn.thread_id).await?;
        let current = checkpoint.state.turn_index();
        if turn.turn > current {
            return Err(not_found(id));
        }
        if turn.turn < current {
            return Err(RpcError::new(
                RpcError::UNSUPPORTED_OPERATION,
                format!("task {id} is in terminal state: it is an earlier turn"),
            ));
        }
        Ok(turn)
    }

    /// The current turn's task as of checkpoint `version` (the one a run paused at, even if
    /// another request moved the thread on since).
    async fn task_at(&self, thread_id: &str, version: i64) -> Result<Task, RpcError> {
        let latest = self.checkpoint(thread_id).await?;
        let checkpoint = if latest.version == version {
            latest
        } else {
            self.engine
                .checkpoint_at(thread_id, version)
                .await
                .map_err(engine_error)?
        };
        Ok(current_task(&checkpoint))
    }

    async fn checkpoint(&self, thread_id: &str) -> Result<Checkpoint, RpcError> {
        self.engine
            .visible(thread_id, &self.access)
            .await
            .map_err(engine_error)
    }
}

#[async_trait]
impl Handler for Face {
    async fn send(&self, message: Message) -> Result<Task, RpcError> {
        let order = self.order(&message).await?;
        let again = match &order {
            Order::Again(turn) => Some(turn.to_string()),
            _ => None,
        };
        let view = order
            .run(self.engine.clone(), self.access.clone())
            .await
            .map_err(engine_error)?;
        match again {
            // The turn the message opened, which may be an earlier one by now.
            Some(id) => self.get_task(&id).await,
            None => self.task_at(&view.thread_id, view.version).await,
        }
    }

    async fn get_task(&self, id: &str) -> Result<Task, RpcError> {
        let turn: TurnId = id.parse()?;
        let checkpoint = match self.engine.visible(&turn.thread_id, &self.access).await {
            Err(EngineError::NotFound(_)) => return Err(not_found(id)),
            other => other.map_err(engine_error)?,
        };
        let state = &checkpoint.state;
        let current = state.turn_index();
        if turn.turn == current {
            return Ok(current_task(&checkpoint));
        }
        if turn.turn > current {
            return Err(not_found(id));
        }
        let earlier = self
            .engine
            .earlier_turns(state, turn.turn..turn.turn + 1)
            .await
            .map_err(engine_error)?;
        match earlier.first() {
            Some(logged) => Ok(earlier_task(&state.thread_id, logged)),
            None => Err(not_found(id)),
        }
    }

    async fn send_streaming(&self, message: Message) -> Result<EventStream, RpcError> {
        // Subscribed before the run starts, so no checkpoint of it is missed.
        let events = self.engine.events().subscribe();
        let order = self.order(&message).await?;
        if let Order::Again(turn) = &order {
            let id = turn.to_string();
            return match self.subscribe(&id).await {
                // A finished turn: its task, and the end.
                Err(error) if error.code == RpcError::UNSUPPORTED_OPERATION => {
                    let task = self.get_task(&id).await?;
                    Ok(finished_stream(task))
                }
                other => other,
            };
        }
        let thread_id = order.thread_id().to_owned();
        let run = order.run(self.engine.clone(), self.access.clone());
        Ok(stream_run(self.clone(), thread_id, events, None, run))
    }

    async fn subscribe(&self, id: &str) -> Result<EventStream, RpcError> {
        let turn: TurnId = id.parse()?;
        let events = self.engine.events().subscribe();
        let checkpoint = self.checkpoint(&turn.thread_id).await?;
        let current = checkpoint.state.turn_index();
        if turn.turn > current {
            return Err(not_found(id));
        }
        if turn.turn < current || checkpoint.state.status.is_finished() {
            return Err(RpcError::new(
                RpcError::UNSUPPORTED_OPERATION,
                format!("task {id} is in terminal state"),
            ));
        }
        let engine = self.engine.clone();
        let thread_id = turn.thread_id.clone();
        let now = current_task(&checkpoint);
        let paused = async move { until_paused(&engine, &turn.thread_id).await };
        Ok(stream_run(
            self.clone(),
            thread_id,
            events,
            Some(now),
            paused,
        ))
    }

    /// Stops the thread's current turn (`Engine::cancel`); a finished turn is not cancelable.
    async fn cancel_task(&self, id: &str) -> Result<Task, RpcError> {
        let task = self.get_task(id).await?;
        let state = task.status.state;
        if matches!(
            state,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        ) {
            return Err(RpcError::new(
                RpcError::TASK_NOT_CANCELABLE,
                format!("task {id} is {state} and cannot be canceled"),
            ));
        }
        let turn: TurnId = id.parse()?;
        let view = self
            .engine
            .cancel(&turn.thread_id)
            .await
            .map_err(engine_error)?;
        self.task_at(&view.thread_id, view.version).await
    }

    async fn list_tasks(&self, context_id: &str) -> Result<Vec<Task>, RpcError> {
        if context_id.is_empty() {
            return Err(invalid(
                "ListTasks needs a contextId: tasks are listed per context (thread)".into(),
            ));
        }
        let checkpoint = match self.engine.visible(context_id, &self.access).await {
            Err(EngineError::NotFound(_)) => return Ok(Vec::new()),
            other => other.map_err(engine_error)?,
        };
        let state = &checkpoint.state;
        let earlier = self
            .engine
            .earlier_turns(state, 0..state.turn_index())
            .await
            .map_err(engine_error)?;
        // Most recently updated first, as A2A lists them.
        let mut tasks = vec![current_task(&checkpoint)];
        tasks.extend(
            earlier
                .iter()
                .rev()
                .map(|logged| earlier_task(&state.thread_id, logged)),
        );
        Ok(tasks)
    }
}

/// How often a subscription looks at the store for a run that paused in another process.
const SUBSCRIBE_POLL: Duration = Duration::from_secs(1);

/// Events of one stream waiting to be written.
const STREAM_BUFFER: usize = 64;

/// Follows `thread_id` while `run` runs it: the task first (`now`, or once the run has written
/// it), a
/// `working` status update per checkpoint, then the settled task's artifact and the last status
/// update (`input-required` with the question, `completed`, `failed`).
/// The task ends with the run, or when the client goes away (the run goes on without it).
fn stream_run(
    face: Face,
    thread_id: String,
    mut events: broadcast::Receiver<ThreadEvent>,
    now: Option<Task>,
    run: impl Future<Output = Result<ThreadView, EngineError>> + Send + 'static,
) -> EventStream {
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut opened = false;
        if let Some(task) = now {
            opened = true;
            if sender.send(Ok(StreamEvent::Task(task))).await.is_err() {
                return;
            }
        }
        tokio::pin!(run);
        let outcome = loop {
            let event = tokio::select! {
                () = sender.closed() => return,
                outcome = &mut run => break outcome,
                event = events.recv() => match event {
                    Ok(event) if event.thread_id == thread_id => event,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    // The bus lives as long as the engine: wait for the run alone.
                    Err(broadcast::error::RecvError::Closed) => break (&mut run).await,
                },
            };
            if !face.progress(&sender, &mut opened, &event).await {
                return;
            }
        };
        // Checkpoints published before the run returned are still queued.
        while let Ok(event) = events.try_recv() {
            if event.thread_id == thread_id && !face.progress(&sender, &mut opened, &event).await {
                return;
            }
        }
        let settled = match outcome {
            Ok(view) => face.task_at(&view.thread_id, view.version).await,
            Err(e) => Err(engine_error(e)),
        };
        match settled {
            Ok(task) => {
                for event in settled_events(task, opened) {
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                let _ = sender.send(Err(error)).await;
            }
        }
    });
    receiver
}

impl Face {
    /// Sends what one checkpoint of a running turn says: the task first, then a `working`
    /// update naming the node. False when the client went away.
    async fn progress(
        &self,
        sender: &mpsc::Sender<Result<StreamEvent, RpcError>>,
        opened: &mut bool,
        event: &ThreadEvent,
    ) -> bool {
        if event.status != ThreadStatus::Processing {
            // The settled task is sent once the run returns.
            return true;
        }
        let Ok(mut task) = self.task_at(&event.thread_id, event.version).await else {
            return true;
        };
        // An agent's word on its work goes on as the turn's own status message.
        if let Some(note) = &event.progress {
            task.status.message = Some(progress_message(&task, note));
        }
        if !*opened {
            *opened = true;
            return sender.send(Ok(StreamEvent::Task(task))).await.is_ok();
        }
        let update = StreamEvent::Status {
            task_id: task.id.clone().unwrap_or_default(),
            context_id: task.context_id.clone().unwrap_or_default(),
            status: task.status,
            last: false,
            metadata: Some(match &event.progress {
                Some(note) => json!({"agentId": note.agent_id, "batonTaskId": note.task_id}),
                None => json!({
                    "node": event.node.to_string(),
                    "next": event.next.as_str(),
                    "step": event.step,
                }),
            }),
        };
        sender.send(Ok(update)).await.is_ok()
    }
}

/// The stream of a turn that has already finished: the task, then its last status.
fn finished_stream(task: Task) -> EventStream {
    let events = settled_events(task, false);
    let (sender, receiver) = mpsc::channel(events.len().max(1));
    for event in events {
        // The channel holds every event: nothing waits.
        let _ = sender.try_send(Ok(event));
    }
    receiver
}

/// An agent's progress note as the turn's status message: the agent's words, said by Baton.
fn progress_message(task: &Task, note: &AgentProgress) -> Message {
    let mut message = Message::new(Role::Agent, vec![Part::Text(note.text.clone())]);
    message.task_id.clone_from(&task.id);
    message.context_id.clone_from(&task.context_id);
    message
}

/// The end of a stream: the settled task if none was sent yet, else its artifacts as updates;
/// then its status as the last update. The task goes out once per stream: clients (the Python
/// a2a-sdk 0.3's task manager among them) refuse a second one.
fn settled_events(task: Task, opened: bool) -> Vec<StreamEvent> {
    let task_id = task.id.clone().unwrap_or_default();
    let context_id = task.context_id.clone().unwrap_or_default();
    let status = task.status.clone();
    let mut events = Vec::new();
    if opened {
        events.extend(
            task.artifacts
                .into_iter()
                .map(|artifact| StreamEvent::Artifact {
                    task_id: task_id.clone(),
                    context_id: context_id.clone(),
                    artifact,
                    append: false,
                }),
        );
    } else {
        events.push(StreamEvent::Task(task));
    }
    events.push(StreamEvent::Status {
        task_id,
        context_id,
        status,
        last: true,
        metadata: None,
    });
    events
}

/// Waits until the thread's run pauses or ends, wherever it runs (looking at the store every
/// [`SUBSCRIBE_POLL`]).
async fn until_paused(engine: &Engine, thread_id: &str) -> Result<ThreadView, EngineError> {
    loop {
        let checkpoint = engine.checkpoint(thread_id).await?;
        if checkpoint.state.status != ThreadStatus::Processing {
            return Ok(ThreadView::of(&checkpoint));
        }
        tokio::time::sleep(SUBSCRIBE_POLL).await;
    }
}

/// The task of the turn a checkpoint is in.
fn current_task(checkpoint: &Checkpoint) -> Task {
    let state = &checkpoint.state;
    let id = TurnId {
        thread_id: state.thread_id.clone(),
        turn: state.turn_index(),
    };
    let (state_now, said) = match state.status {
        ThreadStatus::Processing => (TaskState::Working, None),
        ThreadStatus::PendingUserInput => (
            TaskState::InputRequired,
            Some(state.pending_questions.first().map_or_else(
                || "Baton is waiting for your answer.".to_owned(),
                |q| q.text.clone(),
            )),
        ),
        ThreadStatus::Completed => (TaskState::Completed, None),
        ThreadStatus::Cancelled => (TaskState::Canceled, None),
        ThreadStatus::Error => (
            TaskState::Failed,
            Some(
                state
                    .error
                    .clone()
                    .unwrap_or_else(|| "the turn failed".to_owned()),
            ),
        ),
    };
    let response = (state.status == ThreadStatus::Completed)
        .then(|| state.final_response.clone())
        .flatten();
    let mut task = task(&id, state_now, said, response);
    task.history = opening(&id, state.opened_by.as_deref(), &state.prompt);
    task
}

/// The message that opened the turn, as the task's history, when its caller gave it an id: a
/// caller looking for its call after a crash (`ListTasks` by context) recognises it by that id.
fn opening(id: &TurnId, opened_by: Option<&str>, prompt: &str) -> Vec<Message> {
    opened_by
        .map(|message_id| Message {
            message_id: message_id.to_owned(),
            task_id: Some(id.to_string()),
            context_id: Some(id.thread_id.clone()),
            ..Message::new(Role::User, vec![Part::Text(prompt.to_owned())])
        })
        .into_iter()
        .collect()
}

/// The task of an earlier, finished turn: completed with its response, or failed without one.
fn earlier_task(thread_id: &str, logged: &LoggedTurn) -> Task {
    let id = TurnId {
        thread_id: thread_id.to_owned(),
        turn: logged.turn,
    };
    let turn = &logged.body;
    let mut task = match &turn.final_response {
        Some(response) => task(&id, TaskState::Completed, None, Some(response.clone())),
        None => task(
            &id,
            TaskState::Failed,
            Some("the turn ended without a response".to_owned()),
            None,
        ),
    };
    task.history = opening(&id, turn.opened_by.as_deref(), &turn.prompt);
    task
}

/// A task in A2A's terms: `said` is the status message (a question, a failure), `response` the
/// final response, as the one artifact.
fn task(id: &TurnId, state: TaskState, said: Option<String>, response: Option<String>) -> Task {
    let task_id = id.to_string();
    let message = said.map(|text| Message {
        task_id: Some(task_id.clone()),
        context_id: Some(id.thread_id.clone()),
        ..Message::new(Role::Agent, vec![Part::Text(text)])
    });
    let artifacts = response
        .map(|text| Artifact {
            artifact_id: format!("{task_id}:response"),
            name: Some("response".into()),
            parts: vec![Part::Text(text)],
        })
        .into_iter()
        .collect();
    Task {
        id: Some(task_id),
        context_id: Some(id.thread_id.clone()),
        status: TaskStatus { state, message },
        artifacts,
        history: Vec::new(),
    }
}

fn invalid(message: String) -> RpcError {
    RpcError::new(RpcError::INVALID_PARAMS, message)
}

fn not_found(id: &str) -> RpcError {
    RpcError::new(RpcError::TASK_NOT_FOUND, format!("task {id} not found"))
}

/// The engine's refusal in A2A's terms; a failure of Baton itself is logged here, where it
/// becomes an answer.
fn engine_error(e: EngineError) -> RpcError {
    match e {
        EngineError::NotFound(thread) => {
            RpcError::new(RpcError::TASK_NOT_FOUND, format!("no context {thread}"))
        }
        EngineError::UnknownVersion { .. } => {
            RpcError::new(RpcError::TASK_NOT_FOUND, e.to_string())
        }
        EngineError::NotWaiting { .. }
        | EngineError::Running(_)
        | EngineError::Exists(_)
        | EngineError::Busy { .. }
        | EngineError::NoQuestion(_)
        | EngineError::UnknownQuestion { .. }
        | EngineError::Conflict(_) => RpcError::new(RpcError::UNSUPPORTED_OPERATION, e.to_string()),
        EngineError::Store(_) | EngineError::Aborted { .. } => {
            // The cause (a database's message) goes to the log only, under the request's id.
            let request_id = super::observe::current_request_id();
            tracing::error!(request_id = request_id.as_deref(), error = %e, cause = ?std::error::Error::source(&e), "A2A request failed");
            let what = match e {
                EngineError::Store(_) => "the thread store could not complete the request",
                _ => "the run stopped unexpectedly",
            };
            let message = match request_id {
                Some(id) => format!("{what}; try again (request id {id})"),
                None => format!("{what}; try again"),
            };
            RpcError::new(RpcError::INTERNAL_ERROR, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_ids_round_trip_even_when_the_thread_id_has_colons() {
        let id = TurnId {
            thread_id: "a:b".into(),
            turn: 3,
        };
        assert_eq!(id.to_string(), "a:b:3");
        assert_eq!("a:b:3".parse::<TurnId>(), Ok(id));
        for bad in ["plain", "t:x", "t:-1", ":2", "bad id:1"] {
            assert!(bad.parse::<TurnId>().is_err(), "{bad}");
        }
    }
}
