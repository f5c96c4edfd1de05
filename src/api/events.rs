//! `GET /api/threads/{thread_id}/events`: the thread's events as Server-Sent Events, for clients
//! that do not speak WebSocket (`curl -N`, a browser's `EventSource`).
//!
//! Each event derived from a checkpoint has an `id:` (`"{version}.{index}"`); a client that
//! reconnects with `Last-Event-ID` (or `?last_event_id=`, for clients that cannot set headers)
//! gets what it missed replayed from the checkpoint history, then the live events, without a gap
//! or a repeat. Without one the stream starts with a `snapshot` of the thread as it stands (id
//! `"{version}"`); `last_event_id=0` replays the whole kept history instead. Agents' progress
//! notes come as `progress` events without an id (they are not checkpointed, so not
//! replayable), and so do webhook attempts made by this process (`webhook`; every attempt is
//! kept in `GET /api/threads/{id}/webhooks`). Keep-alive comments hold the connection open; the stream ends when the client
//! goes (nothing runs for it in the background: its follower is dropped with the response body).
//! With `?wait=true` a thread that does not exist yet is waited for rather than a 404, so a
//! client can follow a run it starts (with its own `thread_id`) from the first checkpoint.

use std::convert::Infallible;

use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::auth::Slot;
use super::chat::ProcessResponse;
use super::error::ErrorBody;
use super::live::{Held, Holding};
use super::{AppError, AppState};
use crate::access::Access;
use crate::engine::EngineError;
use crate::engine::follow::{Followed, ThreadFollower};
use crate::engine::timeline::ResumePoint;
use crate::engine::view::ThreadView;
use crate::state::Node;

/// The header a reconnecting `EventSource` sends.
const LAST_EVENT_ID: &str = "last-event-id";

/// `?last_event_id=…`: the header's stand-in; `?wait=true`: follow a thread about to start.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (`0`: the whole kept history); the `Last-Event-ID` header wins
    /// over it.
    last_event_id: Option<String>,
    /// `true`: a thread that does not exist yet is waited for instead of answered with 404, so a
    /// client can follow a run from its first checkpoint by naming the `thread_id` of a start
    /// request it sends at the same time (the web console does).
    #[serde(default)]
    wait: bool,
}

/// The `snapshot` event: the thread as it stands (every `ProcessResponse` field), with its
/// checkpoint's place.
#[derive(Debug, Serialize)]
struct Snapshot {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    version: i64,
    step: i64,
    next: Node,
    #[serde(flatten)]
    thread: ProcessResponse,
}

/// The `progress` event: what an agent says while it works.
#[derive(Debug, Serialize)]
struct ProgressNote<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    thread_id: &'a str,
    version: i64,
    task_id: &'a str,
    agent_id: &'a str,
    text: &'a str,
}

/// The `webhook` event: one attempt to deliver one of the thread's webhooks.
#[derive(Debug, Serialize)]
struct WebhookNote<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    attempt: &'a crate::store::WebhookAttempt,
}

/// Streams the thread's events; an unknown thread is 404 (unless `wait=true`), a malformed
/// event id 422.
///
/// Server-Sent Events, whichever process runs the thread: `snapshot` first (unless resuming),
/// then `node_finished`, `run_started`, `answer_received`, `task_started`, `task_finished`,
/// `question_asked`, `run_paused`, `run_finished`, `run_failed` and `run_cancelled`, each with
/// its JSON as `data:` and an `id:` to resume from; `progress` (an agent's notes) and `webhook`
/// (a delivery attempt) come without an id. The stream does not end by itself: keep-alive
/// comments hold it open until the client goes.
#[utoipa::path(
    get,
    path = "/api/threads/{thread_id}/events",
    operation_id = "thread_events",
    tag = "threads",
    params(
        ("thread_id" = String, Path, description = "The thread"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event seen (`{version}.{index}` or `{version}`); what a reconnecting `EventSource` sends"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "The event stream; it lasts until the client closes it", content_type = "text/event-stream", body = String),
        (status = 400, description = "The path or the query does not parse", body = ErrorBody),
        (status = 404, description = "No such thread (and no `wait=true`)", body = ErrorBody),
        (status = 422, description = "The event id to resume from is malformed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn events(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    slot: Option<Extension<Slot>>,
    Path(thread_id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let from = resume_point(&headers, query.last_event_id.as_deref())?;
    // Waiting for a thread to start happens inside the stream, so the response (and its
    // keep-alive comments) goes out at once.
    // Another key's thread does not exist for this caller, waiting or not.
    let head = app
        .engine
        .store()
        .get_checkpoint(&thread_id)
        .await
        .map_err(EngineError::from)?;
    match &head {
        Some(head) if !access.may_see(head.state.owner.as_ref()) => {
            return Err(EngineError::NotFound(thread_id).into());
        }
        None if !query.wait => return Err(EngineError::NotFound(thread_id).into()),
        _ => {}
    }
    let follower = if query.wait && head.is_none() {
        None
    } else {
        Some(ThreadFollower::open(&app.engine, &thread_id, from).await?)
    };
    // The key's stream slot (`--key-max-streams`) goes with the stream.
    let held = (Holding::new(Held::EventStream), slot);
    let engine = app.engine.clone();
    let stream = futures_util::stream::unfold(
        (follower, held, thread_id),
        move |(follower, held, thread_id)| {
            let engine = engine.clone();
            let access = access.clone();
            async move {
                let mut follower = match follower {
                    Some(follower) => follower,
                    None => {
                        match ThreadFollower::open_once_started(&engine, &thread_id, from).await {
                            // A thread another key started under this id is not told.
                            Ok(_) if engine.visible(&thread_id, &access).await.is_err() => {
                                return None;
                            }
                            Ok(follower) => follower,
                            // The store failed: the stream ends and the client reconnects.
                            Err(e) => {
                                tracing::warn!(thread_id = %thread_id, error = %e, "cannot follow the thread");
                                return None;
                            }
                        }
                    }
                };
                let item = follower.next().await?;
                let event = sse_event(&thread_id, item);
                Some((Ok(event), (Some(follower), held, thread_id)))
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where the client stopped: the `Last-Event-ID` header (what a reconnecting `EventSource`
/// sends, so it wins over the URL it reconnects to), else `?last_event_id=`. A blank one is
/// none, as for a fresh `EventSource`.
fn resume_point(headers: &HeaderMap, query: Option<&str>) -> Result<Option<ResumePoint>, AppError> {
    let header = match headers.get(LAST_EVENT_ID) {
        Some(value) => Some(value.to_str().map_err(|_| {
            AppError::Invalid("the Last-Event-ID header is not readable text".to_owned())
        })?),
        None => None,
    };
    match header.or(query).map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => id
            .parse()
            .map(Some)
            .map_err(|e: crate::engine::timeline::BadEventId| AppError::Invalid(e.to_string())),
        None => Ok(None),
    }
}

/// One followed item as an SSE event: its kind as `event:`, its JSON as `data:`, and its id
/// when it is replayable.
fn sse_event(thread_id: &str, item: Followed) -> Event {
    let encoded = match item {
        Followed::Event(event) => Event::default()
            .id(event.id.to_string())
            .event(event.kind.name())
            .json_data(&event),
        Followed::Snapshot(checkpoint) => {
            let id = checkpoint.version.to_string();
            let snapshot = Snapshot {
                kind: "snapshot",
                id: id.clone(),
                version: checkpoint.version,
                step: checkpoint.step,
                next: checkpoint.next,
                thread: ProcessResponse::from(ThreadView::of(&checkpoint)),
            };
            Event::default()
                .id(id)
                .event("snapshot")
                .json_data(&snapshot)
        }
        Followed::Progress { version, note } => {
            Event::default().event("progress").json_data(&ProgressNote {
                kind: "progress",
                thread_id,
                version,
                task_id: &note.task_id,
                agent_id: &note.agent_id,
                text: &note.text,
            })
        }
        Followed::Webhook(attempt) => Event::default().event("webhook").json_data(&WebhookNote {
            kind: "webhook",
            attempt: &attempt,
        }),
    };
    // Only a serializer failure gets here, which these plain structs cannot produce.
    encoded.unwrap_or_else(|e| Event::default().comment(format!("event not encoded: {e}")))
}
