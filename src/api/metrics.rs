//! `GET /metrics`: the process's metrics in the Prometheus text format (OpenMetrics for a scraper
//! that asks for it by `Accept`).

use axum::Json;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ErrorBody;
use crate::metrics::Exposition;

/// Counts the threads by status, then renders every metric.
///
/// Threads by status are counted from the store at each scrape (one grouped query on an index
/// leading with `status`) rather than kept up to date in memory: on PostgreSQL several processes
/// change the same threads, and a count kept by one process would be wrong for the database and
/// would restart from zero with the process, while the store is always right. A store that
/// cannot count leaves the gauge out of this scrape (logged) and the rest is served.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    params(("Accept" = Option<String>, Header, description = "`application/openmetrics-text` for OpenMetrics; anything else gets the Prometheus text format")),
    responses(
        (status = 200, description = "Every metric: HTTP requests by route and status, turns, nodes, agent calls, questions, threads by status, store writes",
         content((String = "text/plain"), (String = "application/openmetrics-text"))),
        (status = 500, description = "The metrics could not be rendered", body = ErrorBody),
    )
)]
pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let metrics = &app.engine.services().metrics;
    match app.engine.store().threads_by_status().await {
        Ok(counts) => metrics.set_threads(Some(&counts)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count threads by status for /metrics");
            metrics.set_threads(None);
        }
    }
    let format = Exposition::for_accept(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    match metrics.render(format) {
        Ok(body) => ([(CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            // Writing into a `String` does not fail; should the encoder ever, say so as JSON.
            let message = format!("cannot render metrics: {e}");
            tracing::error!(error = %e, "cannot render metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(ErrorBody::new(message)),
            )
                .into_response()
        }
    }
}
