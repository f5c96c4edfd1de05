//! `POST /api/threads/{thread_id}/cancel`: the user stops a thread's run.
//!
//! Answers the thread as it stands afterwards, in the shape of `/api/chat` (`ProcessResponse`):
//! `cancelled` when it was processing or waiting for the user; as it was when it had already
//! finished (a cancel is idempotent, and one that arrives just after the end is not an error).
//! `404` for an unknown thread, `422` for an id no thread can have.

use axum::Json;
use axum::extract::{Extension, Path, State};

use super::chat::{ProcessResponse, validate_thread_id};
use super::error::ErrorBody;
use super::{AppError, AppState};
use crate::access::Access;

/// Cancels the thread's run and its agents' open tasks.
///
/// Idempotent: a finished thread is answered as it is, so a cancel racing the end is no error.
#[utoipa::path(
    post,
    path = "/api/threads/{thread_id}/cancel",
    operation_id = "thread_cancel",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "The thread afterwards: `cancelled`, or as it finished", body = ProcessResponse),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 422, description = "A thread id no thread can have", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<Json<ProcessResponse>, AppError> {
    validate_thread_id(&thread_id)?;
    app.engine.check_visible(&thread_id, &access).await?;
    Ok(Json(app.engine.cancel(&thread_id).await?.into()))
}
