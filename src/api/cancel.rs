//! `POST /api/threads/{thread_id}/cancel`: the user stops a thread's run.
//!
//! Answers the thread as it stands afterwards, in the shape of `/api/chat` (`ProcessResponse`):
//! `cancelled` when it was processing or waiting for the user; as it was when it had already
//! finished (a cancel is idempotent, and one that arrives just after the end is not an error).
//! `404` for an unknown thread, `422` for an id no thread can have.

use axum::Json;
use axum::extract::{Path, State};

use super::chat::{ProcessResponse, validate_thread_id};
use super::{AppError, AppState};

/// Cancels the thread's run and its agents' open tasks.
pub async fn cancel(
    State(app): State<AppState>,
    Path(thread_id): Path<String>,
) -> Result<Json<ProcessResponse>, AppError> {
    validate_thread_id(&thread_id)?;
    Ok(Json(app.engine.cancel(&thread_id).await?.into()))
}
