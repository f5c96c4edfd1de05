//! `GET /api/threads/{thread_id}/checkpoint`: a thread's latest checkpoint, whole (state, next
//! node, step, version), for operators and for tests that look inside a run.

use axum::Json;
use axum::extract::{Path, State};

use super::{AppError, AppState};
use crate::store::Checkpoint;

/// The latest checkpoint of a thread.
pub async fn checkpoint(
    State(app): State<AppState>,
    Path(thread_id): Path<String>,
) -> Result<Json<Checkpoint>, AppError> {
    Ok(Json(app.engine.checkpoint(&thread_id).await?))
}
