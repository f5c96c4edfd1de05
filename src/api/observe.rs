//! What every HTTP request leaves behind: a `request` span (method, route template, request id,
//! then status and latency) around its handler, so every line logged while it is served carries
//! them; the `x-request-id` header on the response (the caller's own, if it sent a usable one);
//! and its count and latency in the metrics, labelled by the route's template (`MatchedPath`),
//! never the raw path, so thread ids cannot multiply the series. The id is also the task-local
//! `current_request_id` while the request is served, so an error body can carry it and the
//! log line with the failure's detail can be found by it.

use std::future::Future;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;

/// The header a request id comes in and goes out on.
pub const REQUEST_ID: &str = "x-request-id";

/// The route label of a request no route matched (404s of unknown paths).
const UNMATCHED: &str = "unmatched";

/// Longest caller-chosen request id kept; a longer or stranger one is replaced.
const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    /// The id of the request the current task serves (see `current_request_id`).
    static SERVED_REQUEST: String;
}

/// The id of the request being served (the one its `x-request-id` header answers with), or
/// `None` outside a request (a takeover's run, a test calling a handler directly).
pub fn current_request_id() -> Option<String> {
    SERVED_REQUEST.try_with(Clone::clone).ok()
}

/// Runs `work` as part of the request `id`: what a request hands to a task of its own (a
/// WebSocket's session) keeps its id.
pub async fn with_request_id<F: Future>(id: String, work: F) -> F::Output {
    SERVED_REQUEST.scope(id, work).await
}

/// The request id a caller sent, if it is 1 to 128 visible ASCII characters (it goes into logs
/// and back into a header as it is).
fn callers_id(request: &Request) -> Option<String> {
    let id = request.headers().get(REQUEST_ID)?.to_str().ok()?;
    let usable =
        !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic());
    usable.then(|| id.to_owned())
}

/// The method as a metric label: the standard ones by name, any other as `other`, since a client
/// may send any token as a method and each would otherwise become a series of its own.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Serves one request inside its span, then records its status and latency.
pub async fn observe(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let request_id = callers_id(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let mut response = with_request_id(request_id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.record("status", status);
    span.record(
        "latency_ms",
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    );
    span.in_scope(|| tracing::debug!("request answered"));
    app.engine
        .services()
        .metrics
        .http_request(method, &route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
