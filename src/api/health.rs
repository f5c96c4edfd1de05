//! `GET /api/health`: 200 when the store answers, 503 when it does not; either way with the
//! process's count of what clients hold open (`live`, see `api::live`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::live::LiveCounts;
use super::observe::current_request_id;

/// The health answer: what a load balancer checks (`status`) and what tests read (`live`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// That the store did not answer (with `status: error` only); the cause is in the log under
    /// `request_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request's id (its `x-request-id`), with `status: error` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub live: LiveCounts,
}

/// Whether the store answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Error,
}

/// Pings the store.
///
/// Also served at `/health`, the original system's path.
#[utoipa::path(
    get,
    path = "/api/health",
    operation_id = "health",
    tag = "health",
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    )
)]
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    let live = super::live::counts();
    match app.engine.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
                error: None,
                request_id: None,
                live,
            }),
        ),
        Err(e) => {
            let request_id = current_request_id();
            tracing::error!(request_id = request_id.as_deref(), error = %e, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: HealthStatus::Error,
                    error: Some("the store does not answer".to_owned()),
                    request_id,
                    live,
                }),
            )
        }
    }
}
