//! The agent directory over HTTP: register a card (A2A or original REST format), discover an A2A
//! agent or an MCP server by URL, list, get, delete, search, rate. Each handler parses the
//! request, calls `AgentDirectory` and lets `AppError` pick the status.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::paging::{self, parse_limit};
use super::{AppError, AppState, JsonBody};
use crate::card::AgentCard;
use crate::directory::service::{AgentQuery, DEFAULT_PAGE, DiscoverRequest, MAX_PAGE, SearchHit};

/// The response header that carries the cursor of the next page (absent on the last page).
pub const NEXT_CURSOR: &str = "x-next-cursor";

/// The query of `GET /api/agents`, as text: each value is checked here, so a bad one is a 422
/// naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Cards per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `X-Next-Cursor` header of the page before.
    pub cursor: Option<String>,
}

/// The cards of the directory by id, a page at a time.
///
/// The body is the same bare array of cards it always was (the demo agents included, unless
/// the server runs with `--no-demo-agents`); when more cards follow, the `X-Next-Cursor`
/// header holds the cursor for the next page and `Link` its URL (`rel="next"`). Without
/// `limit`, a page has 100 cards; at most 1000.
#[utoipa::path(
    get,
    path = "/api/agents",
    operation_id = "agents_list",
    tag = "agents",
    params(ListParams),
    responses(
        (status = 200, description = "A page of cards, by id", body = Vec<AgentCard>,
         headers(
            ("x-next-cursor" = String, description = "Pass as `cursor` for the next page; absent on the last page"),
            ("link" = String, description = "The next page's URL, `rel=\"next\"`; absent on the last page"),
         )),
        (status = 400, description = "The query string does not parse", body = ErrorBody),
        (status = 422, description = "A bad `limit` or `cursor`", body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, AppError> {
    let limit = parse_limit(params.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let after = params
        .cursor
        .map(|c| decode_cursor(&c, CursorKind::After))
        .transpose()?;
    let page = app.agents.page(after.as_deref(), limit);
    let mut response = Json(page.cards).into_response();
    if let Some(after) = page.next_after {
        let cursor = encode_cursor(CursorKind::After, &after);
        let link = format!("</api/agents?limit={limit}&cursor={cursor}>; rel=\"next\"");
        for (name, value) in [(NEXT_CURSOR, cursor), ("link", link)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
    }
    Ok(response)
}

/// What a cursor continues: the id list (after an id) or a search (after so many hits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorKind {
    After,
    Skip,
}

impl CursorKind {
    fn prefix(self) -> &'static str {
        match self {
            CursorKind::After => "a:",
            CursorKind::Skip => "s:",
        }
    }
}

/// A cursor as the client sees it: its kind and position, opaque.
fn encode_cursor(kind: CursorKind, position: &str) -> String {
    paging::encode_cursor(&format!("{}{position}", kind.prefix()))
}

/// Reads back a cursor of `kind` that `encode_cursor` wrote; anything else is a 422.
fn decode_cursor(text: &str, kind: CursorKind) -> Result<String, AppError> {
    let bad =
        || AppError::Invalid("cursor is not one this server gave (use X-Next-Cursor)".to_owned());
    paging::decode_cursor(text, "X-Next-Cursor")?
        .strip_prefix(kind.prefix())
        .map(str::to_owned)
        .ok_or_else(bad)
}

/// One card.
///
/// As stored: ratings and the original system's fields included.
#[utoipa::path(
    get,
    path = "/api/agents/{id}",
    operation_id = "agents_get",
    tag = "agents",
    params(("id" = String, Path, description = "The card's directory id", example = "demo.weather")),
    responses(
        (status = 200, description = "The card", body = AgentCard),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
    )
)]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Arc<AgentCard>>, AppError> {
    Ok(Json(app.agents.get(&id)?))
}

/// Registers (or replaces) a card: 201 with the card as stored.
///
/// Takes an A2A Agent Card or an original-system REST card; the stored card is Baton's form of
/// either.
#[utoipa::path(
    post,
    path = "/api/agents",
    operation_id = "agents_register",
    tag = "agents",
    request_body(
        content = Object,
        description = "An A2A Agent Card (`name`, `description`, `url`, `skills`, …) or an original-system REST card (`id`, `name`, `endpoints`, …)",
        example = json!({"id": "echo", "name": "Echo", "description": "Repeats what it is told",
                         "url": "http://127.0.0.1:9000/", "skills": [{"id": "echo", "name": "Echo",
                         "description": "Repeats the text", "tags": ["echo"]}]})
    ),
    responses(
        (status = 201, description = "The card as stored", body = AgentCard,
        links(
            ("get" = (operation_id = "agents_get", parameters(("id" = "$response.body#/id")))),
            ("rate" = (operation_id = "agents_rate", parameters(("id" = "$response.body#/id")))),
            ("remove" = (operation_id = "agents_remove", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "Another write to the card won the race", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "Not a card, a card that breaks a rule, or a URL `--agent-url-allow` refuses", body = ErrorBody),
        (status = 500, description = "The directory's index failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn register(
    State(app): State<AppState>,
    JsonBody(card): JsonBody<Value>,
) -> Result<(StatusCode, Json<AgentCard>), AppError> {
    let card = app.agents.register(card).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

/// Reads an A2A agent's card (or an MCP server's tools) and registers it: 201 with the card.
///
/// So an agent is added by its URL alone; the URL policy is checked before anything is fetched.
#[utoipa::path(
    post,
    path = "/api/agents/discover",
    operation_id = "agents_discover",
    tag = "agents",
    request_body = DiscoverRequest,
    responses(
        (status = 201, description = "The card as stored", body = AgentCard),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 409, description = "Another write to the card won the race", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "Wrong shape, a URL `--agent-url-allow` refuses, a URL that serves no readable card (or MCP tool list), or a card that breaks a rule", body = ErrorBody),
        (status = 500, description = "The directory's index failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn discover(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<DiscoverRequest>,
) -> Result<(StatusCode, Json<AgentCard>), AppError> {
    let card = app.agents.discover(&request).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

/// Removes a card: 204, or 404 if there was none.
///
/// Threads already planned with the agent keep their copy of its card.
#[utoipa::path(
    delete,
    path = "/api/agents/{id}",
    operation_id = "agents_remove",
    tag = "agents",
    params(("id" = String, Path, description = "The card's directory id", example = "demo.weather")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "Another write to the card won the race", body = ErrorBody),
        (status = 500, description = "The directory's index failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    app.agents.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/agents/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Free text; blank lists every card (filtered) in ranking order.
    #[serde(default)]
    pub q: String,
    /// Comma-separated skill tags; a card needs one of them.
    #[serde(default)]
    pub capabilities: String,
    /// Highest `price_per_call_usd` a card may have.
    pub max_price: Option<f64>,
    /// Lowest `rating` a card may have.
    pub min_rating: Option<f64>,
    /// How many hits (default 20, kept within 1..=200).
    pub limit: Option<usize>,
    /// The `X-Next-Cursor` header of the page before.
    pub cursor: Option<String>,
}

impl TryFrom<SearchQuery> for AgentQuery {
    type Error = AppError;

    fn try_from(query: SearchQuery) -> Result<Self, AppError> {
        let skip = match &query.cursor {
            None => 0,
            Some(cursor) => decode_cursor(cursor, CursorKind::Skip)?
                .parse::<usize>()
                .map_err(|_| AppError::Invalid("cursor is not one this server gave".into()))?,
        };
        Ok(AgentQuery {
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
            skip,
        })
    }
}

/// Full-text search with filters, best first.
///
/// The same index and ranking the planner uses to find agents for a task. The body is the
/// bare array of hits it always was; when more hits follow, the `X-Next-Cursor` header holds
/// the cursor for the next page (pass it with the same query). A text search ranks at most
/// the 50 most relevant cards.
#[utoipa::path(
    get,
    path = "/api/agents/search",
    operation_id = "agents_search",
    tag = "agents",
    params(SearchQuery),
    responses(
        (status = 200, description = "The hits, most relevant first", body = Vec<SearchHit>,
         headers(
            ("x-next-cursor" = String, description = "Pass as `cursor` (with the same query) for the next page; absent on the last page"),
         )),
        (status = 422, description = "A query parameter does not parse, or a bad `cursor`", body = ErrorBody),
        (status = 500, description = "The directory's index failed", body = ErrorBody),
    )
)]
pub async fn search(
    State(app): State<AppState>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(query) =
        query.map_err(|e| AppError::Invalid(format!("invalid search: {}", e.body_text())))?;
    let page = app.agents.search(&query.try_into()?)?;
    let mut response = Json(page.hits).into_response();
    if let Some(skip) = page.next_skip
        && let Ok(value) =
            HeaderValue::from_str(&encode_cursor(CursorKind::Skip, &skip.to_string()))
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(NEXT_CURSOR), value);
    }
    Ok(response)
}

/// Body of `POST /api/agents/{id}/rate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RateRequest {
    /// From 0 to 5.
    #[schema(minimum = 0, maximum = 5)]
    pub rating: f64,
}

/// Adds a rating to the card's running mean: 200 with the card as stored.
///
/// Ratings rank agents: a better-rated agent is tried first among equals.
#[utoipa::path(
    post,
    path = "/api/agents/{id}/rate",
    operation_id = "agents_rate",
    tag = "agents",
    params(("id" = String, Path, description = "The card's directory id", example = "demo.weather")),
    request_body = RateRequest,
    responses(
        (status = 200, description = "The card with its new mean rating", body = AgentCard),
        (status = 400, description = "The body is not JSON, or the path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 409, description = "Another write to the card won the race", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "Wrong shape, or a rating outside 0..=5", body = ErrorBody),
        (status = 500, description = "The directory's index failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn rate(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RateRequest>,
) -> Result<Json<AgentCard>, AppError> {
    Ok(Json(app.agents.rate(&id, request.rating).await?))
}
