//! The scripted stand-ins of the eval's extra agents: one axum server on `127.0.0.1:0` speaking
//! the wire formats Baton calls (A2A JSON-RPC v1.0 `SendMessage` and v0.3 `message/send` at
//! `/a2a/NAME`, REST GET query / POST JSON body at `/rest/NAME/ENDPOINT`). It records every call
//! (agent, skill, the arguments that arrived, the text), so the eval checks what agents really
//! received over the network rather than what the planner meant to send.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

use super::EvalError;
use super::corpus::{EvalAgent, Script};
use crate::agents::serve::{message_content, rpc_error};
use crate::card::{AgentCard, Protocol};

/// One call an agent received.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The card's directory id, so a call is attributed to the agent a case names.
    pub agent_id: String,
    /// Baton's thread, read from the idempotency key `thread/turn/task/attempt`.
    pub thread_id: Option<String>,
    /// The turn of the thread (1 for the first prompt).
    pub turn: Option<usize>,
    /// The A2A skill id, or the REST endpoint's path segment.
    pub skill: Option<String>,
    /// The arguments as they arrived: A2A `data` part, REST query or body. For an answer to the
    /// agent's own question, the answer under the input it asked for.
    pub arguments: BTreeMap<String, String>,
    /// The A2A text part (the task in the user's words, plus upstream outputs), or empty.
    pub text: String,
    /// What the agent answered (its text, or the REST body as JSON).
    pub reply: String,
    /// Whether the agent asked the user instead of answering.
    pub asked: bool,
    /// Whether this call carried the user's answer to the agent's own question.
    pub follow_up: bool,
}

struct Agent {
    card: AgentCard,
    script: Script,
}

struct Pending {
    agent_id: String,
    context_id: String,
    arguments: BTreeMap<String, String>,
    asked_input: String,
}

#[derive(Clone)]
struct Shared {
    /// By URL path (`/a2a/NAME` or `/rest/NAME/ENDPOINT`).
    routes: Arc<HashMap<String, (String, Option<usize>)>>,
    agents: Arc<HashMap<String, Agent>>,
    calls: Arc<Mutex<Vec<Call>>>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

/// The corpus's stand-in agents on one loopback port, shared by every case of a run: each call
/// is recorded with the thread and turn it came from, so concurrent cases read only their own.
pub struct ScriptedAgents {
    base: String,
    cards: Vec<AgentCard>,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl ScriptedAgents {
    /// Binds `127.0.0.1:0` and serves every agent of the corpus there.
    pub async fn start(agents: &[EvalAgent]) -> Result<Self, EvalError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(EvalError::Agents)?;
        let addr: SocketAddr = listener.local_addr().map_err(EvalError::Agents)?;
        let base = format!("http://{addr}");
        let mut routes = HashMap::new();
        let mut by_id = HashMap::new();
        let mut cards = Vec::new();
        for agent in agents {
            let card = agent
                .card(&base)
                .map_err(|e| EvalError::Card(agent.id.clone(), e))?;
            let path = |url: &str| url.strip_prefix(&base).unwrap_or(url).to_owned();
            if card.protocol == Protocol::Rest {
                for (i, endpoint) in card.endpoints.iter().enumerate() {
                    routes.insert(path(&endpoint.endpoint), (card.id.clone(), Some(i)));
                }
            } else {
                routes.insert(path(&card.url), (card.id.clone(), None));
            }
            cards.push(card.clone());
            by_id.insert(
                card.id.clone(),
                Agent {
                    card,
                    script: agent.script.clone(),
                },
            );
        }
        let shared = Shared {
            routes: Arc::new(routes),
            agents: Arc::new(by_id),
            calls: Arc::default(),
            pending: Arc::default(),
        };
        let router = Router::new()
            .route("/a2a/{name}", post(a2a))
            .route("/rest/{name}/{*endpoint}", any(rest))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "scripted agents stopped");
            }
        });
        Ok(ScriptedAgents {
            base,
            cards,
            shared,
            server,
        })
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The cards, with their URLs pointing at this server.
    pub fn cards(&self) -> &[AgentCard] {
        &self.cards
    }

    /// Every call made for turn `turn` of `thread_id`, in arrival order.
    pub fn calls(&self, thread_id: &str, turn: usize) -> Vec<Call> {
        self.shared
            .calls
            .lock()
            .map(|calls| {
                calls
                    .iter()
                    .filter(|c| c.thread_id.as_deref() == Some(thread_id) && c.turn == Some(turn))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for ScriptedAgents {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn record(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

/// `thread/turn/task/attempt` → (thread, turn).
fn from_key(key: &str) -> (Option<String>, Option<usize>) {
    let mut parts = key.split('/');
    let thread = parts.next().filter(|t| !t.is_empty()).map(str::to_owned);
    let turn = parts.next().and_then(|t| t.parse().ok());
    (thread, turn)
}

/// Fills `{agent}`, `{skill}`, `{args}` and `{INPUT}` in a reply template.
fn render(template: &str, agent: &str, skill: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if after[..end]
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_') =>
            {
                let name = &after[..end];
                match name {
                    "agent" => out.push_str(agent),
                    "skill" => out.push_str(skill),
                    "args" => out.push_str(&args_text(args)),
                    _ => out.push_str(args.get(name).map_or("unknown", String::as_str)),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn args_text(args: &BTreeMap<String, String>) -> String {
    if args.is_empty() {
        return "no arguments".to_owned();
    }
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_json(
    template: &Value,
    agent: &str,
    skill: &str,
    args: &BTreeMap<String, String>,
) -> Value {
    match template {
        Value::String(s) => Value::String(render(s, agent, skill, args)),
        Value::Array(list) => Value::Array(
            list.iter()
                .map(|v| render_json(v, agent, skill, args))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_json(v, agent, skill, args)))
                .collect(),
        ),
        other => other.clone(),
    }
}

const DEFAULT_REPLY: &str = "{agent} did {skill} with {args}";

fn scalar(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

async fn rest(
    State(shared): State<Shared>,
    Path((name, endpoint)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some((agent_id, Some(index))) = shared
        .routes
        .get(&format!("/rest/{name}/{endpoint}"))
        .cloned()
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such endpoint"})),
        )
            .into_response();
    };
    let Some(agent) = shared.agents.get(&agent_id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such agent"})),
        )
            .into_response();
    };
    let arguments: BTreeMap<String, String> = if method == Method::POST {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "expected a JSON object body"})),
                )
                    .into_response();
            }
        }
    } else {
        query
    };
    let skill = agent
        .card
        .endpoints
        .get(index)
        .map_or(endpoint.as_str(), |e| e.description.as_str())
        .to_owned();
    let template = agent.script.reply.as_deref().unwrap_or(DEFAULT_REPLY);
    let text = render(template, &agent.card.name, &skill, &arguments);
    let answer = match &agent.script.response {
        Some(response) => render_json(response, &agent.card.name, &skill, &arguments),
        None => json!({ "result": text }),
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (thread_id, turn) = from_key(key);
    shared.record(Call {
        agent_id,
        thread_id,
        turn,
        skill: Some(endpoint),
        arguments,
        text: String::new(),
        reply: answer.to_string(),
        asked: false,
        follow_up: false,
    });
    axum::Json(answer).into_response()
}

async fn a2a(State(shared): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(&Value::Null, -32700, "parse error");
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let v1 = match request.get("method").and_then(Value::as_str) {
        Some("SendMessage") => true,
        Some("message/send") => false,
        Some(other) => return rpc_error(&id, -32601, &format!("method not found: {other}")),
        None => return rpc_error(&id, -32600, "no method"),
    };
    let Some((agent_id, None)) = shared.routes.get(&format!("/a2a/{name}")).cloned() else {
        return rpc_error(&id, -32601, &format!("no agent {name}"));
    };
    let Some(agent) = shared.agents.get(&agent_id) else {
        return rpc_error(&id, -32601, &format!("no agent {name}"));
    };
    let message = request
        .pointer("/params/message")
        .cloned()
        .unwrap_or(Value::Null);
    let (text, mut arguments) = message_content(&message);
    let key = message
        .pointer("/metadata/idempotencyKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (thread_id, turn) = from_key(key);
    let skill_id = message
        .pointer("/metadata/skillId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let skill_name = skill_id
        .as_deref()
        .and_then(|s| agent.card.skill(s))
        .or_else(|| agent.card.skills.first())
        .map_or("its job", |s| s.name.as_str())
        .to_owned();
    // An answer to the agent's own question continues the task it asked on.
    let given_task = message.get("taskId").and_then(Value::as_str);
    let mut context_id = message
        .get("contextId")
        .and_then(Value::as_str)
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let task_id = given_task.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let mut recorded_args = arguments.clone();
    if let Some(task) = given_task {
        let pending = shared.pending.lock().ok().and_then(|mut p| p.remove(task));
        let Some(pending) = pending.filter(|p| p.agent_id == agent_id) else {
            return rpc_error(&id, -32001, "task not found or not waiting for input");
        };
        context_id = pending.context_id;
        arguments = pending.arguments;
        arguments.insert(pending.asked_input.clone(), text.trim().to_owned());
        recorded_args = BTreeMap::from([(pending.asked_input, text.trim().to_owned())]);
    }
    let missing = agent.script.asks.as_ref().filter(|ask| {
        arguments
            .get(&ask.input)
            .is_none_or(|v| v.trim().is_empty())
    });
    let (state, reply, asked) = match missing {
        Some(ask) => {
            if let Ok(mut pending) = shared.pending.lock() {
                pending.insert(
                    task_id.clone(),
                    Pending {
                        agent_id: agent_id.clone(),
                        context_id: context_id.clone(),
                        arguments: arguments.clone(),
                        asked_input: ask.input.clone(),
                    },
                );
            }
            ("input-required", ask.question.clone(), true)
        }
        None => {
            let template = agent.script.reply.as_deref().unwrap_or(DEFAULT_REPLY);
            (
                "completed",
                render(template, &agent.card.name, &skill_name, &arguments),
                false,
            )
        }
    };
    shared.record(Call {
        agent_id,
        thread_id,
        turn,
        skill: skill_id,
        arguments: recorded_args,
        text,
        reply: reply.clone(),
        asked,
        follow_up: given_task.is_some(),
    });
    let task = task_json(&task_id, &context_id, state, &reply, v1);
    let result = if v1 { json!({ "task": task }) } else { task };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// A settled task in v1.0 or v0.3 shapes: the reply as an artifact when completed, as the status
/// message when asking.
fn task_json(task_id: &str, context_id: &str, state: &str, reply: &str, v1: bool) -> Value {
    let part = if v1 {
        json!({ "text": reply })
    } else {
        json!({ "kind": "text", "text": reply })
    };
    let wire_state = if v1 {
        format!(
            "TASK_STATE_{}",
            state.to_ascii_uppercase().replace('-', "_")
        )
    } else {
        state.to_owned()
    };
    let mut status = json!({ "state": wire_state });
    let mut task = json!({ "id": task_id, "contextId": context_id });
    if state == "completed" {
        task["artifacts"] = json!([{ "artifactId": format!("{task_id}-result"), "parts": [part] }]);
    } else {
        let mut message = json!({
            "messageId": uuid::Uuid::now_v7().to_string(),
            "role": if v1 { "ROLE_AGENT" } else { "agent" },
            "parts": [part], "taskId": task_id, "contextId": context_id,
        });
        if !v1 {
            message["kind"] = json!("message");
        }
        status["message"] = message;
    }
    task["status"] = status;
    if !v1 {
        task["kind"] = json!("task");
    }
    task
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_arguments_and_leave_other_braces() {
        let args = BTreeMap::from([("symbol".to_owned(), "AAPL".to_owned())]);
        assert_eq!(
            render(
                "{symbol} at 1.5 {currency} by {agent}; {x y}",
                "Quotes",
                "quote",
                &args
            ),
            "AAPL at 1.5 unknown by Quotes; {x y}"
        );
        assert_eq!(
            render(DEFAULT_REPLY, "Quotes", "Get quote", &args),
            "Quotes did Get quote with symbol=AAPL"
        );
        assert_eq!(from_key("t-1/2/t1/1"), (Some("t-1".into()), Some(2)));
        assert_eq!(from_key(""), (None, None));
    }
}
