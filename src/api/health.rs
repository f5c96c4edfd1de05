//! `GET /api/health`: 200 when the store answers, 503 when it does not; either way with the
//! process's count of what clients hold open (`live`, see `api::live`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// Pings the store.
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match app.engine.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "live": super::live::counts() })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "error", "error": e.to_string(), "live": super::live::counts() }),
            ),
        ),
    }
}
