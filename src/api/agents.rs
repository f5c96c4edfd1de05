//! The agent directory over HTTP: register a card (A2A or original REST format), discover an A2A
//! agent by URL, list, get, delete, search, rate.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AppError, AppState, JsonBody};
use crate::card::AgentCard;
use crate::directory::register::parse_card;
use crate::engine::EngineError;

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

/// Registers (or replaces) a card: 201 with the card as stored.
pub async fn register(
    State(app): State<AppState>,
    JsonBody(card): JsonBody<Value>,
) -> Result<(StatusCode, Json<AgentCard>), AppError> {
    let card =
        parse_card(card).map_err(|e| AppError::Invalid(format!("invalid agent card: {e}")))?;
    let card = save(&app, card).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

async fn save(app: &AppState, card: AgentCard) -> Result<AgentCard, AppError> {
    let network = card.protocol != crate::card::Protocol::Builtin;
    let urls = std::iter::once(&card.url).chain(card.endpoints.iter().map(|e| &e.endpoint));
    for url in urls.filter(|_| network) {
        app.engine
            .services()
            .agents
            .http()
            .policy()
            .check(url)
            .map_err(AppError::Invalid)?;
    }
    app.engine
        .store()
        .put_agent(&card)
        .await
        .map_err(EngineError::from)?;
    app.engine
        .services()
        .directory
        .upsert(vec![card.clone()])
        .map_err(|e| AppError::Engine(EngineError::Aborted(e.to_string())))?;
    Ok(card)
}

/// Body of `POST /api/agents/discover`.
#[derive(Debug, Deserialize)]
pub struct DiscoverRequest {
    /// An A2A agent's base URL (its card is at `/.well-known/agent-card.json` under it), or an
    /// MCP server's streamable HTTP endpoint.
    pub url: String,
    /// `a2a` (default) or `mcp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// For MCP servers: the name to list them under (default: the server's own name).
    #[serde(default)]
    pub name: Option<String>,
}

/// Fetches an A2A agent's card from its well-known path and registers it.
pub async fn discover(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<DiscoverRequest>,
) -> Result<(StatusCode, Json<AgentCard>), AppError> {
    let services = app.engine.services();
    let http = services.agents.http();
    http.policy()
        .check(&request.url)
        .map_err(AppError::Invalid)?;
    match request.protocol.as_deref() {
        None | Some("a2a") => {}
        Some("mcp") => {
            let card = services
                .agents
                .mcp()
                .discover(&request.url, request.name.as_deref())
                .await
                .map_err(|e| {
                    AppError::Unreachable(format!(
                        "cannot list the MCP tools at {}: {e}",
                        request.url
                    ))
                })?;
            card.validate()
                .map_err(|e| AppError::Invalid(format!("invalid agent card: {e}")))?;
            let card = save(&app, card).await?;
            return Ok((StatusCode::CREATED, Json(card)));
        }
        Some(other) => {
            return Err(AppError::Invalid(format!(
                "protocol must be \"a2a\" or \"mcp\", got {other:?}"
            )));
        }
    }
    let value = http.fetch_card(&request.url).await.map_err(|e| {
        AppError::Unreachable(format!(
            "cannot read the agent card at {}: {e}",
            request.url
        ))
    })?;
    let card =
        parse_card(value).map_err(|e| AppError::Invalid(format!("invalid agent card: {e}")))?;
    let card = save(&app, card).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

/// Removes a card: 204, or 404 if there was none.
pub async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let deleted = app
        .engine
        .store()
        .delete_agent(&id)
        .await
        .map_err(EngineError::from)?;
    let removed = app
        .engine
        .services()
        .directory
        .remove(&id)
        .map_err(|e| AppError::Engine(EngineError::Aborted(e.to_string())))?;
    if deleted || removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound(format!("unknown agent {id}")))
    }
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

/// One search hit.
#[derive(Debug, Serialize)]
pub struct SearchHit {
    pub relevance: f32,
    pub agent: Arc<AgentCard>,
}

/// Full-text search with filters, best first.
pub async fn search(
    State(app): State<AppState>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<SearchHit>>, AppError> {
    let Query(query) =
        query.map_err(|e| AppError::Invalid(format!("invalid search: {}", e.body_text())))?;
    let capabilities: Vec<String> = query
        .capabilities
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let hits = app
        .engine
        .services()
        .directory
        .find(
            &query.q,
            &capabilities,
            query.max_price,
            query.min_rating,
            query.limit.unwrap_or(20).clamp(1, 200),
        )
        .map_err(|e| AppError::Engine(EngineError::Aborted(e.to_string())))?;
    Ok(Json(
        hits.into_iter()
            .map(|(agent, relevance)| SearchHit { relevance, agent })
            .collect(),
    ))
}

/// Body of `POST /api/agents/{id}/rate`.
#[derive(Debug, Deserialize)]
pub struct RateRequest {
    pub rating: f64,
}

/// Adds a rating to the card's running mean.
pub async fn rate(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RateRequest>,
) -> Result<Json<AgentCard>, AppError> {
    if !(0.0..=5.0).contains(&request.rating) {
        return Err(AppError::Invalid(format!(
            "rating must be between 0 and 5, got {}",
            request.rating
        )));
    }
    // One rating at a time in this process, so no update is lost between read and write.
    let _guard = app.rating_lock.lock().await;
    let mut card = app
        .engine
        .services()
        .directory
        .get(&id)
        .ok_or_else(|| AppError::NotFound(format!("unknown agent {id}")))?
        .as_ref()
        .clone();
    // A rating given at registration counts as the first one.
    if card.rating_count == 0 && card.rating > 0.0 {
        card.rating_count = 1;
    }
    let count = card.rating_count as f64;
    card.rating = ((card.rating * count + request.rating) / (count + 1.0)).clamp(0.0, 5.0);
    card.rating_count += 1;
    Ok(Json(save(&app, card).await?))
}
