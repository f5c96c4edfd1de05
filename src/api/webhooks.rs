//! `GET /api/threads/{thread_id}/webhooks`: the thread's webhook and every delivery made or due
//! for it, each with its attempts (number, status code or error, next retry, outcome), whichever
//! process made them.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{AppError, AppState};
use crate::access::Access;
use crate::engine::EngineError;
use crate::store::DeliveryRecord;

/// The answer: the webhook the thread's next pause or end goes to, and the deliveries so far,
/// oldest checkpoint first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadWebhooks {
    pub thread_id: String,
    pub webhook: Option<String>,
    pub deliveries: Vec<DeliveryRecord>,
}

/// Lists the thread's deliveries; an unknown thread is 404.
///
/// So a client can see whether, when and how its receiver was told.
#[utoipa::path(
    get,
    path = "/api/threads/{thread_id}/webhooks",
    operation_id = "thread_webhooks",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread")),
    responses(
        (status = 200, description = "The webhook and its deliveries, oldest checkpoint first", body = ThreadWebhooks),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn webhooks(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<Json<ThreadWebhooks>, AppError> {
    let head = app.engine.visible(&thread_id, &access).await?;
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
