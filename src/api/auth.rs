//! Authentication at the edge: with `--api-keys-file`, every request but the open routes (health,
//! metrics, docs, the console's page and assets, Baton's agent card) must carry
//! `Authorization: Bearer KEY` (or a token minted by `POST /api/auth/token`); the streaming routes
//! also take that token as `?access_token=`, since browsers cannot give an `EventSource` or a
//! WebSocket a header. The request then carries its [`Access`] as an extension, which handlers
//! read to see only their caller's threads. Without keys every request gets `Access::Open`.

use axum::Json;
use axum::extract::{Extension, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use std::sync::Arc;

use super::error::ErrorBody;
use super::{AppError, AppState};
use crate::access::{Access, Role};
use crate::auth::limits::{Held, Permit, Refused};
use crate::store::now_ms;

/// The query parameter a streaming route takes a token in.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// What a route asks of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Anyone: health, docs, the console's page and assets, Baton's agent card.
    Open,
    /// `/metrics`: its own token (`--metrics-token`) if one is set, else anyone.
    Metrics,
    /// A key or token in the `Authorization` header.
    Header,
    /// The header, or a token in `?access_token=` (SSE, WebSocket, A2A).
    HeaderOrQuery,
}

/// The guard of `path`. Unknown paths need a key too, so a caller without one learns nothing
/// about which routes exist.
fn guard_of(path: &str) -> Guard {
    match path {
        "/api/health"
        | "/health"
        | "/docs"
        | "/openapi.json"
        | "/"
        | "/.well-known/agent-card.json" => Guard::Open,
        "/metrics" => Guard::Metrics,
        "/ws/chat" | super::a2a::RPC_PATH => Guard::HeaderOrQuery,
        _ if path.starts_with("/console/") => Guard::Open,
        _ if path.starts_with("/api/threads/") && path.ends_with("/events") => Guard::HeaderOrQuery,
        _ => Guard::Header,
    }
}

/// Decides who the request is (or refuses it with 401) and hands it on with its [`Access`].
pub async fn authenticate(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let guard = guard_of(request.uri().path());
    if guard == Guard::Metrics {
        if let Some(token) = &app.metrics_token {
            let accepted = bearer(&request).is_some_and(|presented| token.accepts(presented));
            if !accepted {
                return unauthorized("/metrics needs its token: Authorization: Bearer TOKEN");
            }
        }
        return next.run(request).await;
    }
    let access = match &app.auth {
        None => Access::Open,
        Some(_) if guard == Guard::Open => Access::Open,
        Some(auth) => {
            let now = now_ms();
            let from_header = bearer(&request)
                .and_then(|presented| auth.key(presented).or_else(|| auth.token(presented, now)));
            let from_query = || {
                (guard == Guard::HeaderOrQuery)
                    .then(|| query_token(&request))
                    .flatten()
                    .and_then(|presented| auth.token(presented, now))
            };
            match from_header.or_else(from_query) {
                Some(access) => access,
                None if bearer(&request).is_some() || query_token(&request).is_some() => {
                    return unauthorized("the API key or access token is not valid");
                }
                None => {
                    return unauthorized(
                        "this server needs an API key: send Authorization: Bearer KEY",
                    );
                }
            }
        }
    };
    if changes_directory(request.method(), request.uri().path()) && !access.may_change_directory() {
        return AppError::Forbidden("changing the agent directory needs an admin key".to_owned())
            .into_response();
    }
    let permit = match (&app.limits, &access) {
        (Some(limits), Access::Key { owner, .. }) => {
            if let Err(refused) = limits.request(owner) {
                return too_many(refused);
            }
            match held_by(request.method(), request.uri().path()) {
                Some(held) => match limits.acquire(owner, held) {
                    Ok(permit) => Some(Arc::new(permit)),
                    Err(refused) => return too_many(refused),
                },
                None => None,
            }
        }
        _ => None,
    };
    if let Some(permit) = &permit {
        request.extensions_mut().insert(Slot(permit.clone()));
    }
    request.extensions_mut().insert(access);
    // A run's slot is held for the request; a stream's handler keeps its own clone for as long
    // as the stream lives.
    let response = next.run(request).await;
    drop(permit);
    response
}

/// A run or stream slot of the caller's key, for a handler that outlives its response (a
/// stream) to keep until it ends.
#[derive(Clone)]
pub struct Slot(pub Arc<Permit>);

fn too_many(refused: Refused) -> Response {
    AppError::TooMany {
        message: refused.message,
        retry_after: refused.retry_after,
    }
    .into_response()
}

/// Which counted slot a request takes, if any: runs (start, answer, fork, A2A) and streams.
fn held_by(method: &Method, path: &str) -> Option<Held> {
    match *method {
        Method::POST
            if path == "/api/chat"
                || path == "/api/chat/continue"
                || path == super::a2a::RPC_PATH
                || (path.starts_with("/api/threads/") && path.ends_with("/fork")) =>
        {
            Some(Held::Run)
        }
        Method::GET
            if path == "/ws/chat"
                || (path.starts_with("/api/threads/") && path.ends_with("/events")) =>
        {
            Some(Held::Stream)
        }
        _ => None,
    }
}

/// Whether the request registers, discovers, rates or removes an agent: an admin's changes.
/// Decided here, before the body is read, so a user key learns 403 whatever it sent.
fn changes_directory(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/agents") else {
        return false;
    };
    match *method {
        // `POST /api/agents`, `/api/agents/discover`, `/api/agents/{id}/rate`.
        Method::POST => rest.is_empty() || rest == "/discover" || rest.ends_with("/rate"),
        Method::DELETE => rest.starts_with('/'),
        _ => false,
    }
}

fn unauthorized(message: &str) -> Response {
    AppError::Unauthorized(message.to_owned()).into_response()
}

/// The credential of an `Authorization: Bearer …` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

/// The `access_token` query parameter, if there is one. Tokens are hex and `.`, which need no
/// percent-decoding; anything encoded is no token of ours.
fn query_token(request: &Request) -> Option<&str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == ACCESS_TOKEN_PARAM && !value.is_empty()).then_some(value)
    })
}

/// A minted access token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"access_token": "757365723a616c6963653a31373634313233343536373839.5c1f…", "token_type": "Bearer", "expires_at": 1764123456789u64, "owner": "alice", "role": "user"}))]
pub struct TokenResponse {
    /// Give it as `?access_token=` to `/ws/chat`, `/api/threads/{id}/events` or `/a2a`, or as
    /// a bearer header; accepted by this server process only, until `expires_at`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
    /// Whose key minted it.
    pub owner: String,
    /// `user` or `admin`.
    pub role: Role,
}

/// Mints a short-lived token naming the caller's key, for what cannot send a header (a browser's
/// `EventSource` or WebSocket). 404 when authentication is off: there is nothing to sign in as.
#[utoipa::path(
    post,
    path = "/api/auth/token",
    operation_id = "mint_access_token",
    tag = "auth",
    responses(
        (status = 200, description = "A token for a few minutes", body = TokenResponse),
        (status = 401, description = "No key, or a key the server does not accept", body = ErrorBody),
        (status = 404, description = "Authentication is off on this server", body = ErrorBody),
    )
)]
pub async fn token(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
) -> Result<Json<TokenResponse>, AppError> {
    let minted = app
        .auth
        .as_ref()
        .and_then(|auth| auth.mint(&access, now_ms()));
    let (Some(minted), Access::Key { owner, role }) = (minted, access) else {
        return Err(AppError::NotFound(
            "authentication is off on this server: no token is needed".to_owned(),
        ));
    };
    Ok(Json(TokenResponse {
        access_token: minted.token,
        token_type: "Bearer",
        expires_at: minted.expires_at,
        owner: owner.to_string(),
        role,
    }))
}
