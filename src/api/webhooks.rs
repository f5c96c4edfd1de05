//! `GET /api/threads/{thread_id}/webhooks`: the thread's webhook and every delivery made or due
//! for it, each with its attempts (number, status code or error, next retry, outcome), whichever
//! process made them.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::{AppError, AppState};
use crate::engine::EngineError;
use crate::store::DeliveryRecord;

/// The answer: the webhook the thread's next pause or end goes to, and the deliveries so far,
/// oldest checkpoint first.
#[derive(Debug, Serialize)]
pub struct ThreadWebhooks {
    pub thread_id: String,
    pub webhook: Option<String>,
    pub deliveries: Vec<DeliveryRecord>,
}

/// Lists the thread's deliveries; an unknown thread is 404.
pub async fn webhooks(
    State(app): State<AppState>,
    Path(thread_id): Path<String>,
) -> Result<Json<ThreadWebhooks>, AppError> {
    let head = app.engine.checkpoint(&thread_id).await?;
    let deliveries = app
        .engine
        .store()
        .deliveries(&thread_id)
        .await
        .map_err(EngineError::from)?;
    Ok(Json(ThreadWebhooks {
        webhook: head.state.webhook.map(|url| url.as_str().to_owned()),
        thread_id,
        deliveries,
    }))
}
