//! Threads: the list, deleting one, and its internals for operators and tools (the latest
//! checkpoint whole, the kept history, any kept past checkpoint rebuilt from it).
//!
//! - `GET /api/threads?status=&limit=&cursor=`: threads, newest first (by latest checkpoint)
//! - `DELETE /api/threads/{thread_id}`: the thread and its history; 204
//! - `DELETE /api/chat/{thread_id}`: the same, answered as the original system did
//! - `GET /api/threads/{thread_id}/checkpoint`: state, next node, step, version
//! - `GET /api/threads/{thread_id}/history`: the kept checkpoints, newest first (no state)
//! - `GET /api/threads/{thread_id}/checkpoints/{version}`: one past checkpoint, whole

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::chat::validate_thread_id;
use super::error::ErrorBody;
use super::paging::{self, parse_limit};
use super::{AppError, AppState};
use crate::access::Access;
use crate::engine::EngineError;
use crate::state::ThreadStatus;
use crate::store::{Checkpoint, HistoryEntry, ListCursor, ThreadQuery, ThreadSummary};

/// Threads per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 200;

/// The query of `GET /api/threads`, as text: each value is checked here, so a bad one is a 422
/// naming it rather than the extractor's plain rejection.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only threads with this status.
    #[param(value_type = Option<ThreadStatus>)]
    pub status: Option<String>,
    /// Threads per page, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A page of the thread list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadPage {
    pub threads: Vec<ThreadSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl ListParams {
    /// The store's query, or a 422 naming the parameter at fault.
    fn validate(self) -> Result<ThreadQuery, AppError> {
        let status = self
            .status
            .map(|s| {
                s.parse::<ThreadStatus>().map_err(|_| {
                    let allowed = ThreadStatus::ALL.map(ThreadStatus::as_str).join(", ");
                    AppError::Invalid(format!("status must be one of {allowed}, got {s:?}"))
                })
            })
            .transpose()?;
        let limit = parse_limit(
            self.limit.as_deref(),
            DEFAULT_LIMIT as usize,
            MAX_LIMIT as usize,
        )?;
        // Within MAX_LIMIT, so it fits.
        let limit = u32::try_from(limit).unwrap_or(MAX_LIMIT);
        let after = self.cursor.map(|c| decode_cursor(&c)).transpose()?;
        Ok(ThreadQuery {
            status,
            owner: None,
            after,
            limit,
        })
    }
}

/// A cursor as the client sees it: `updated_at.thread_id`, opaque.
fn encode_cursor(cursor: &ListCursor) -> String {
    paging::encode_cursor(&format!("{}.{}", cursor.updated_at, cursor.thread_id))
}

/// Reads back a cursor `encode_cursor` wrote; anything else is a 422.
fn decode_cursor(text: &str) -> Result<ListCursor, AppError> {
    let bad =
        || AppError::Invalid("cursor is not one this server gave (use next_cursor)".to_owned());
    let plain = paging::decode_cursor(text, "next_cursor")?;
    let (updated_at, thread_id) = plain.split_once('.').ok_or_else(bad)?;
    let updated_at = updated_at.parse::<i64>().map_err(|_| bad())?;
    validate_thread_id(thread_id).map_err(|_| bad())?;
    Ok(ListCursor {
        updated_at,
        thread_id: thread_id.to_owned(),
    })
}

/// Threads, newest first by their latest checkpoint, a page at a time.
///
/// Reads an index and the few columns each write keeps beside the state, never the states.
#[utoipa::path(
    get,
    path = "/api/threads",
    operation_id = "threads_list",
    tag = "threads",
    params(ListParams),
    responses(
        (status = 200, description = "A page of threads, newest first", body = ThreadPage),
        (status = 400, description = "The query string does not parse", body = ErrorBody),
        (status = 422, description = "A bad `status`, `limit` or `cursor`", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<ListParams>,
) -> Result<Json<ThreadPage>, AppError> {
    let mut query = params.validate()?;
    query.owner = access.list_filter().cloned();
    let limit = query.limit;
    // One more than asked tells whether there is a next page.
    query.limit += 1;
    let mut threads = app.engine.threads(&query).await?;
    let more = threads.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    threads.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more
        .then(|| threads.last().map(|t| encode_cursor(&t.cursor())))
        .flatten();
    Ok(Json(ThreadPage {
        threads,
        next_cursor,
    }))
}

/// Deletes a thread and its history: 204, 404 unknown, 409 while its run is in progress.
///
/// A compare-and-set on the version, so a deleted thread never comes back half-written.
#[utoipa::path(
    delete,
    path = "/api/threads/{thread_id}",
    operation_id = "thread_delete",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 204, description = "Deleted, with its history"),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 409, description = "Its run is in progress, or a write won the race", body = ErrorBody),
        (status = 422, description = "A thread id no thread can have", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<StatusCode, AppError> {
    validate_thread_id(&thread_id)?;
    app.engine.check_visible(&thread_id, &access).await?;
    app.engine.delete(&thread_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The original system's `DELETE /api/chat/{thread_id}`: 200 with
/// `{"message": "Conversation {id} cleared successfully"}`; an unknown thread is 404 with its
/// `detail` ("Conversation thread not found") beside Baton's error fields. Refusals Baton adds
/// (409 while running) are Baton's errors.
#[utoipa::path(
    delete,
    path = "/api/chat/{thread_id}",
    operation_id = "chat_delete",
    tag = "conversation",
    params(("thread_id" = String, Path, description = "The thread", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "Deleted, with its history", body = Cleared),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread (with `detail`)", body = ErrorBody),
        (status = 409, description = "Its run is in progress, or a write won the race", body = ErrorBody),
        (status = 422, description = "A thread id no thread can have", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn delete_chat(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<Response, AppError> {
    validate_thread_id(&thread_id)?;
    let deleted = match app.engine.check_visible(&thread_id, &access).await {
        Ok(_) => app.engine.delete(&thread_id).await,
        Err(e) => Err(e),
    };
    match deleted {
        Ok(()) => Ok(Json(Cleared {
            message: format!("Conversation {thread_id} cleared successfully"),
        })
        .into_response()),
        Err(e @ EngineError::NotFound(_)) => {
            let mut body = AppError::from(e).body();
            body.detail = Some("Conversation thread not found".to_owned());
            Ok((StatusCode::NOT_FOUND, Json(body)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The original system's answer to `DELETE /api/chat/{thread_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cleared {
    /// `Conversation {id} cleared successfully`.
    pub message: String,
}

/// The latest checkpoint of a thread.
///
/// The whole state, for operators and tools; clients read `/api/chat/status` instead.
#[utoipa::path(
    get,
    path = "/api/threads/{thread_id}/checkpoint",
    operation_id = "thread_checkpoint",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread")),
    responses(
        (status = 200, description = "The latest checkpoint, state included", body = Checkpoint),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn checkpoint(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<Json<Checkpoint>, AppError> {
    Ok(Json(app.engine.visible(&thread_id, &access).await?))
}

/// The thread's kept checkpoints, newest first (a fork's first names where it came from).
///
/// Without their states: a version here can be read whole from `checkpoints/{version}`.
#[utoipa::path(
    get,
    path = "/api/threads/{thread_id}/history",
    operation_id = "thread_history",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread")),
    responses(
        (status = 200, description = "The kept checkpoints, newest first", body = Vec<HistoryEntry>),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn history(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, AppError> {
    app.engine.check_visible(&thread_id, &access).await?;
    Ok(Json(app.engine.history(&thread_id).await?))
}

/// One kept checkpoint, rebuilt from the head and the history.
///
/// How a thread looked at any kept point, to see why a run chose what it chose.
#[utoipa::path(
    get,
    path = "/api/threads/{thread_id}/checkpoints/{version}",
    operation_id = "thread_checkpoint_at",
    tag = "threads",
    params(
        ("thread_id" = String, Path, description = "The thread"),
        ("version" = i64, Path, description = "A version from the thread's history"),
    ),
    responses(
        (status = 200, description = "The checkpoint as it was written", body = Checkpoint),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread, or the version is outside the kept history", body = ErrorBody),
        (status = 422, description = "The version is not an integer", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn checkpoint_at(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path((thread_id, version)): Path<(String, String)>,
) -> Result<Json<Checkpoint>, AppError> {
    let version: i64 = version
        .parse()
        .map_err(|_| AppError::Invalid(format!("version must be an integer, got {version:?}")))?;
    app.engine.check_visible(&thread_id, &access).await?;
    Ok(Json(app.engine.checkpoint_at(&thread_id, version).await?))
}
