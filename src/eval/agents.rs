//! The scripted stand-ins of the eval's extra agents: one axum server on `127.0.0.1:0` speaking
//! the wire formats Baton calls (A2A JSON-RPC v1.0 `SendMessage` and v0.3 `message/send` at
//! `/a2a/NAME` through the shared server face `crate::agents::a2a::server`, REST GET query / POST JSON
//! body at `/rest/NAME/ENDPOINT`). It records every call
//! (agent, skill, the arguments that arrived, the text), so the eval checks what agents really
//! received over the network rather than what the planner meant to send.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};

use super::EvalError;
use super::corpus::{EvalAgent, Script};
use crate::agents::a2a::server::{self, Handler, Versions};
use crate::agents::a2a::wire::{
    Artifact, Message, Part, Role, RpcError, RpcRequest, Task, TaskState, TaskStatus,
};
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
/// Dropping it stops the server, so an eval leaves no listener behind.
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

async fn a2a(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: RpcRequest,
) -> Response {
    let agent = shared
        .routes
        .get(&format!("/a2a/{name}"))
        .and_then(|(agent_id, endpoint)| match endpoint {
            None => shared.agents.get(agent_id).map(|agent| (agent_id, agent)),
            Some(_) => None,
        });
    let Some((agent_id, agent)) = agent else {
        return server::no_agent(&request, &name);
    };
    let scripted = ScriptedA2a {
        shared: &shared,
        agent_id,
        agent,
    };
    server::answer(&request, &headers, Versions::Both, &scripted).await
}

/// One scripted agent behind the A2A face, for one request: it asks its scripted question while
/// the input is missing, else answers from its template, and records the call either way.
struct ScriptedA2a<'a> {
    shared: &'a Shared,
    agent_id: &'a str,
    agent: &'a Agent,
}

#[async_trait]
impl Handler for ScriptedA2a<'_> {
    async fn send(&self, message: Message) -> Result<Task, RpcError> {
        let (shared, agent_id, agent) = (self.shared, self.agent_id, self.agent);
        let text = message.text();
        let mut arguments = message.data_fields();
        let (thread_id, turn) =
            from_key(message.metadata_str("idempotencyKey").unwrap_or_default());
        let skill_id = message.metadata_str("skillId").map(str::to_owned);
        let skill_name = skill_id
            .as_deref()
            .and_then(|s| agent.card.skill(s))
            .or_else(|| agent.card.skills.first())
            .map_or("its job", |s| s.name.as_str())
            .to_owned();
        // An answer to the agent's own question continues the task it asked on.
        let given_task = message.task_id.as_deref();
        let mut context_id = message
            .context_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let task_id = given_task.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
        let mut recorded_args = arguments.clone();
        if let Some(task) = given_task {
            let pending = shared.pending.lock().ok().and_then(|mut p| p.remove(task));
            let Some(pending) = pending.filter(|p| p.agent_id == agent_id) else {
                return Err(RpcError::new(
                    RpcError::TASK_NOT_FOUND,
                    "task not found or not waiting for input",
                ));
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
        let (state, reply) = match missing {
            Some(ask) => {
                if let Ok(mut pending) = shared.pending.lock() {
                    pending.insert(
                        task_id.clone(),
                        Pending {
                            agent_id: agent_id.to_owned(),
                            context_id: context_id.clone(),
                            arguments: arguments.clone(),
                            asked_input: ask.input.clone(),
                        },
                    );
                }
                (TaskState::InputRequired, ask.question.clone())
            }
            None => {
                let template = agent.script.reply.as_deref().unwrap_or(DEFAULT_REPLY);
                (
                    TaskState::Completed,
                    render(template, &agent.card.name, &skill_name, &arguments),
                )
            }
        };
        shared.record(Call {
            agent_id: agent_id.to_owned(),
            thread_id,
            turn,
            skill: skill_id,
            arguments: recorded_args,
            text,
            reply: reply.clone(),
            asked: state == TaskState::InputRequired,
            follow_up: given_task.is_some(),
        });
        Ok(settled_task(task_id, context_id, state, reply))
    }
}

/// A settled task: the reply as an artifact when completed, as the status message when asking.
fn settled_task(task_id: String, context_id: String, state: TaskState, reply: String) -> Task {
    let part = Part::Text(reply);
    let (message, artifacts) = if state == TaskState::Completed {
        let artifact = Artifact {
            artifact_id: format!("{task_id}-result"),
            name: None,
            parts: vec![part],
        };
        (None, vec![artifact])
    } else {
        let message = Message {
            task_id: Some(task_id.clone()),
            context_id: Some(context_id.clone()),
            ..Message::new(Role::Agent, vec![part])
        };
        (Some(message), Vec::new())
    };
    Task {
        id: Some(task_id),
        context_id: Some(context_id),
        status: TaskStatus { state, message },
        artifacts,
        history: Vec::new(),
    }
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
