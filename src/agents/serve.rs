//! The demo agents served over A2A (`baton demo-agents`), so Baton's A2A client can be shown and
//! tested against real HTTP agents that behave like third-party ones: each at its own path, with
//! its card at `/{name}/.well-known/agent-card.json` and JSON-RPC at `/{name}`, through the
//! shared server face (`crate::agents::a2a::server`), in v1.0 and v0.3 or (`--v03-only`) v0.3 alone.
//! Tasks live in memory. The translator answers `input-required` when the text is missing, which
//! exercises agent-side questions; a task waiting for input can be cancelled (`CancelTask`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::builtin::{BuiltinAgents, demo_cards};
use super::{AgentClient, AgentError, AgentReply, AgentRequest, FollowUp};
pub use crate::agents::a2a::Versions;
use crate::agents::a2a::server::{self, Handler, card_json};
use crate::agents::a2a::wire::{
    Artifact, Message, Part, Role, RpcError, RpcRequest, Task, TaskState, TaskStatus,
};
use crate::card::AgentCard;

/// Tasks remembered before settled ones are forgotten.
const MAX_TASKS: usize = 10_000;

#[derive(Clone)]
struct Served {
    agents: Arc<BuiltinAgents>,
    cards: Arc<HashMap<String, AgentCard>>,
    base: String,
    versions: Versions,
    tasks: Arc<Mutex<HashMap<String, StoredTask>>>,
}

/// A task between messages: a demo agent that asked keeps the original request to answer it
/// together with the user's answer.
#[derive(Clone)]
struct StoredTask {
    agent: String,
    context_id: String,
    state: TaskState,
    text: String,
    inputs: BTreeMap<String, String>,
    /// The agent's question, or why the task failed: the status message.
    question: Option<String>,
    /// The user's answer while the task waits, then the agent's output once completed.
    answer: Option<String>,
}

impl StoredTask {
    /// The task as A2A shows it: the question or failure as the status message, the output as
    /// an artifact named after the agent.
    fn to_wire(&self, task_id: &str) -> Task {
        let message = self.question.as_ref().map(|question| Message {
            task_id: Some(task_id.to_owned()),
            context_id: Some(self.context_id.clone()),
            ..Message::new(Role::Agent, vec![Part::Text(question.clone())])
        });
        let artifacts = match (&self.answer, self.state) {
            (Some(output), TaskState::Completed) => vec![Artifact {
                artifact_id: format!("{task_id}-result"),
                name: Some(self.agent.clone()),
                parts: vec![Part::Text(output.clone())],
            }],
            _ => Vec::new(),
        };
        Task {
            id: Some(task_id.to_owned()),
            context_id: Some(self.context_id.clone()),
            status: TaskStatus {
                state: self.state,
                message,
            },
            artifacts,
            history: Vec::new(),
        }
    }
}

/// A router serving every demo agent; `base` is the URL the router is reachable at
/// (`http://127.0.0.1:9000`), written into the cards.
pub fn router(
    base: &str,
    agents: Arc<BuiltinAgents>,
    versions: Versions,
) -> Result<Router, serde_json::Error> {
    let cards = demo_cards()?
        .into_iter()
        .filter_map(|card| Some((card.builtin_name()?.to_owned(), card)))
        .collect();
    let served = Served {
        agents,
        cards: Arc::new(cards),
        base: base.trim_end_matches('/').to_owned(),
        versions,
        tasks: Arc::default(),
    };
    Ok(Router::new()
        .route("/{name}/.well-known/agent-card.json", get(card))
        .route("/{name}/.well-known/agent.json", get(card))
        .route("/{name}", post(rpc))
        .with_state(served))
}

/// Serves the demo agents on `addr` until the process stops; returns the bound address first
/// through `on_bound`.
pub async fn serve(
    addr: &str,
    versions: Versions,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(
        &format!("http://{bound}"),
        Arc::new(BuiltinAgents::new(Default::default())),
        versions,
    )
    .map_err(std::io::Error::other)?;
    on_bound(bound);
    axum::serve(listener, app).await
}

async fn card(State(served): State<Served>, Path(name): Path<String>) -> Response {
    let Some(card) = served.cards.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("no agent {name}")})),
        )
            .into_response();
    };
    let url = format!("{}/{name}", served.base);
    axum::Json(card_json(card, &url, served.versions)).into_response()
}

async fn rpc(
    State(served): State<Served>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: RpcRequest,
) -> Response {
    let Some(card) = served.cards.get(&name) else {
        return server::no_agent(&request, &name);
    };
    let agent = DemoAgent {
        served: &served,
        name: &name,
        card,
    };
    server::answer(&request, &headers, served.versions, &agent).await
}

/// One demo agent behind the A2A face, for one request.
struct DemoAgent<'a> {
    served: &'a Served,
    name: &'a str,
    card: &'a AgentCard,
}

impl DemoAgent<'_> {
    fn stored(&self, task_id: &str) -> Option<StoredTask> {
        self.served
            .tasks
            .lock()
            .ok()
            .and_then(|t| t.get(task_id).cloned())
    }

    /// The task a message continues (its answer recorded), or a new one.
    fn task_for(&self, message: &Message) -> Result<(String, StoredTask), RpcError> {
        let text = message.text();
        let Some(task_id) = &message.task_id else {
            let task = StoredTask {
                agent: self.name.to_owned(),
                context_id: message
                    .context_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                state: TaskState::Working,
                text,
                inputs: message.data_fields(),
                question: None,
                answer: None,
            };
            return Ok((uuid::Uuid::now_v7().to_string(), task));
        };
        let mut task = self
            .stored(task_id)
            .ok_or_else(|| RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))?;
        if task.state != TaskState::InputRequired {
            return Err(RpcError::new(
                RpcError::TASK_NOT_WAITING,
                "task is not waiting for input",
            ));
        }
        task.answer = Some(text);
        Ok((task_id.clone(), task))
    }
}

#[async_trait]
impl Handler for DemoAgent<'_> {
    async fn send(&self, message: Message) -> Result<Task, RpcError> {
        let key = message
            .metadata_str("idempotencyKey")
            .unwrap_or("demo")
            .to_owned();
        let (task_id, mut task) = self.task_for(&message)?;
        let request = AgentRequest {
            thread_id: task.context_id.clone(),
            task_id: task_id.clone(),
            skill_id: None,
            text: task.text.clone(),
            inputs: task.inputs.clone(),
            idempotency_key: key,
            context_id: None,
            follow_up: task.answer.clone().map(|answer| FollowUp {
                task_id: Some(task_id.clone()),
                context_id: Some(task.context_id.clone()),
                answer,
            }),
            progress: super::progress::ProgressSink::none(),
        };
        match self.served.agents.call(self.card, &request).await {
            Ok(AgentReply::Completed(output)) => {
                task.state = TaskState::Completed;
                task.question = None;
                task.answer = Some(output);
            }
            Ok(AgentReply::InputRequired { question, .. }) => {
                task.state = TaskState::InputRequired;
                task.question = Some(question);
            }
            Ok(AgentReply::Failed(reason)) | Err(AgentError::BadRequest(reason)) => {
                task.state = TaskState::Failed;
                task.question = Some(reason);
            }
            Err(e) => {
                task.state = TaskState::Failed;
                task.question = Some(e.to_string());
            }
        }
        if let Ok(mut tasks) = self.served.tasks.lock() {
            // Keep memory bounded: past a limit, forget settled tasks (waiting ones stay).
            if tasks.len() >= MAX_TASKS {
                tasks.retain(|_, t| t.state == TaskState::InputRequired);
            }
            tasks.insert(task_id.clone(), task.clone());
        }
        Ok(task.to_wire(&task_id))
    }

    async fn get_task(&self, id: &str) -> Result<Task, RpcError> {
        self.stored(id)
            .map(|task| task.to_wire(id))
            .ok_or_else(|| RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))
    }

    /// A task waiting for the user's answer can be cancelled (its client's user stopped);
    /// settled ones cannot.
    async fn cancel_task(&self, id: &str) -> Result<Task, RpcError> {
        let mut tasks = self
            .served
            .tasks
            .lock()
            .map_err(|_| RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))?;
        let task = tasks
            .get_mut(id)
            .filter(|t| t.agent == self.name)
            .ok_or_else(|| RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))?;
        if !matches!(task.state, TaskState::InputRequired | TaskState::Working) {
            return Err(RpcError::new(
                RpcError::TASK_NOT_CANCELABLE,
                format!("task is {} and cannot be canceled", task.state.v03_name()),
            ));
        }
        task.state = TaskState::Canceled;
        task.question = None;
        Ok(task.to_wire(id))
    }
}
