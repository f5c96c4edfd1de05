//! `GET /api/agents`, `GET /api/agents/{id}`: the agent directory as it stands.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::{AppError, AppState};
use crate::directory::card::AgentCard;

/// Every card in the directory.
pub async fn list(State(app): State<AppState>) -> Json<Vec<Arc<AgentCard>>> {
    Json(app.engine.services().directory.list())
}

/// One card.
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Arc<AgentCard>>, AppError> {
    app.engine
        .services()
        .directory
        .get(&id)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("unknown agent {id}")))
}
