//! The A2A JSON-RPC shapes of both protocol versions seen in the wild, in one place, so the client
//! (Baton calling agents) and the server (agents Baton serves) cannot drift apart:
//!
//! - v1.0: `SendMessage` / `GetTask`, header `A2A-Version: 1.0`, proto-JSON shapes
//!   (`role: "ROLE_USER"`, parts `{"text": …}`, states `TASK_STATE_INPUT_REQUIRED`, a send result
//!   of `{"task": …}` or `{"message": …}`).
//! - v0.3: `message/send` / `tasks/get`, `kind`-tagged shapes (`role: "user"`, parts
//!   `{"kind": "text", "text": …}`, states `input-required`, the task or message as the result).
//!
//! Writing picks one version's shapes; reading is liberal and takes either, because agents mix
//! them (a v1.0 agent answering with hyphenated states, a v0.3 agent with `TASK_STATE_*`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

/// The header a v1.0 request carries; a server without it answers in v0.3.
pub const VERSION_HEADER: &str = "A2A-Version";

/// The protocol version of one exchange: it decides method names and every shape written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// v1.0: proto-JSON shapes, `SendMessage`/`GetTask`.
    V1,
    /// v0.3: `kind`-tagged shapes, `message/send`/`tasks/get`.
    V03,
}

impl Version {
    /// The value of [`VERSION_HEADER`] for this version, if it sends one.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Version::V1 => Some("1.0"),
            Version::V03 => None,
        }
    }

    /// The method that sends a message.
    pub fn send_method(self) -> &'static str {
        match self {
            Version::V1 => "SendMessage",
            Version::V03 => "message/send",
        }
    }

    /// The method that reads a task.
    pub fn get_method(self) -> &'static str {
        match self {
            Version::V1 => "GetTask",
            Version::V03 => "tasks/get",
        }
    }

    /// The method a request names, in this version's spelling; `None` for a method of the other
    /// version or one A2A does not define.
    pub fn method(self, name: &str) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|method| method.name(self) == Some(name))
    }

    /// The method that cancels a task (the user stopped the thread that opened it).
    pub fn cancel_method(self) -> &'static str {
        match self {
            Version::V1 => "CancelTask",
            Version::V03 => "tasks/cancel",
        }
    }

    /// The method that finds tasks by context; v0.3 has none.
    pub fn list_method(self) -> Option<&'static str> {
        match self {
            Version::V1 => Some("ListTasks"),
            Version::V03 => None,
        }
    }

    /// Wraps a send result: v1.0 names what it is (`{"task": …}`), v0.3 returns it bare. A read
    /// (`GetTask`, `CancelTask`) returns the task bare in both versions.
    pub fn task_result(self, task: Value) -> Value {
        match self {
            Version::V1 => json!({ "task": task }),
            Version::V03 => task,
        }
    }

    /// Adds v0.3's `kind` tag; v1.0 has none.
    fn tag(self, value: &mut Value, kind: &str) {
        if self == Version::V03 {
            value["kind"] = json!(kind);
        }
    }
}

/// A JSON-RPC method of the A2A binding, whatever its spelling in one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `SendMessage` / `message/send`.
    Send,
    /// `GetTask` / `tasks/get`.
    Get,
    /// `ListTasks` (v1.0 only: v0.3 has no way to list tasks).
    List,
    /// `CancelTask` / `tasks/cancel`.
    Cancel,
    /// `SendStreamingMessage` / `message/stream`: a send answered with the task's events.
    Stream,
    /// `SubscribeToTask` / `tasks/resubscribe`: a running task's events from now on.
    Subscribe,
}

impl Method {
    /// Every method, for reading a request's method name.
    pub const ALL: [Method; 6] = [
        Method::Send,
        Method::Get,
        Method::List,
        Method::Cancel,
        Method::Stream,
        Method::Subscribe,
    ];

    /// The method's name in `version`, if that version has it.
    pub fn name(self, version: Version) -> Option<&'static str> {
        Some(match (self, version) {
            (Method::Send, Version::V1) => "SendMessage",
            (Method::Send, Version::V03) => "message/send",
            (Method::Get, Version::V1) => "GetTask",
            (Method::Get, Version::V03) => "tasks/get",
            (Method::List, Version::V1) => "ListTasks",
            (Method::List, Version::V03) => return None,
            (Method::Cancel, Version::V1) => "CancelTask",
            (Method::Cancel, Version::V03) => "tasks/cancel",
            (Method::Stream, Version::V1) => "SendStreamingMessage",
            (Method::Stream, Version::V03) => "message/stream",
            (Method::Subscribe, Version::V1) => "SubscribeToTask",
            (Method::Subscribe, Version::V03) => "tasks/resubscribe",
        })
    }
}

/// Where a task stands. Both versions name the same states; v1.0 spells them
/// `TASK_STATE_INPUT_REQUIRED`, v0.3 `input-required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Rejected,
    Canceled,
}

impl TaskState {
    /// Reads either version's name (and the British `cancelled`); the error carries the name
    /// normalized to v0.3 spelling, so it reads the same whichever version sent it.
    pub fn parse(name: &str) -> Result<TaskState, WireError> {
        let normalized = name
            .trim_start_matches("TASK_STATE_")
            .to_ascii_lowercase()
            .replace('_', "-");
        Ok(match normalized.as_str() {
            "submitted" => TaskState::Submitted,
            "working" => TaskState::Working,
            "input-required" => TaskState::InputRequired,
            "auth-required" => TaskState::AuthRequired,
            "completed" => TaskState::Completed,
            "failed" => TaskState::Failed,
            "rejected" => TaskState::Rejected,
            "canceled" | "cancelled" => TaskState::Canceled,
            _ => return Err(WireError::UnknownState(normalized)),
        })
    }

    /// The v0.3 name (`input-required`).
    /// Whether the task is over (nothing left to cancel or wait for).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Rejected | TaskState::Canceled
        )
    }

    pub fn v03_name(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input-required",
            TaskState::AuthRequired => "auth-required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Canceled => "canceled",
        }
    }

    /// The v1.0 name (`TASK_STATE_INPUT_REQUIRED`).
    pub fn v1_name(self) -> &'static str {
        match self {
            TaskState::Submitted => "TASK_STATE_SUBMITTED",
            TaskState::Working => "TASK_STATE_WORKING",
            TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
            TaskState::Completed => "TASK_STATE_COMPLETED",
            TaskState::Failed => "TASK_STATE_FAILED",
            TaskState::Rejected => "TASK_STATE_REJECTED",
            TaskState::Canceled => "TASK_STATE_CANCELED",
        }
    }

    /// The name in `version`'s spelling.
    pub fn name(self, version: Version) -> &'static str {
        match version {
            Version::V1 => self.v1_name(),
            Version::V03 => self.v03_name(),
        }
    }
}

/// In messages for people (failure reasons), the short v0.3 spelling.
impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.v03_name())
    }
}

/// Who wrote a message: decides, for instance, which of a task's history is the agent's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Agent,
}

impl Role {
    /// Reads `user`/`ROLE_USER` and `agent`/`ROLE_AGENT` (the short names in any case).
    pub fn parse(name: &str) -> Option<Role> {
        if name.eq_ignore_ascii_case("agent") || name == "ROLE_AGENT" {
            Some(Role::Agent)
        } else if name.eq_ignore_ascii_case("user") || name == "ROLE_USER" {
            Some(Role::User)
        } else {
            None
        }
    }

    fn name(self, version: Version) -> &'static str {
        match (self, version) {
            (Role::User, Version::V1) => "ROLE_USER",
            (Role::User, Version::V03) => "user",
            (Role::Agent, Version::V1) => "ROLE_AGENT",
            (Role::Agent, Version::V03) => "agent",
        }
    }
}

/// A piece of a message or artifact. File parts are not used by Baton and are skipped on reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// Structured content; Baton sends a skill's inputs as one object.
    Data(Value),
}

impl Part {
    /// Reads a part of either version: a `text` string, else a `data` value.
    pub fn read(value: &Value) -> Option<Part> {
        match (value.get("text").and_then(Value::as_str), value.get("data")) {
            (Some(text), _) => Some(Part::Text(text.to_owned())),
            (None, Some(data)) => Some(Part::Data(data.clone())),
            _ => None,
        }
    }

    /// The part in `version`'s shape.
    pub fn to_json(&self, version: Version) -> Value {
        let mut value = match self {
            Part::Text(text) => json!({ "text": text }),
            Part::Data(data) => json!({ "data": data }),
        };
        let kind = match self {
            Part::Text(_) => "text",
            Part::Data(_) => "data",
        };
        version.tag(&mut value, kind);
        value
    }
}

fn read_parts(value: &Value) -> Vec<Part> {
    value
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| parts.iter().filter_map(Part::read).collect())
        .unwrap_or_default()
}

fn parts_json(parts: &[Part], version: Version) -> Value {
    Value::Array(parts.iter().map(|p| p.to_json(version)).collect())
}

/// Every part as text, joined by line breaks: data parts as their JSON. What a person is shown
/// of an agent's message or artifact.
pub fn readable(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Data(data) => data.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message either way: Baton's task or answer going to an agent, an agent's question or answer
/// coming back, or a user's message arriving at a served agent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// Empty when a received message had none.
    pub message_id: String,
    /// `None` when a received message named no role Baton knows.
    pub role: Option<Role>,
    pub parts: Vec<Part>,
    /// The task this message continues (an answer to the agent's question).
    pub task_id: Option<String>,
    pub context_id: Option<String>,
    /// Free-form extras; Baton's calls carry the idempotency key and skill here.
    pub metadata: Option<Value>,
}

impl Message {
    /// A new message with a fresh id.
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Message {
            message_id: uuid::Uuid::now_v7().to_string(),
            role: Some(role),
            parts,
            ..Message::default()
        }
    }

    /// Reads a message of either version; what is missing or malformed stays empty.
    pub fn read(value: &Value) -> Message {
        let string = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Message {
            message_id: string("messageId").unwrap_or_default(),
            role: value
                .get("role")
                .and_then(Value::as_str)
                .and_then(Role::parse),
            parts: read_parts(value),
            task_id: string("taskId"),
            context_id: string("contextId"),
            metadata: value.get("metadata").cloned(),
        }
    }

    /// The message in `version`'s shape.
    pub fn to_json(&self, version: Version) -> Value {
        let mut value = json!({
            "messageId": self.message_id,
            "parts": parts_json(&self.parts, version),
        });
        if let Some(role) = self.role {
            value["role"] = json!(role.name(version));
        }
        if let Some(task_id) = &self.task_id {
            value["taskId"] = json!(task_id);
        }
        if let Some(context_id) = &self.context_id {
            value["contextId"] = json!(context_id);
        }
        if let Some(metadata) = &self.metadata {
            value["metadata"] = metadata.clone();
        }
        version.tag(&mut value, "message");
        value
    }

    /// A string field of the metadata.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key)?.as_str()
    }

    /// The text parts joined by line breaks: what a user said.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(text) => Some(text.as_str()),
                Part::Data(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The fields of the data parts that are objects, strings as they are and other JSON as
    /// text: the arguments a caller sent.
    pub fn data_fields(&self) -> BTreeMap<String, String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Data(Value::Object(fields)) => Some(fields),
                _ => None,
            })
            .flat_map(|fields| {
                fields.iter().map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
            })
            .collect()
    }
}

/// An output of a task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Artifact {
    pub artifact_id: String,
    pub name: Option<String>,
    pub parts: Vec<Part>,
}

impl Artifact {
    /// Reads an artifact of either version.
    pub fn read(value: &Value) -> Artifact {
        Artifact {
            artifact_id: value
                .get("artifactId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: value.get("name").and_then(Value::as_str).map(str::to_owned),
            parts: read_parts(value),
        }
    }

    /// The artifact in `version`'s shape.
    pub fn to_json(&self, version: Version) -> Value {
        let mut value = json!({
            "artifactId": self.artifact_id,
            "parts": parts_json(&self.parts, version),
        });
        if let Some(name) = &self.name {
            value["name"] = json!(name);
        }
        value
    }
}

/// A task's state and the agent's word on it (its question, or why it failed).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatus {
    pub state: TaskState,
    pub message: Option<Message>,
}

/// An agent-side task: what `SendMessage` usually answers and `GetTask` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// `None` when a received task had none (only an error for one still running).
    pub id: Option<String>,
    pub context_id: Option<String>,
    pub status: TaskStatus,
    pub artifacts: Vec<Artifact>,
    pub history: Vec<Message>,
}

impl Task {
    /// Reads a task of either version; only its state is required.
    pub fn read(value: &Value) -> Result<Task, WireError> {
        let state = value
            .pointer("/status/state")
            .and_then(Value::as_str)
            .ok_or(WireError::NoState)?;
        let string = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let list = |key: &str| value.get(key).and_then(Value::as_array);
        Ok(Task {
            id: string("id"),
            context_id: string("contextId"),
            status: TaskStatus {
                state: TaskState::parse(state)?,
                message: value.pointer("/status/message").map(Message::read),
            },
            artifacts: list("artifacts")
                .map(|l| l.iter().map(Artifact::read).collect())
                .unwrap_or_default(),
            history: list("history")
                .map(|l| l.iter().map(Message::read).collect())
                .unwrap_or_default(),
        })
    }

    /// The task in `version`'s shape, history included when the agent keeps one.
    pub fn to_json(&self, version: Version) -> Value {
        let mut status = json!({ "state": self.status.state.name(version) });
        if let Some(message) = &self.status.message {
            status["message"] = message.to_json(version);
        }
        let mut value = json!({ "status": status });
        if let Some(id) = &self.id {
            value["id"] = json!(id);
        }
        if let Some(context_id) = &self.context_id {
            value["contextId"] = json!(context_id);
        }
        if !self.artifacts.is_empty() {
            value["artifacts"] =
                Value::Array(self.artifacts.iter().map(|a| a.to_json(version)).collect());
        }
        if !self.history.is_empty() {
            value["history"] =
                Value::Array(self.history.iter().map(|m| m.to_json(version)).collect());
        }
        version.tag(&mut value, "task");
        value
    }

    /// Reads a `ListTasks` result (`{"tasks": […]}`); tasks that cannot be read are skipped.
    pub fn read_list(result: &Value) -> Vec<Task> {
        result
            .get("tasks")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|t| Task::read(t).ok()).collect())
            .unwrap_or_default()
    }

    /// The task as it stands after a streamed status or artifact update: a status replaces the
    /// status, an artifact is added (or, when `append`, its parts go onto the one with its id).
    /// A task event replaces the whole task; a message is not about the task and changes nothing.
    pub fn apply(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Task(task) => *self = task,
            StreamEvent::Status {
                task_id,
                context_id,
                status,
                ..
            } => {
                self.fill_ids(task_id, context_id);
                self.status = status;
            }
            StreamEvent::Artifact {
                task_id,
                context_id,
                artifact,
                append,
            } => {
                self.fill_ids(task_id, context_id);
                match self
                    .artifacts
                    .iter_mut()
                    .find(|a| append && a.artifact_id == artifact.artifact_id)
                {
                    Some(known) => known.parts.extend(artifact.parts),
                    None => self.artifacts.push(artifact),
                }
            }
            StreamEvent::Message(_) => {}
        }
    }

    /// Takes the ids an update names when the task had none yet.
    fn fill_ids(&mut self, task_id: String, context_id: String) {
        if self.id.is_none() && !task_id.is_empty() {
            self.id = Some(task_id);
        }
        if self.context_id.is_none() && !context_id.is_empty() {
            self.context_id = Some(context_id);
        }
    }

    /// Whether the task's history holds the message with this id (the message arrived).
    pub fn has_message(&self, message_id: &str) -> bool {
        self.history.iter().any(|m| m.message_id == message_id)
    }

    /// The text of the status message, or empty.
    pub fn status_text(&self) -> String {
        self.status
            .message
            .as_ref()
            .map(|m| readable(&m.parts))
            .unwrap_or_default()
    }
}

/// One event of a streamed task (`SendStreamingMessage`, `SubscribeToTask`).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The whole task as it stands (the first event, and a snapshot of the settled task).
    Task(Task),
    /// The task's state changed or moved on; `last` marks the end of the stream (v0.3's
    /// `final`). `metadata` says what happened, for people watching.
    Status {
        task_id: String,
        context_id: String,
        status: TaskStatus,
        last: bool,
        metadata: Option<Value>,
    },
    /// An output of the task, whole; or, read from an agent, a chunk of it (`append`: add the
    /// parts to the artifact with the same id).
    Artifact {
        task_id: String,
        context_id: String,
        artifact: Artifact,
        append: bool,
    },
    /// A reply without a task (an agent that keeps none): the whole answer, and the end.
    Message(Message),
}

impl StreamEvent {
    /// Reads one event's `result` in either version: v1.0 names what it is (`{"statusUpdate":
    /// …}`, `{"artifactUpdate": …}`, `{"task": …}`, `{"message": …}`), v0.3 tags it with `kind`.
    pub fn read(result: &Value) -> Result<StreamEvent, WireError> {
        let kind = result.get("kind").and_then(Value::as_str);
        let (kind, body) = match (kind, result.as_object()) {
            (Some(kind), _) => (kind, result),
            (None, Some(object)) if object.len() == 1 => {
                let (key, body) = object.iter().next().ok_or(WireError::UnknownEvent)?;
                let kind = match key.as_str() {
                    "statusUpdate" => "status-update",
                    "artifactUpdate" => "artifact-update",
                    "task" => "task",
                    "message" => "message",
                    _ => return Err(WireError::UnknownEvent),
                };
                (kind, body)
            }
            _ => return Err(WireError::UnknownEvent),
        };
        let string = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(match kind {
            "task" => StreamEvent::Task(Task::read(body)?),
            "message" => StreamEvent::Message(Message::read(body)),
            "status-update" => {
                let state = body
                    .pointer("/status/state")
                    .and_then(Value::as_str)
                    .ok_or(WireError::NoState)?;
                StreamEvent::Status {
                    task_id: string("taskId"),
                    context_id: string("contextId"),
                    status: TaskStatus {
                        state: TaskState::parse(state)?,
                        message: body.pointer("/status/message").map(Message::read),
                    },
                    last: body.get("final").and_then(Value::as_bool).unwrap_or(false),
                    metadata: body.get("metadata").cloned(),
                }
            }
            "artifact-update" => StreamEvent::Artifact {
                task_id: string("taskId"),
                context_id: string("contextId"),
                artifact: Artifact::read(body.get("artifact").unwrap_or(&Value::Null)),
                append: body.get("append").and_then(Value::as_bool).unwrap_or(false),
            },
            _ => return Err(WireError::UnknownEvent),
        })
    }

    /// The event in `version`'s shape: v1.0 names what it is (`{"statusUpdate": …}`), v0.3
    /// tags it (`"kind": "status-update"`).
    pub fn to_json(&self, version: Version) -> Value {
        let (key, kind, mut value) = match self {
            StreamEvent::Task(task) => return version.task_result(task.to_json(version)),
            StreamEvent::Status {
                task_id,
                context_id,
                status,
                last,
                metadata,
            } => {
                let mut state = json!({ "state": status.state.name(version) });
                if let Some(message) = &status.message {
                    state["message"] = message.to_json(version);
                }
                let mut value =
                    json!({"taskId": task_id, "contextId": context_id, "status": state});
                if let Some(metadata) = metadata {
                    value["metadata"] = metadata.clone();
                }
                if version == Version::V03 {
                    value["final"] = json!(last);
                }
                ("statusUpdate", "status-update", value)
            }
            StreamEvent::Artifact {
                task_id,
                context_id,
                artifact,
                append,
            } => {
                let value = json!({"taskId": task_id, "contextId": context_id,
                    "artifact": artifact.to_json(version), "append": append, "lastChunk": true});
                ("artifactUpdate", "artifact-update", value)
            }
            StreamEvent::Message(message) => {
                return match version {
                    Version::V1 => json!({ "message": message.to_json(version) }),
                    Version::V03 => message.to_json(version),
                };
            }
        };
        match version {
            Version::V1 => json!({ key: value }),
            Version::V03 => {
                version.tag(&mut value, kind);
                value
            }
        }
    }
}

/// What a send answered: a task, or (for agents that keep no tasks) a message.
#[derive(Debug, Clone, PartialEq)]
pub enum SendResult {
    Task(Task),
    Message(Message),
}

impl SendResult {
    /// Reads the `result` of a send or get in either version: `{"task": …}`/`{"message": …}`
    /// (v1.0), a `kind`-tagged object (v0.3), or an untagged task (has `status`) or message (has
    /// `parts`).
    pub fn read(result: &Value) -> Result<SendResult, WireError> {
        let kind = result.get("kind").and_then(Value::as_str);
        if let Some(task) = result.get("task") {
            return Ok(SendResult::Task(Task::read(task)?));
        }
        if let Some(message) = result.get("message")
            && kind.is_none()
        {
            return Ok(SendResult::Message(Message::read(message)));
        }
        if kind == Some("message") {
            Ok(SendResult::Message(Message::read(result)))
        } else if result.get("status").is_some() {
            Ok(SendResult::Task(Task::read(result)?))
        } else if result.get("parts").is_some() {
            Ok(SendResult::Message(Message::read(result)))
        } else {
            Err(WireError::NeitherTaskNorMessage)
        }
    }
}

/// A JSON-RPC request as it arrives: the id to answer with, the method and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    pub id: Value,
    pub method: String,
    pub params: Value,
}

impl RpcRequest {
    /// Reads a request body; an error is the JSON-RPC parse error to answer with.
    pub fn parse(body: &[u8]) -> Result<RpcRequest, RpcError> {
        let request = serde_json::from_slice::<Value>(body)
            .map_err(|_| RpcError::new(RpcError::PARSE_ERROR, "parse error"))?;
        Ok(RpcRequest {
            id: request.get("id").cloned().unwrap_or(Value::Null),
            method: request
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            params: request.get("params").cloned().unwrap_or(Value::Null),
        })
    }

    /// A request to send, with a fresh id.
    pub fn to_json(method: &str, params: Value) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::now_v7().to_string(),
            "method": method,
            "params": params,
        })
    }
}

/// A JSON-RPC error, either side: what a served agent answers a request it cannot serve, and
/// what an agent answered Baton.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    /// The body was not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Unknown method (or, on the demo agents, unknown agent); a v1.0 method here means the
    /// agent only speaks v0.3.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A2A: no such task.
    pub const TASK_NOT_FOUND: i64 = -32001;
    /// A2A: the task cannot take this message (it is not waiting for input).
    pub const TASK_NOT_WAITING: i64 = -32002;
    /// A2A: the task cannot be cancelled (it settled, or the agent does not cancel tasks); the
    /// same code as [`Self::TASK_NOT_WAITING`], named for what a cancel means by it.
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
    /// A2A: the agent does not offer this operation (listing tasks, say). Agents also use it
    /// for a message sent to a task that already ended.
    pub const UNSUPPORTED_OPERATION: i64 = -32004;
    /// JSON-RPC: the parameters are missing or malformed.
    pub const INVALID_PARAMS: i64 = -32602;
    /// JSON-RPC: the server failed (its store, a run that stopped).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A2A v1.0: the requested protocol version is not spoken here.
    pub const VERSION_NOT_SUPPORTED: i64 = -32009;

    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// Whether the agent refused the protocol version rather than the request: the caller
    /// should try again in v0.3.
    pub fn refuses_version(&self) -> bool {
        self.code == Self::VERSION_NOT_SUPPORTED || self.code == Self::METHOD_NOT_FOUND
    }

    /// Whether the agent has no such operation (rather than failing this request): a lookup
    /// answered so cannot be made at all.
    pub fn is_unsupported(&self) -> bool {
        self.code == Self::METHOD_NOT_FOUND || self.code == Self::UNSUPPORTED_OPERATION
    }

    /// Reads the `error` of a response, if it has one. The message is cut to 300 characters: it
    /// ends up in a failure reason shown to the user.
    pub fn read(response: &Value) -> Option<RpcError> {
        let error = response.get("error").filter(|e| !e.is_null())?;
        Some(RpcError {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("JSON-RPC error")
                .chars()
                .take(300)
                .collect(),
        })
    }

    /// The error response to the request with `id`.
    pub fn to_response(&self, id: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": self.code, "message": self.message}})
    }
}

/// The success response to the request with `id`.
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A result Baton cannot read as A2A.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the result is neither a task nor a message")]
    NeitherTaskNorMessage,
    #[error("a task without status.state")]
    NoState,
    #[error("unknown task state {0:?}")]
    UnknownState(String),
    #[error("a {0} task without an id")]
    RunningWithoutId(TaskState),
    #[error("a JSON-RPC response without result or error")]
    NoResult,
    #[error("a stream event that is neither a task, a message, nor a status or artifact update")]
    UnknownEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_in_both_spellings_and_write_in_each() {
        for (v1, v03, state) in [
            (
                "TASK_STATE_INPUT_REQUIRED",
                "input-required",
                TaskState::InputRequired,
            ),
            ("TASK_STATE_COMPLETED", "completed", TaskState::Completed),
            ("TASK_STATE_CANCELED", "canceled", TaskState::Canceled),
        ] {
            assert_eq!(TaskState::parse(v1), Ok(state));
            assert_eq!(TaskState::parse(v03), Ok(state));
            assert_eq!(state.name(Version::V1), v1);
            assert_eq!(state.name(Version::V03), v03);
        }
        assert_eq!(TaskState::parse("cancelled"), Ok(TaskState::Canceled));
        assert_eq!(
            TaskState::parse("TASK_STATE_UNSPECIFIED"),
            Err(WireError::UnknownState("unspecified".into()))
        );
    }

    #[test]
    fn messages_write_each_version_and_read_both() {
        let mut message = Message::new(
            Role::User,
            vec![Part::Text("hi".into()), Part::Data(json!({"n": 1}))],
        );
        message.task_id = Some("t".into());
        let v1 = message.to_json(Version::V1);
        assert_eq!(v1["role"], "ROLE_USER");
        assert_eq!(v1["parts"], json!([{"text": "hi"}, {"data": {"n": 1}}]));
        assert!(v1.get("kind").is_none());
        let v03 = message.to_json(Version::V03);
        assert_eq!(v03["kind"], "message");
        assert_eq!(v03["role"], "user");
        assert_eq!(
            v03["parts"],
            json!([{"kind": "text", "text": "hi"}, {"kind": "data", "data": {"n": 1}}])
        );
        assert_eq!(Message::read(&v1), message);
        assert_eq!(Message::read(&v03), message);
        assert_eq!(
            message.data_fields().get("n").map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn stream_events_read_in_both_versions_and_fold_into_the_task() {
        let mut task = Task::read(&json!({"id": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_SUBMITTED"}}))
        .expect("a task");
        let working = json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {
            "state": "TASK_STATE_WORKING",
            "message": {"role": "ROLE_AGENT", "parts": [{"text": "halfway"}]}}}});
        let event = StreamEvent::read(&working).expect("v1.0 status");
        assert!(matches!(&event, StreamEvent::Status { last: false, .. }));
        task.apply(event);
        assert_eq!(task.status.state, TaskState::Working);
        assert_eq!(task.status_text(), "halfway");
        for chunk in ["Sun", "ny"] {
            let artifact = json!({"kind": "artifact-update", "taskId": "t", "contextId": "c",
                "append": chunk == "ny", "artifact": {"artifactId": "a",
                "parts": [{"kind": "text", "text": chunk}]}});
            task.apply(StreamEvent::read(&artifact).expect("v0.3 artifact"));
        }
        assert_eq!(task.artifacts.len(), 1);
        assert_eq!(readable(&task.artifacts[0].parts), "Sun\nny");
        let done = json!({"kind": "status-update", "taskId": "t", "contextId": "c",
            "final": true, "status": {"state": "completed"}});
        let event = StreamEvent::read(&done).expect("v0.3 status");
        assert!(matches!(&event, StreamEvent::Status { last: true, .. }));
        task.apply(event);
        assert_eq!(task.status.state, TaskState::Completed);
        let message = json!({"message": {"role": "ROLE_AGENT", "parts": [{"text": "hi"}]}});
        assert!(matches!(
            StreamEvent::read(&message),
            Ok(StreamEvent::Message(_))
        ));
        assert_eq!(
            StreamEvent::read(&json!({"surprise": {}})),
            Err(WireError::UnknownEvent)
        );
        // What Baton writes, it reads back.
        for version in [Version::V1, Version::V03] {
            let written = StreamEvent::Status {
                task_id: "t".into(),
                context_id: "c".into(),
                status: task.status.clone(),
                last: version == Version::V03,
                metadata: None,
            };
            assert_eq!(
                StreamEvent::read(&written.to_json(version)),
                Ok(written.clone())
            );
        }
    }
}
