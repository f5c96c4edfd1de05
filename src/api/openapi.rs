//! The API described as OpenAPI 3.1, generated from the handlers' `#[utoipa::path]` annotations
//! and the types' `ToSchema` derives (so the document cannot drift from the code unnoticed), and
//! served at `GET /openapi.json`; `GET /docs` is a small page of our own that renders it, offline.
//!
//! Every route of `api::router` is here except `GET /ws/chat` (a WebSocket upgrade has no
//! OpenAPI description; its frames are in the README) and the web console's page and assets
//! (`GET /`, `GET /console/{asset}`: HTML and scripts for a browser, not operations).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToSchema};

use super::error::ErrorBody;
use crate::card::AgentCard;

/// The generated part of the document; [`document`] completes it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton",
        description = "Interactive multi-agent orchestration: a request is split into tasks, \
                       agents are found for them and called, and the user is asked when \
                       something only they know is missing. Every error body is `ErrorBody`; \
                       every response carries an `x-request-id` (the request's own, if it sent \
                       one), which the server's logs name. \
                       The WebSocket `GET /ws/chat` is not described here (see the README).",
    ),
    paths(
        super::chat::start,
        super::chat::answer,
        super::chat::status,
        super::threads::delete_chat,
        super::threads::list,
        super::threads::delete,
        super::fork::fork,
        super::webhooks::webhooks,
        super::threads::checkpoint,
        super::threads::history,
        super::turns::turns,
        super::threads::checkpoint_at,
        super::cancel::cancel,
        super::events::events,
        super::agents::list,
        super::agents::register,
        super::agents::discover,
        super::agents::search,
        super::agents::get,
        super::agents::remove,
        super::agents::rate,
        super::auth::token,
        super::health::health,
        super::metrics::metrics,
        super::a2a::card,
        super::a2a::rpc,
        openapi_json,
        docs,
    ),
    components(schemas(ErrorBody, A2aCard, JsonRpcRequest, JsonRpcResponse, super::auth::TokenResponse)),
    tags(
        (name = "conversation", description = "The original system's chat API: start, answer, status"),
        (name = "threads", description = "Threads: listing, deleting, forking, cancelling; their checkpoints, history, events and webhook deliveries"),
        (name = "agents", description = "The agent directory"),
        (name = "a2a", description = "Baton as an A2A agent: its card and its JSON-RPC endpoint"),
        (name = "health", description = "Liveness, what clients hold open, and metrics"),
        (name = "auth", description = "Signing in: short-lived tokens for browsers' streams"),
        (name = "docs", description = "This document and its page"),
    )
)]
struct ApiDoc;

/// The whole document: the generated part, plus `/health`, the original system's path for
/// `/api/health` (one handler, so one annotation; the alias gets its own operation id).
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    if let Some(mut item) = doc.paths.paths.get("/api/health").cloned() {
        if let Some(operation) = item.get.as_mut() {
            operation.operation_id = Some("health_alias".to_owned());
            operation.summary = Some("`/api/health` under the original system's path.".to_owned());
        }
        doc.paths.paths.insert("/health".to_owned(), item);
    }
    declare_bearer(&mut doc);
    doc
}

/// The operations anyone may call, keys or not (`/metrics` has its own optional token).
const OPEN_PATHS: [&str; 6] = [
    "/api/health",
    "/health",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/.well-known/agent-card.json",
];

/// Declares `Authorization: Bearer KEY` (a key from `--api-keys-file`, or a token from `POST
/// /api/auth/token`) for every operation but the open ones. A server without a keys file asks
/// for nothing; the document is the same either way.
fn declare_bearer(doc: &mut Document) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "An API key (`baton keys add`), or a token from `POST /api/auth/token`; required when \
             the server runs with `--api-keys-file`. `/ws/chat`, `/api/threads/{id}/events` and \
             `/a2a` also take the token as `?access_token=`.",
        ))
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    doc.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = OPEN_PATHS.contains(&path.as_str());
        let operations = [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()];
        for operation in operations.into_iter().flatten() {
            if open {
                operation.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            let responses = &mut operation.responses.responses;
            for (status, description) in [
                (
                    "401",
                    "No API key, or one the server does not accept (with `--api-keys-file`); with `WWW-Authenticate: Bearer`",
                ),
                (
                    "429",
                    "The key is over one of its limits (`--key-*`); `Retry-After` says when to try again",
                ),
            ] {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error_response(description));
            }
        }
    }
    // Changing the directory needs an admin key.
    for (path, method) in [
        ("/api/agents", "post"),
        ("/api/agents/discover", "post"),
        ("/api/agents/{id}/rate", "post"),
        ("/api/agents/{id}", "delete"),
    ] {
        let operation = doc.paths.paths.get_mut(path).and_then(|item| match method {
            "post" => item.post.as_mut(),
            _ => item.delete.as_mut(),
        });
        if let Some(operation) = operation {
            operation.responses.responses.insert(
                "403".to_owned(),
                error_response("A user key: changing the agent directory needs an admin key"),
            );
        }
    }
}

/// A response with an `ErrorBody`, described as `description`.
fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .into()
}

/// The document as JSON, as served. utoipa 5 writes a link's `operationId`, `operationRef` and
/// `requestBody` in snake_case, which OpenAPI readers (schemathesis's stateful tests among them)
/// do not understand; they are renamed here.
pub fn document_json() -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(document())?;
    camel_case_links(&mut value);
    Ok(value)
}

fn camel_case_links(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(links)) = object.get_mut("links") {
                for link in links.values_mut().filter_map(Value::as_object_mut) {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(field) = link.remove(from) {
                            link.insert(to.to_owned(), field);
                        }
                    }
                }
            }
            object.values_mut().for_each(camel_case_links);
        }
        Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// The OpenAPI document, for clients, code generators and fuzzers.
///
/// Built from the handlers' annotations; it names every route but the WebSocket.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_json",
    tag = "docs",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 500, description = "The document could not be written", body = ErrorBody),
    )
)]
pub async fn openapi_json() -> Response {
    match document_json() {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document could not be written");
            let body = ErrorBody::new(format!("the OpenAPI document could not be written: {e}"));
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// The page that renders the document: no CDN, nothing fetched but `/openapi.json`.
///
/// Embedded in the binary, so it works wherever the server runs, offline included.
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs",
    tag = "docs",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String))
)]
pub async fn docs() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(include_str!("docs.html")),
    )
}

/// Baton's own A2A card as `/.well-known/agent-card.json` serves it: its directory card (without
/// `protocol`, which says how Baton calls an agent, not how to call Baton) plus the transport
/// fields A2A clients read. Described here, never built: `a2a::card` writes the JSON.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only; the fields are read by the derive
pub struct A2aCard {
    #[serde(flatten)]
    card: AgentCard,
    /// Always `JSONRPC`: the transport of `url`.
    #[serde(rename = "preferredTransport")]
    #[schema(example = "JSONRPC")]
    preferred_transport: String,
    /// The v1.0 binding of the same endpoint (`url` speaks v0.3 by default).
    #[serde(rename = "supportedInterfaces")]
    supported_interfaces: Vec<A2aInterface>,
}

/// One interface of Baton's A2A card.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only; the fields are read by the derive
pub struct A2aInterface {
    url: String,
    /// `JSONRPC`.
    #[serde(rename = "protocolBinding")]
    protocol_binding: String,
    /// `1.0`.
    #[serde(rename = "protocolVersion")]
    protocol_version: String,
}

/// A JSON-RPC 2.0 request to `POST /a2a`. Methods: v0.3 `message/send`, `message/stream`,
/// `tasks/get`, `tasks/cancel`, `tasks/resubscribe`; with the header `A2A-Version: 1.0`,
/// `SendMessage`, `SendStreamingMessage`, `GetTask`, `CancelTask`, `ListTasks`,
/// `SubscribeToTask`. A thread is a `contextId`, a turn of it a task. Described here, never
/// built: the endpoint reads any JSON and answers what it cannot serve with a JSON-RPC error.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params":
    {"message": {"kind": "message", "role": "user", "messageId": "m1",
                 "parts": [{"kind": "text", "text": "What is the weather in Oslo"}]}}}))]
#[allow(dead_code)] // a schema only; the fields are read by the derive
pub struct JsonRpcRequest {
    /// `2.0`.
    jsonrpc: String,
    /// Echoed in the response.
    id: Value,
    method: String,
    /// The method's parameters (`message`, or the task's `id`).
    params: Value,
}

/// A JSON-RPC 2.0 response: `result` on success, else `error`. Also each `data:` of a streaming
/// method's event stream.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only; the fields are read by the derive
pub struct JsonRpcResponse {
    /// `2.0`.
    jsonrpc: String,
    /// The request's id (`null` when the request could not be read).
    id: Value,
    /// The task or message (v0.3), or `{"task": …}` / `{"message": …}` (v1.0).
    result: Option<Value>,
    error: Option<JsonRpcError>,
}

/// A JSON-RPC error: what could not be done and why.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only; the fields are read by the derive
pub struct JsonRpcError {
    /// JSON-RPC codes (-32700 parse error, -32601 method not found, …) and A2A's (-32001 task
    /// not found, …).
    code: i64,
    message: String,
    data: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_the_alias_and_the_error_body() {
        let doc = document_json().expect("serializes");
        let status = &doc["paths"]["/api/chat"]["post"]["responses"]["200"]["links"]["status"];
        assert_eq!(status["operationId"], "chat_status", "{status}");
        assert!(status.get("operation_id").is_none(), "{status}");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        assert_eq!(
            doc["paths"]["/health"]["get"]["operationId"],
            "health_alias"
        );
        assert_eq!(doc["paths"]["/api/health"]["get"]["operationId"], "health");
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        assert!(doc["paths"].get("/ws/chat").is_none());
    }
}
