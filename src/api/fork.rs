//! `POST /api/threads/{thread_id}/fork {"version": n, "thread_id"?: "..."}`: time travel. A new
//! thread starts from the thread's checkpoint at version `n`; the original is untouched and both
//! go on independently.
//!
//! Answers 201 with the fork in the shape of `/api/chat` (`ProcessResponse`): waiting for an
//! answer if the checkpoint was, finished (ready for a new prompt) if it was; a checkpoint taken
//! while the run was processing is resumed as the fork's own run, and the answer comes when that
//! run pauses or ends. 404 for an unknown thread or a version outside the kept history, 409 when
//! the requested `thread_id` exists, 422 for a bad id or body.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::chat::{ProcessResponse, validate_thread_id};
use super::error::ErrorBody;
use super::{AppError, AppState, JsonBody};
use crate::access::Access;
use crate::engine::ForkRequest;

/// Body of the fork request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"version": 3, "thread_id": "trip-42-b"}))]
pub struct ForkBody {
    /// The checkpoint version to fork from (see `GET /api/threads/{id}/history`).
    pub version: i64,
    /// The fork's id; a fresh one when absent.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub thread_id: Option<String>,
}

/// Forks a thread at a checkpoint.
///
/// Time travel: try again from an earlier point while the original stays as it was.
#[utoipa::path(
    post,
    path = "/api/threads/{thread_id}/fork",
    operation_id = "thread_fork",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread to fork", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body = ForkBody,
    responses(
        (status = 201, description = "The fork, as its run left it (waiting, finished, or after resuming)", body = ProcessResponse),
        (status = 400, description = "The body is not JSON, or the path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread, or the version is outside the kept history", body = ErrorBody),
        (status = 409, description = "A thread with the requested `thread_id` exists", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "Wrong shape, or a malformed thread id", body = ErrorBody),
        (status = 500, description = "The fork's resumed run was aborted", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn fork(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
    JsonBody(body): JsonBody<ForkBody>,
) -> Result<(StatusCode, Json<ProcessResponse>), AppError> {
    validate_thread_id(&thread_id)?;
    if let Some(id) = &body.thread_id {
        validate_thread_id(id)?;
    }
    let view = app
        .engine
        .fork(ForkRequest {
            from: thread_id,
            version: body.version,
            thread_id: body.thread_id,
            access,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}
