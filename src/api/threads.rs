//! Thread internals for operators and tools: the latest checkpoint whole, the kept history, and
//! any kept past checkpoint rebuilt from it.
//!
//! - `GET /api/threads/{thread_id}/checkpoint`: state, next node, step, version
//! - `GET /api/threads/{thread_id}/history`: the kept checkpoints, newest first (no state)
//! - `GET /api/threads/{thread_id}/checkpoints/{version}`: one past checkpoint, whole

use axum::Json;
use axum::extract::{Path, State};

use super::{AppError, AppState};
use crate::engine::EngineError;
use crate::store::{Checkpoint, HistoryEntry};

/// The latest checkpoint of a thread.
pub async fn checkpoint(
    State(app): State<AppState>,
    Path(thread_id): Path<String>,
) -> Result<Json<Checkpoint>, AppError> {
    Ok(Json(app.engine.checkpoint(&thread_id).await?))
}

/// The thread's kept checkpoints, newest first.
pub async fn history(
    State(app): State<AppState>,
    Path(thread_id): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, AppError> {
    let history = app
        .engine
        .store()
        .history(&thread_id)
        .await
        .map_err(EngineError::from)?;
    if history.is_empty() {
        return Err(EngineError::NotFound(thread_id).into());
    }
    Ok(Json(history))
}

/// One kept checkpoint, rebuilt from the head and the history.
pub async fn checkpoint_at(
    State(app): State<AppState>,
    Path((thread_id, version)): Path<(String, String)>,
) -> Result<Json<Checkpoint>, AppError> {
    let version: i64 = version
        .parse()
        .map_err(|_| AppError::Invalid(format!("version must be an integer, got {version:?}")))?;
    Ok(Json(app.engine.checkpoint_at(&thread_id, version).await?))
}
