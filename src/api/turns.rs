//! `GET /api/threads/{thread_id}/turns?from=&limit=`: a thread's earlier turns, a page at a time,
//! from the store's turn log. A checkpoint's state carries only their count (`earlier_turns`),
//! so this is where a client reads what was asked and answered before the current turn.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::paging::parse_limit;
use super::{AppError, AppState};
use crate::access::Access;
use crate::store::LoggedTurn;

/// Turns per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 200;

/// The query, as text: each value is checked here, so a bad one is a 422 naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TurnParams {
    /// The first turn's position, from 0 (default 0).
    #[param(value_type = Option<u64>, minimum = 0)]
    pub from: Option<String>,
    /// Turns per page, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

impl TurnParams {
    /// `(from, limit)`, or a 422 naming the parameter at fault.
    fn validate(self) -> Result<(usize, usize), AppError> {
        let from = match self.from {
            None => 0,
            Some(text) => text.parse::<usize>().map_err(|_| {
                AppError::Invalid(format!("from must be a non-negative integer, got {text:?}"))
            })?,
        };
        let limit = parse_limit(self.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
        Ok((from, limit))
    }
}

/// A page of a thread's earlier turns.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnPage {
    pub thread_id: String,
    /// How many earlier turns the thread has (the current turn is number `earlier_turns`).
    pub earlier_turns: usize,
    /// Oldest first, each with its position (`turn`), prompt, answers and final response.
    pub turns: Vec<LoggedTurn>,
    /// Pass as `from` for the next page; `null` on the last page.
    pub next_from: Option<usize>,
}

/// A thread's earlier turns, oldest first, a page at a time.
///
/// The current turn is the thread's checkpoint (or `/api/chat/status`); these are the turns
/// before it, as they finished.
#[utoipa::path(
    get,
    path = "/api/threads/{thread_id}/turns",
    operation_id = "thread_turns",
    tag = "threads",
    params(("thread_id" = String, Path, description = "The thread"), TurnParams),
    responses(
        (status = 200, description = "A page of earlier turns", body = TurnPage),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 422, description = "`from` or `limit` is not a number in range", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn turns(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
    Query(params): Query<TurnParams>,
) -> Result<Json<TurnPage>, AppError> {
    let (from, limit) = params.validate()?;
    let head = app.engine.visible(&thread_id, &access).await?;
    let earlier_turns = head.state.turn_index();
    let end = from.saturating_add(limit).min(earlier_turns);
    let turns = app.engine.earlier_turns(&head.state, from..end).await?;
    Ok(Json(TurnPage {
        thread_id,
        earlier_turns,
        turns,
        next_from: (end < earlier_turns).then_some(end),
    }))
}
