//! The agent directory over HTTP: register a card (A2A or original REST format), discover an A2A
//! agent or an MCP server by URL, list, get, delete, search, rate. Each handler parses the
//! request, calls `AgentDirectory` and lets `AppError` pick the status.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::{AppError, AppState, JsonBody};
use crate::card::AgentCard;
use crate::directory::service::{AgentQuery, DiscoverRequest, SearchHit};

/// Every card in the directory.
pub async fn list(State(app): State<AppState>) -> Json<Vec<Arc<AgentCard>>> {
    Json(app.agents.list())
}

/// One card.
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Arc<AgentCard>>, AppError> {
    Ok(Json(app.agents.get(&id)?))
}

/// Registers (or replaces) a card: 201 with the card as stored.
pub async fn register(
    State(app): State<AppState>,
    JsonBody(card): JsonBody<Value>,
) -> Result<(StatusCode, Json<AgentCard>), AppError> {
    let card = app.agents.register(card).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

/// Reads an A2A agent's card (or an MCP server's tools) and registers it: 201 with the card.
pub async fn discover(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<DiscoverRequest>,
) -> Result<(StatusCode, Json<AgentCard>), AppError> {
    let card = app.agents.discover(&request).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

/// Removes a card: 204, or 404 if there was none.
pub async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    app.agents.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/agents/search`.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    /// Comma-separated skill tags; a card needs one of them.
    #[serde(default)]
    pub capabilities: String,
    pub max_price: Option<f64>,
    pub min_rating: Option<f64>,
    pub limit: Option<usize>,
}

impl From<SearchQuery> for AgentQuery {
    fn from(query: SearchQuery) -> Self {
        AgentQuery {
            text: query.q,
            capabilities: query
                .capabilities
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            max_price: query.max_price,
            min_rating: query.min_rating,
            limit: query.limit,
        }
    }
}

/// Full-text search with filters, best first.
pub async fn search(
    State(app): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<SearchHit>>, AppError> {
    let Query(query) =
        query.map_err(|e| AppError::Invalid(format!("invalid search: {}", e.body_text())))?;
    Ok(Json(app.agents.search(&query.into())?))
}

/// Body of `POST /api/agents/{id}/rate`.
#[derive(Debug, Deserialize)]
pub struct RateRequest {
    pub rating: f64,
}

/// Adds a rating to the card's running mean: 200 with the card as stored.
pub async fn rate(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RateRequest>,
) -> Result<Json<AgentCard>, AppError> {
    Ok(Json(app.agents.rate(&id, request.rating).await?))
}
