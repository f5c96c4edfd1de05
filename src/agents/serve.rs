//! The demo agents served over A2A (`baton demo-agents`): each at its own path, with its card at
//! `/{name}/.well-known/agent-card.json` and JSON-RPC at `/{name}`, speaking v1.0 (with the
//! `A2A-Version: 1.0` header) and v0.3 (without it), like the Python a2a-sdk. Tasks live in
//! memory. The translator answers `input-required` when the text is missing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::builtin::{BuiltinAgents, demo_cards};
use super::{AgentClient, AgentReply, AgentRequest, FollowUp};
use crate::card::AgentCard;

/// Tasks remembered before settled ones are forgotten.
const MAX_TASKS: usize = 10_000;

/// Which protocol versions the served agents accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// v1.0 with the header, v0.3 without (the Python a2a-sdk's behaviour).
    Both,
    /// Only v0.3: v1.0 methods are unknown (`-32601`), as with older agents.
    V03Only,
}

#[derive(Clone)]
struct Served {
    agents: Arc<BuiltinAgents>,
    cards: Arc<HashMap<String, AgentCard>>,
    base: String,
    versions: Versions,
    tasks: Arc<Mutex<HashMap<String, StoredTask>>>,
}

#[derive(Clone)]
struct StoredTask {
    agent: String,
    context_id: String,
    state: &'static str,
    text: String,
    inputs: std::collections::BTreeMap<String, String>,
    question: Option<String>,
    answer: Option<String>,
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
    let mut value = serde_json::to_value(card).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.remove("protocol");
        object.insert("url".into(), json!(url));
        object.insert("preferredTransport".into(), json!("JSONRPC"));
        object.insert("protocolVersion".into(), json!("0.3.0"));
        if served.versions == Versions::Both {
            object.insert(
                "supportedInterfaces".into(),
                json!([{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]),
            );
        }
    }
    axum::Json(value).into_response()
}

/// What a user message says: its text parts joined by line breaks, and its data parts as
/// name → value (strings as they are, other JSON as text). Shapes of v1.0 and v0.3 alike.
pub fn message_content(message: &Value) -> (String, std::collections::BTreeMap<String, String>) {
    let parts = message
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    let data = parts
        .iter()
        .filter_map(|p| p.get("data").and_then(Value::as_object))
        .flat_map(|d| {
            d.iter().map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
        })
        .collect();
    (text, data)
}

/// A JSON-RPC error response, as every A2A server Baton runs (demo agents, eval stand-ins)
/// answers a request it cannot serve.
pub fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
        .into_response()
}

async fn rpc(
    State(served): State<Served>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(&Value::Null, -32700, "parse error");
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let v1_header = headers
        .get("A2A-Version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with('1'));
    let v1 = v1_header && served.versions == Versions::Both;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let Some(card) = served.cards.get(&name).cloned() else {
        return rpc_error(&id, -32601, &format!("no agent {name}"));
    };
    match (method, v1) {
        ("SendMessage", true) | ("message/send", false) => {
            send(&served, &name, &card, &params, v1, &id).await
        }
        ("GetTask", true) | ("tasks/get", false) => {
            let task_id = params.get("id").and_then(Value::as_str).unwrap_or_default();
            let task = served
                .tasks
                .lock()
                .ok()
                .and_then(|t| t.get(task_id).cloned());
            match task {
                Some(task) => result(&id, task_json(task_id, &task, v1), v1),
                None => rpc_error(&id, -32001, "task not found"),
            }
        }
        ("SendMessage" | "GetTask", false) if served.versions == Versions::Both => {
            rpc_error(&id, -32009, "version not supported: 0.3")
        }
        _ => rpc_error(&id, -32601, &format!("method not found: {method}")),
    }
}

async fn send(
    served: &Served,
    name: &str,
    card: &AgentCard,
    params: &Value,
    v1: bool,
    id: &Value,
) -> Response {
    let message = params.get("message").cloned().unwrap_or(Value::Null);
    let (text, inputs) = message_content(&message);
    let key = message
        .pointer("/metadata/idempotencyKey")
        .and_then(Value::as_str)
        .unwrap_or("demo")
        .to_owned();
    let given_task = message
        .get("taskId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (task_id, mut task) = match given_task {
        Some(task_id) => {
            let Some(task) = served
                .tasks
                .lock()
                .ok()
                .and_then(|t| t.get(&task_id).cloned())
            else {
                return rpc_error(id, -32001, "task not found");
            };
            if task.state != "input-required" {
                return rpc_error(id, -32002, "task is not waiting for input");
            }
            let mut task = task;
            task.answer = Some(text.clone());
            (task_id, task)
        }
        None => (
            uuid::Uuid::now_v7().to_string(),
            StoredTask {
                agent: name.to_owned(),
                context_id: message
                    .get("contextId")
                    .and_then(Value::as_str)
                    .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned),
                state: "working",
                text: text.clone(),
                inputs,
                question: None,
                answer: None,
            },
        ),
    };
    let request = AgentRequest {
        thread_id: task.context_id.clone(),
        task_id: task_id.clone(),
        skill_id: None,
        text: task.text.clone(),
        inputs: task.inputs.clone(),
        idempotency_key: key,
        follow_up: task.answer.clone().map(|answer| FollowUp {
            task_id: Some(task_id.clone()),
            context_id: Some(task.context_id.clone()),
            answer,
        }),
    };
    match served.agents.call(card, &request).await {
        Ok(AgentReply::Completed(output)) => {
            task.state = "completed";
            task.question = None;
            task.answer = Some(output);
        }
        Ok(AgentReply::InputRequired { question, .. }) => {
            task.state = "input-required";
            task.question = Some(question);
        }
        Ok(AgentReply::Failed(reason)) | Err(super::AgentError::BadRequest(reason)) => {
            task.state = "failed";
            task.question = Some(reason);
        }
        Err(e) => {
            task.state = "failed";
            task.question = Some(e.to_string());
        }
    }
    if let Ok(mut tasks) = served.tasks.lock() {
        // Keep memory bounded: past a limit, forget settled tasks (waiting ones stay).
        if tasks.len() >= MAX_TASKS {
            tasks.retain(|_, t| t.state == "input-required");
        }
        tasks.insert(task_id.clone(), task.clone());
    }
    result(id, task_json(&task_id, &task, v1), v1)
}

fn result(id: &Value, task: Value, v1: bool) -> Response {
    let result = if v1 { json!({ "task": task }) } else { task };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// A task in v1.0 or v0.3 shapes.
fn task_json(task_id: &str, task: &StoredTask, v1: bool) -> Value {
    let state = if v1 {
        format!(
            "TASK_STATE_{}",
            task.state.to_ascii_uppercase().replace('-', "_")
        )
    } else {
        task.state.to_owned()
    };
    let part = |text: &str| {
        if v1 {
            json!({ "text": text })
        } else {
            json!({ "kind": "text", "text": text })
        }
    };
    let role = if v1 { "ROLE_AGENT" } else { "agent" };
    let mut status = json!({ "state": state });
    if let Some(question) = &task.question {
        status["message"] = json!({
            "messageId": uuid::Uuid::now_v7().to_string(), "role": role, "parts": [part(question)],
            "taskId": task_id, "contextId": task.context_id,
        });
        if !v1 {
            status["message"]["kind"] = json!("message");
        }
    }
    let mut value = json!({ "id": task_id, "contextId": task.context_id, "status": status });
    if task.state == "completed"
        && let Some(output) = &task.answer
    {
        value["artifacts"] = json!([{ "artifactId": format!("{task_id}-result"), "name": task.agent, "parts": [part(output)] }]);
    }
    if !v1 {
        value["kind"] = json!("task");
    }
    value
}
