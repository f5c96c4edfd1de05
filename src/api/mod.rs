//! The HTTP and WebSocket interface: the original system's routes and shapes, plus additions.
//! Every error is JSON: `{"error": "..."}` (with the original's `status`/`error_message` beside).

pub mod a2a;
pub mod agents;
pub mod auth;
pub mod cancel;
pub mod chat;
pub mod console;
pub mod error;
pub mod events;
pub mod fork;
pub mod health;
pub mod input_limits;
pub mod live;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod paging;
pub mod threads;
pub mod turns;
pub mod webhooks;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::directory::AgentDirectory;
use crate::engine::Engine;
pub use error::{AppError, JsonBody};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// Registering, discovering, rating, removing and searching agents.
    pub agents: std::sync::Arc<AgentDirectory>,
    /// Largest request body accepted (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// Threads one WebSocket may watch at once (`--ws-max-watches`).
    pub ws_max_watches: usize,
    /// Prompt and answer lengths, WebSocket message size and rate.
    pub input: input_limits::InputLimits,
    /// The URL others reach this server at (`--public-url`), written into Baton's A2A card;
    /// `None`: the host each card request was sent to.
    pub public_url: Option<String>,
    /// The keys and token signer (`--api-keys-file`); `None`: authentication is off and every
    /// request has `Access::Open`.
    pub auth: Option<std::sync::Arc<crate::auth::Authenticator>>,
    /// `--metrics-token`: what `/metrics` asks for, if set.
    pub metrics_token: Option<crate::auth::MetricsToken>,
    /// Per-key limits (`--key-*`); `None` when authentication is off.
    pub limits: Option<std::sync::Arc<crate::auth::limits::KeyLimits>>,
}

/// Every route with its limits (body size, fallback), apart from `main` so that tests serve the
/// same router on a loopback port.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let observed = state.clone();
    Router::new()
        .route("/api/chat", post(chat::start))
        .route("/api/chat/continue", post(chat::answer))
        .route("/api/chat/status/{thread_id}", get(chat::status))
        .route("/api/chat/{thread_id}", delete(threads::delete_chat))
        .route("/api/threads", get(threads::list))
        .route("/api/threads/{thread_id}", delete(threads::delete))
        .route("/api/threads/{thread_id}/fork", post(fork::fork))
        .route(
            "/api/threads/{thread_id}/checkpoint",
            get(threads::checkpoint),
        )
        .route("/api/threads/{thread_id}/history", get(threads::history))
        .route("/api/threads/{thread_id}/turns", get(turns::turns))
        .route("/api/threads/{thread_id}/cancel", post(cancel::cancel))
        .route("/api/threads/{thread_id}/events", get(events::events))
        .route("/api/threads/{thread_id}/webhooks", get(webhooks::webhooks))
        .route(
            "/api/threads/{thread_id}/checkpoints/{version}",
            get(threads::checkpoint_at),
        )
        .route("/api/agents", get(agents::list).post(agents::register))
        .route("/api/agents/discover", post(agents::discover))
        .route("/api/agents/search", get(agents::search))
        .route("/api/agents/{id}", get(agents::get).delete(agents::remove))
        .route("/api/agents/{id}/rate", post(agents::rate))
        .route("/api/auth/token", post(auth::token))
        .route("/api/health", get(health::health))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/ws/chat", get(ws::upgrade))
        .route("/.well-known/agent-card.json", get(a2a::card))
        .route(a2a::RPC_PATH, post(a2a::rpc))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs))
        // The web console: its page and its assets (not API operations, so not in the OpenAPI
        // document).
        .route("/", get(console::index))
        .route("/console/{asset}", get(console::asset))
        .fallback(error::not_found)
        // Inside `observe`, so a refused request is counted and carries its request id.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        // Outside `json_errors`, so it sees the status the client gets; inside the router, so
        // `MatchedPath` names the route.
        .layer(axum::middleware::from_fn_with_state(
            observed,
            observe::observe,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
