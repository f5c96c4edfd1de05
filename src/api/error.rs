//! The API's error type and its JSON body, and a JSON extractor whose every rejection is one too.
//! A client's mistake (4xx) is told as it is; a failure of Baton's own (5xx) is told in words a
//! client can act on, never its cause's text (a database's message, a file path), which goes to
//! the log at error level under the request id the body carries too.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use super::observe::current_request_id;
use crate::directory::AgentDirectoryError;
use crate::engine::EngineError;
use crate::store::StoreError;

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The body is not JSON at all.
    #[error("{0}")]
    BadRequest(String),
    /// The JSON is well-formed but says something unacceptable.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// No key, or one the server does not accept (401 with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// A known key without the role the operation needs (changing the agent directory).
    #[error("{0}")]
    Forbidden(String),
    /// A key over one of its limits (429 with `Retry-After`, in whole seconds).
    #[error("{message}")]
    TooMany {
        message: String,
        retry_after: std::time::Duration,
    },
    /// Something Baton had to reach (an agent) did not answer properly.
    #[error("{0}")]
    Unreachable(String),
    /// The body could not be read (too large: 413).
    #[error("{message}")]
    Body { status: StatusCode, message: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Directory(#[from] AgentDirectoryError),
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            AppError::Body { status, .. } => *status,
            AppError::Engine(e) => match e {
                EngineError::NotFound(_) => StatusCode::NOT_FOUND,
                EngineError::NotWaiting { .. }
                | EngineError::Busy { .. }
                | EngineError::UnknownQuestion { .. }
                | EngineError::NoQuestion(_)
                | EngineError::Conflict(_)
                | EngineError::Running(_)
                | EngineError::Exists(_) => StatusCode::CONFLICT,
                EngineError::UnknownVersion { .. } => StatusCode::NOT_FOUND,
                EngineError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                EngineError::Aborted { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            AppError::Directory(e) => match e {
                // A URL to discover that serves no readable card (or tool list) is input Baton
                // cannot use, like a refused one: the client's to fix, not a failure of Baton's.
                AgentDirectoryError::InvalidCard(_)
                | AgentDirectoryError::UrlRefused(_)
                | AgentDirectoryError::RatingOutOfRange(_)
                | AgentDirectoryError::CardUnreachable { .. }
                | AgentDirectoryError::ToolsUnreachable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                AgentDirectoryError::UnknownAgent(_) => StatusCode::NOT_FOUND,
                AgentDirectoryError::Store(StoreError::Conflict { .. }) => StatusCode::CONFLICT,
                AgentDirectoryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                AgentDirectoryError::Index(_) | AgentDirectoryError::Interrupted(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    fn thread_id(&self) -> Option<&str> {
        match self {
            AppError::Engine(
                EngineError::NotFound(id)
                | EngineError::NotWaiting { thread_id: id, .. }
                | EngineError::Busy { thread_id: id, .. }
                | EngineError::UnknownQuestion { thread_id: id, .. }
                | EngineError::NoQuestion(id)
                | EngineError::Conflict(id)
                | EngineError::Running(id)
                | EngineError::Exists(id)
                | EngineError::UnknownVersion { thread_id: id, .. }
                | EngineError::Aborted { thread_id: id, .. },
            ) => Some(id),
            _ => None,
        }
    }

    /// The JSON body: `error` says what is wrong (`public_message`); `status`/`error_message`
    /// keep the original system's error shape readable by its clients; `request_id` finds the
    /// detail in the log.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            thread_id: self.thread_id().map(str::to_owned),
            ..ErrorBody::new(self.public_message())
        }
    }

    /// What a client is told. A 4xx is the client's to fix and says exactly what is wrong; a
    /// 5xx says what failed and what the client can do, never its cause.
    fn public_message(&self) -> String {
        if !self.status().is_server_error() {
            return self.to_string();
        }
        match self {
            AppError::Engine(EngineError::Store(e)) => store_failure("thread", e),
            AppError::Directory(AgentDirectoryError::Store(e)) => {
                store_failure("agent directory", e)
            }
            AppError::Engine(EngineError::Aborted { thread_id, .. }) => format!(
                "the run of thread {thread_id} stopped unexpectedly; its last checkpoint is kept \
                 (GET /api/chat/status/{thread_id})"
            ),
            AppError::Directory(AgentDirectoryError::Index(_)) => {
                "the agent directory's search index could not take the change (the card is \
                 stored); try again"
                    .to_owned()
            }
            AppError::Directory(AgentDirectoryError::Interrupted(_)) => {
                "the directory change was interrupted (the server may be shutting down); try again"
                    .to_owned()
            }
            _ => "the server could not complete the request; try again".to_owned(),
        }
    }

    /// Logs a 5xx once, where it becomes an answer (a response, a WebSocket frame), with its
    /// whole chain of causes and the request id its body carries.
    pub fn log_if_server_error(&self) {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(
                request_id = current_request_id().as_deref(),
                status = status.as_u16(),
                error = %causes(self),
                "request failed"
            );
        }
    }
}

/// A store failure in words a client can act on; `what` names the data (thread, agent
/// directory).
fn store_failure(what: &str, error: &StoreError) -> String {
    match error {
        StoreError::ConnectionLost(_) => format!(
            "the {what} store lost its connection while writing: the change may or may not have \
             been made; read it back before trying again"
        ),
        StoreError::Corrupt { .. } => {
            format!("a stored {what} record could not be read; the operator can find it in the log")
        }
        _ => format!(
            "the {what} store could not complete the request (it may be unavailable); try again \
             later, and quote the request_id if it persists"
        ),
    }
}

/// An error and every cause under it, `: `-separated, for the log.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // A transparent or quoting wrapper already says its cause.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Every error response's body, whatever produced it (a handler, an extractor, axum itself), so
/// clients of the original system read `status`/`error_message` and new ones read `error`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"error": "no thread t-1", "status": "error",
                          "error_message": "no thread t-1", "thread_id": "t-1",
                          "request_id": "0199a5c4-7b1e-7c3a-9f0e-2d4b8c6a1e53"}))]
pub struct ErrorBody {
    /// What is wrong, in words.
    pub error: String,
    /// Always `error` (the original system's shape).
    pub status: ErrorStatus,
    /// The same text as `error` (the original system's field).
    pub error_message: String,
    /// The thread the error is about, for errors about a thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The original system's `detail`, where Baton answers as it did (`DELETE /api/chat/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request's id, as its `x-request-id` response header gives it: the server's log has
    /// the detail of a 5xx under it, so quote it when reporting one. Absent only outside a
    /// request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// A body saying `message`, about no thread in particular, with the id of the request
    /// being served.
    pub fn new(message: String) -> Self {
        ErrorBody {
            error: message.clone(),
            status: ErrorStatus::Error,
            error_message: message,
            thread_id: None,
            detail: None,
            request_id: current_request_id(),
        }
    }
}

/// The `status` of an error body: one value, kept as a type so the schema says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStatus {
    Error,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log_if_server_error();
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let AppError::TooMany { retry_after, .. } = &self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds.max(1)),
            );
        }
        if matches!(self, AppError::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Parses a JSON body whatever its content type says; malformed JSON is 400, JSON of the wrong
/// shape 422, a body over the limit 413, each with a JSON error body.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| AppError::Body {
                status: r.status(),
                message: if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "request body is larger than the server accepts".to_owned()
                } else {
                    r.body_text()
                },
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a request body the way every endpoint (and the WebSocket) does: not JSON is 400; JSON
/// that is not an object, or an object of the wrong shape, is 422 naming the field at fault
/// (`max_results: invalid type: …`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("malformed JSON: {e}")))?;
    if !value.is_object() {
        return Err(AppError::Invalid(
            "invalid request: the body must be a JSON object".to_owned(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            AppError::Invalid(format!("invalid request: {}", e.inner()))
        } else {
            AppError::Invalid(format!("invalid request: {path}: {}", e.inner()))
        }
    })
}

/// Unknown routes answer in JSON like everything else.
pub async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".to_owned())
}

/// Error responses that axum writes itself (a path that does not parse, a method a route does
/// not have, a failed WebSocket upgrade) come as plain text; this turns them into the same JSON
/// body as every other error.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    } else {
        text
    };
    let body = serde_json::to_vec(&ErrorBody::new(message)).unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::AgentError;
    use crate::directory::DirectoryError;
    use crate::directory::register::CardError;

    #[test]
    fn a_server_error_tells_what_failed_but_not_its_cause() {
        let cause = || sqlx::Error::Protocol("no such table: threads in /var/lib/baton.db".into());
        let engine = AppError::Engine(EngineError::Store(StoreError::Database(cause())));
        let directory = AppError::Directory(AgentDirectoryError::Store(StoreError::GroupCommit(
            std::sync::Arc::new(cause()),
        )));
        for (error, what) in [
            (engine, "thread store"),
            (directory, "agent directory store"),
        ] {
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = error.body();
            assert!(body.error.contains(what), "{body:?}");
            assert!(!body.error.contains("no such table"), "{body:?}");
            assert!(!body.error.contains("/var/lib"), "{body:?}");
            assert!(
                causes(&error).contains("no such table: threads"),
                "the log has it"
            );
        }
        let client = AppError::NotFound("no thread t-1".into());
        assert_eq!(
            client.body().error,
            "no thread t-1",
            "a 4xx is told as it is"
        );
    }

    #[test]
    fn directory_errors_map_to_their_status_without_a_thread_id() {
        let cases = [
            (
                AgentDirectoryError::InvalidCard(CardError::Invalid(
                    "name must not be blank".into(),
                )),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                AgentDirectoryError::UrlRefused(crate::agents::policy::UrlRefused::NotAllowed(
                    "http://x".into(),
                )),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                AgentDirectoryError::RatingOutOfRange(7.0),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                AgentDirectoryError::UnknownAgent("nobody".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                AgentDirectoryError::CardUnreachable {
                    url: "http://127.0.0.1:1".into(),
                    source: AgentError::TooLarge(10),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                AgentDirectoryError::Index(DirectoryError::Poisoned("directory")),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            let error = AppError::from(error);
            assert_eq!(error.status(), status, "{error}");
            let body = error.body();
            assert!(body.thread_id.is_none(), "{body:?}");
            assert_eq!(body.error, body.error_message, "{body:?}");
        }
    }
}
