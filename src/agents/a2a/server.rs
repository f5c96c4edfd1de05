//! The server half: a JSON-RPC A2A face over a [`Handler`], so whatever Baton serves as an agent
//! (the demo agents, the eval's scripted agents, later Baton itself) only decides what a message
//! does to a task, and version negotiation, method names, shapes and errors are written once.
//!
//! Versions are negotiated like the Python a2a-sdk does: a request with `A2A-Version: 1.x` is
//! v1.0 (`SendMessage`/`GetTask`, proto-JSON shapes), one without is v0.3 (`message/send`/
//! `tasks/get`, `kind`-tagged shapes); a v1.0 method without the header is refused with `-32009`,
//! which is what makes a v1.0 client fall back.

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::wire::{
    Message, Method, RpcError, RpcRequest, StreamEvent, Task, VERSION_HEADER, Version,
    result_response,
};
use crate::card::AgentCard;

/// Which protocol versions a server accepts: older agents only know v0.3, and Baton's tests need
/// one of those to prove the client's fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// v1.0 with the header, v0.3 without (the Python a2a-sdk's behaviour).
    Both,
    /// Only v0.3: v1.0 methods are unknown (`-32601`), as with older agents.
    V03Only,
}

/// What one served agent does with the messages it is sent.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles a `SendMessage`/`message/send`: a new task, or (with `taskId`) the answer to the
    /// agent's question. Returns the task as it stands afterwards.
    async fn send(&self, message: Message) -> Result<Task, RpcError>;

    /// Handles a `GetTask`/`tasks/get`. Agents that settle every task in `send` keep none to read.
    async fn get_task(&self, _id: &str) -> Result<Task, RpcError> {
        Err(RpcError::new(RpcError::TASK_NOT_FOUND, "task not found"))
    }

    /// Handles a `CancelTask`/`tasks/cancel`: the client no longer wants the task (its user
    /// stopped the thread). Returns the task as it stands afterwards. By default no task can be
    /// cancelled (`-32002`), which is what an agent that settles every task in `send` answers.
    async fn cancel_task(&self, _id: &str) -> Result<Task, RpcError> {
        Err(RpcError::new(
            RpcError::TASK_NOT_CANCELABLE,
            "task cannot be canceled",
        ))
    }

    /// Handles a `ListTasks` (v1.0) for one context: how a client that chose the `contextId` of
    /// its message finds the task after losing the answer. Agents that keep no tasks cannot.
    async fn list_tasks(&self, _context_id: &str) -> Result<Vec<Task>, RpcError> {
        Err(RpcError::new(
            RpcError::UNSUPPORTED_OPERATION,
            "listing tasks is not supported",
        ))
    }

    /// Handles a `SendStreamingMessage`/`message/stream`: like [`Handler::send`], answered with
    /// the task's events as they happen. Agents that settle a task at once do not stream.
    async fn send_streaming(&self, _message: Message) -> Result<EventStream, RpcError> {
        Err(RpcError::new(
            RpcError::UNSUPPORTED_OPERATION,
            "streaming is not supported",
        ))
    }

    /// Handles a `SubscribeToTask`/`tasks/resubscribe`: a running task's events from now on.
    async fn subscribe(&self, _id: &str) -> Result<EventStream, RpcError> {
        Err(RpcError::new(
            RpcError::UNSUPPORTED_OPERATION,
            "streaming is not supported",
        ))
    }
}

/// The version a request is answered in: v1.0 if it asks for it and the server speaks it.
pub fn negotiate(headers: &HeaderMap, accepts: Versions) -> Version {
    let asks_v1 = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with('1'));
    if asks_v1 && accepts == Versions::Both {
        Version::V1
    } else {
        Version::V03
    }
}

/// Answers one request with `handler`, in the version the request negotiates.
pub async fn answer(
    request: &RpcRequest,
    headers: &HeaderMap,
    accepts: Versions,
    handler: &dyn Handler,
) -> Response {
    let version = negotiate(headers, accepts);
    let id_param = || {
        request
            .params
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let outcome = match version.method(&request.method) {
        Some(Method::Stream) => {
            let message = Message::read(request.params.get("message").unwrap_or(&Value::Null));
            return match handler.send_streaming(message).await {
                Ok(events) => sse(request.id.clone(), version, events),
                Err(error) => error_response(&request.id, &error),
            };
        }
        Some(Method::Subscribe) => {
            return match handler.subscribe(id_param()).await {
                Ok(events) => sse(request.id.clone(), version, events),
                Err(error) => error_response(&request.id, &error),
            };
        }
        Some(method) => call(method, version, &request.params, handler).await,
        None if accepts == Versions::Both && Version::V1.method(&request.method).is_some() => {
            Err(RpcError::new(
                RpcError::VERSION_NOT_SUPPORTED,
                "version not supported: 0.3",
            ))
        }
        None => Err(RpcError::new(
            RpcError::METHOD_NOT_FOUND,
            format!("method not found: {}", request.method),
        )),
    };
    match outcome {
        Ok(result) => axum::Json(result_response(&request.id, result)).into_response(),
        Err(error) => error_response(&request.id, &error),
    }
}

/// Runs one method on `handler`; the result in `version`'s shape.
async fn call(
    method: Method,
    version: Version,
    params: &Value,
    handler: &dyn Handler,
) -> Result<Value, RpcError> {
    let string = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default();
    match method {
        Method::Send => {
            let message = Message::read(params.get("message").unwrap_or(&Value::Null));
            let task = handler.send(message).await?;
            Ok(version.task_result(task.to_json(version)))
        }
        Method::Get => Ok(handler.get_task(string("id")).await?.to_json(version)),
        Method::Cancel => Ok(handler.cancel_task(string("id")).await?.to_json(version)),
        Method::Stream | Method::Subscribe => Err(RpcError::new(
            RpcError::METHOD_NOT_FOUND,
            "a streaming method is answered as a stream",
        )),
        Method::List => {
            let mut tasks = handler.list_tasks(string("contextId")).await?;
            // Artifacts only when asked for, as the v1.0 `ListTasks` says.
            if !params
                .get("includeArtifacts")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                tasks.iter_mut().for_each(|t| t.artifacts.clear());
            }
            let count = tasks.len();
            Ok(json!({
                "tasks": tasks.iter().map(|t| t.to_json(version)).collect::<Vec<_>>(),
                "nextPageToken": "",
                "pageSize": count,
                "totalSize": count,
            }))
        }
    }
}

/// A streamed task's events, or the error that cut it short (sent as the stream's last event).
pub type EventStream = mpsc::Receiver<Result<StreamEvent, RpcError>>;

/// The events as server-sent events, each a JSON-RPC response to the request with `id`; the
/// stream ends when the handler drops its sender.
fn sse(id: Value, version: Version, events: EventStream) -> Response {
    let stream = futures_util::stream::unfold(events, move |mut events| {
        let id = id.clone();
        async move {
            let body = match events.recv().await? {
                Ok(event) => result_response(&id, event.to_json(version)),
                Err(error) => error.to_response(&id),
            };
            let frame = Bytes::from(format!("data: {body}\n\n"));
            Some((Ok::<_, std::convert::Infallible>(frame), events))
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The JSON-RPC error response to the request with `id` (`Value::Null` when it could not be read).
pub fn error_response(id: &Value, error: &RpcError) -> Response {
    axum::Json(error.to_response(id)).into_response()
}

/// A handler takes the request as an extractor; a body that is not a JSON-RPC request gets its
/// JSON-RPC error before the handler runs.
impl<S: Send + Sync> FromRequest<S> for RpcRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        RpcRequest::parse(&body).map_err(|error| error_response(&Value::Null, &error))
    }
}

/// The answer to a request for an agent this server does not serve.
pub fn no_agent(request: &RpcRequest, name: &str) -> Response {
    let error = RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no agent {name}"));
    error_response(&request.id, &error)
}

/// The A2A card of an agent served at `url`: Baton's card with the transport fields a client
/// needs (`url`, `preferredTransport`, `protocolVersion` 0.3.0, and a v1.0 `supportedInterfaces`
/// entry when the server speaks v1.0). Baton's own `protocol` field is left out: it says how
/// Baton calls the agent, not how others should.
pub fn card_json(card: &AgentCard, url: &str, accepts: Versions) -> Value {
    let mut value = serde_json::to_value(card).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.remove("protocol");
        object.insert("url".into(), json!(url));
        object.insert("preferredTransport".into(), json!("JSONRPC"));
        object.insert("protocolVersion".into(), json!("0.3.0"));
        if accepts == Versions::Both {
            object.insert(
                "supportedInterfaces".into(),
                json!([{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]),
            );
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::a2a::wire::{Part, Role, TaskState, TaskStatus};

    /// Answers every message with a completed task echoing its text.
    struct Echo;

    #[async_trait]
    impl Handler for Echo {
        async fn send(&self, message: Message) -> Result<Task, RpcError> {
            Ok(Task {
                id: Some("t".into()),
                context_id: None,
                status: TaskStatus {
                    state: TaskState::Completed,
                    message: Some(Message::new(Role::Agent, vec![Part::Text(message.text())])),
                },
                artifacts: Vec::new(),
                history: vec![message],
            })
        }

        async fn list_tasks(&self, context_id: &str) -> Result<Vec<Task>, RpcError> {
            let mut task = self.send(Message::new(Role::User, Vec::new())).await?;
            task.context_id = Some(context_id.to_owned());
            Ok(vec![task])
        }
    }

    /// Keeps no tasks: answers lookups with the trait's defaults.
    struct Forgetful;

    #[async_trait]
    impl Handler for Forgetful {
        async fn send(&self, message: Message) -> Result<Task, RpcError> {
            Echo.send(message).await
        }
    }

    async fn call(method: &str, v1_header: bool, accepts: Versions) -> Value {
        call_on(&Echo, method, v1_header, accepts).await
    }

    async fn call_on(
        handler: &dyn Handler,
        method: &str,
        v1_header: bool,
        accepts: Versions,
    ) -> Value {
        let mut headers = HeaderMap::new();
        if v1_header {
            headers.insert(VERSION_HEADER, "1.0".parse().expect("a header value"));
        }
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method,
            "params": {"message": {"parts": [{"text": "hi"}]}, "id": "t", "contextId": "c"}});
        let request = RpcRequest::parse(body.to_string().as_bytes()).expect("a request");
        let response = answer(&request, &headers, accepts, handler).await;
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn the_header_picks_the_version_and_a_v03_server_refuses_v1_methods() {
        let v1 = call("SendMessage", true, Versions::Both).await;
        assert_eq!(v1["id"], 7);
        assert_eq!(
            v1["result"]["task"]["status"]["state"],
            "TASK_STATE_COMPLETED"
        );
        let v03 = call("message/send", false, Versions::Both).await;
        assert_eq!(v03["result"]["kind"], "task");
        assert_eq!(v03["result"]["status"]["message"]["parts"][0]["text"], "hi");
        let unversioned = call("SendMessage", false, Versions::Both).await;
        assert_eq!(
            unversioned["error"]["code"],
            RpcError::VERSION_NOT_SUPPORTED
        );
        let old = call("SendMessage", true, Versions::V03Only).await;
        assert_eq!(old["error"]["code"], RpcError::METHOD_NOT_FOUND);
        let get = call("tasks/get", false, Versions::V03Only).await;
        assert_eq!(get["error"]["code"], RpcError::TASK_NOT_FOUND);
        for (method, v1) in [("CancelTask", true), ("tasks/cancel", false)] {
            let cancel = call(method, v1, Versions::Both).await;
            assert_eq!(
                cancel["error"]["code"],
                RpcError::TASK_NOT_CANCELABLE,
                "{method}: {cancel}"
            );
        }
        let unversioned = call("CancelTask", false, Versions::Both).await;
        assert_eq!(
            unversioned["error"]["code"],
            RpcError::VERSION_NOT_SUPPORTED
        );
    }

    #[tokio::test]
    async fn list_tasks_finds_tasks_by_context_in_v1_only() {
        let listed = call("ListTasks", true, Versions::Both).await;
        let tasks = Task::read_list(&listed["result"]);
        assert_eq!(tasks.len(), 1, "{listed}");
        assert_eq!(tasks[0].context_id.as_deref(), Some("c"));
        assert_eq!(
            listed["result"]["tasks"][0]["history"][0]["role"], "ROLE_USER",
            "the history is served, so a client can find its message: {listed}"
        );
        let unversioned = call("ListTasks", false, Versions::Both).await;
        assert_eq!(
            unversioned["error"]["code"],
            RpcError::VERSION_NOT_SUPPORTED
        );
        let forgetful = call_on(&Forgetful, "ListTasks", true, Versions::Both).await;
        assert_eq!(forgetful["error"]["code"], RpcError::UNSUPPORTED_OPERATION);
    }
}
