//! `POST /api/chat`, `POST /api/chat/continue`, `GET /api/chat/status/{thread_id}`: the
//! original system's conversation API, field for field.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::{AppError, AppState, JsonBody};
use crate::agents::policy::UrlPolicy;
use crate::engine::StartRequest;
use crate::engine::view::{TaskAgentPair, ThreadView};
use crate::state::{TaskId, ThreadStatus, WebhookUrl};

/// Default of `max_results`: how many ranked agents a task shows.
pub const DEFAULT_MAX_RESULTS: i64 = 5;
/// Bounds of `max_results`.
pub const MAX_RESULTS_RANGE: std::ops::RangeInclusive<i64> = 1..=50;

/// Body of `POST /api/chat`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub prompt: String,
    pub max_results: Option<i64>,
    pub thread_id: Option<String>,
    /// Where to POST the thread's response when it pauses or finishes (see the README's
    /// Webhooks); a new turn without one keeps the thread's.
    pub webhook: Option<String>,
}

/// Body of `POST /api/chat/continue`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContinueRequest {
    pub response: String,
    pub thread_id: String,
    /// Which question this answers; without it, the pending one.
    pub question_id: Option<String>,
}

/// The answer to start and continue (the original `ProcessResponse`, plus `question_id`).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessResponse {
    pub thread_id: String,
    pub status: ThreadStatus,
    pub requires_user_input: bool,
    pub question_for_user: Option<String>,
    pub question_id: Option<String>,
    /// Every question waiting for the user, oldest first (agents of one batch may ask several).
    pub pending_questions: Vec<PendingQuestion>,
    pub task_agent_pairs: Vec<TaskAgentPair>,
    pub final_response: Option<String>,
    pub error_message: Option<String>,
}

/// A question waiting for the user; answer it with `question_id` in `/api/chat/continue`.
#[derive(Debug, Clone, Serialize)]
pub struct PendingQuestion {
    pub question_id: String,
    pub question: String,
    pub task_id: Option<TaskId>,
}

impl From<ThreadView> for ProcessResponse {
    fn from(view: ThreadView) -> Self {
        ProcessResponse {
            requires_user_input: view.status == ThreadStatus::PendingUserInput,
            question_for_user: view.questions.first().map(|q| q.text.clone()),
            question_id: view.questions.first().map(|q| q.id.clone()),
            pending_questions: view
                .questions
                .iter()
                .map(|q| PendingQuestion {
                    question_id: q.id.clone(),
                    question: q.text.clone(),
                    task_id: q.task_id.clone(),
                })
                .collect(),
            thread_id: view.thread_id,
            status: view.status,
            task_agent_pairs: view.task_agent_pairs,
            final_response: view.final_response,
            error_message: view.error,
        }
    }
}

/// The answer to `GET /api/chat/status/{thread_id}` (the original `ConversationStatus`).
#[derive(Debug, Clone, Serialize)]
pub struct ConversationStatus {
    pub thread_id: String,
    pub status: ThreadStatus,
    pub question_for_user: Option<String>,
    pub final_response: Option<String>,
    pub task_agent_pairs: Vec<TaskAgentPair>,
    pub error_message: Option<String>,
    pub requires_user_input: bool,
    pub question_id: Option<String>,
    pub pending_questions: Vec<PendingQuestion>,
}

impl From<ThreadView> for ConversationStatus {
    fn from(view: ThreadView) -> Self {
        let response = ProcessResponse::from(view);
        ConversationStatus {
            thread_id: response.thread_id,
            status: response.status,
            question_for_user: response.question_for_user,
            final_response: response.final_response,
            task_agent_pairs: response.task_agent_pairs,
            error_message: response.error_message,
            requires_user_input: response.requires_user_input,
            question_id: response.question_id,
            pending_questions: response.pending_questions,
        }
    }
}

/// A thread id a client may choose: 1-128 characters of `[A-Za-z0-9._:-]`.
pub fn validate_thread_id(id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid(
            "thread_id must be 1-128 characters of [A-Za-z0-9._:-]".to_owned(),
        ))
    }
}

/// A start request's webhook, checked at once: an absolute http(s) URL with a host, allowed by
/// the outbound URL policy agents are held to (`--agent-url-allow`). Refused: 422 naming the
/// field, before any thread is started.
pub fn checked_webhook(raw: &str, policy: &UrlPolicy) -> Result<WebhookUrl, AppError> {
    let invalid = |why: String| AppError::Invalid(format!("webhook: {why}"));
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| invalid(format!("{raw:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!(
            "{raw:?} is not an http(s) URL with a host"
        )));
    }
    policy
        .check(url.as_str())
        .map_err(|refused| invalid(refused.to_string()))?;
    Ok(WebhookUrl::checked(url.into()))
}

impl ChatRequest {
    /// Checks the request and turns it into the engine's terms; `policy` judges the webhook.
    pub fn validate(self, policy: &UrlPolicy) -> Result<StartRequest, AppError> {
        if self.prompt.trim().is_empty() {
            return Err(AppError::Invalid("prompt must not be blank".to_owned()));
        }
        let max_results = self.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
        if !MAX_RESULTS_RANGE.contains(&max_results) {
            return Err(AppError::Invalid(format!(
                "max_results must be between {} and {}, got {max_results}",
                MAX_RESULTS_RANGE.start(),
                MAX_RESULTS_RANGE.end()
            )));
        }
        if let Some(id) = &self.thread_id {
            validate_thread_id(id)?;
        }
        let webhook = self
            .webhook
            .as_deref()
            .map(|raw| checked_webhook(raw, policy))
            .transpose()?;
        Ok(StartRequest {
            thread_id: self.thread_id,
            prompt: self.prompt,
            max_results: usize::try_from(max_results).unwrap_or(5),
            opened_by: None,
            webhook,
        })
    }
}

impl ContinueRequest {
    /// Checks the answer before it reaches the engine.
    pub fn validate(&self) -> Result<(), AppError> {
        if self.response.trim().is_empty() {
            return Err(AppError::Invalid("response must not be blank".to_owned()));
        }
        validate_thread_id(&self.thread_id)
    }
}

/// Starts a conversation (or a new turn of a finished thread).
pub async fn start(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Json<ProcessResponse>, AppError> {
    let request = request.validate(app.engine.services().agents.http().policy())?;
    Ok(Json(app.engine.start(request).await?.into()))
}

/// Answers the pending question of a thread.
pub async fn answer(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<ContinueRequest>,
) -> Result<Json<ProcessResponse>, AppError> {
    request.validate()?;
    let view = app
        .engine
        .answer(
            &request.thread_id,
            &request.response,
            request.question_id.as_deref(),
        )
        .await?;
    Ok(Json(view.into()))
}

/// Where a thread stands.
pub async fn status(
    State(app): State<AppState>,
    Path(thread_id): Path<String>,
) -> Result<Json<ConversationStatus>, AppError> {
    Ok(Json(app.engine.status(&thread_id).await?.into()))
}
