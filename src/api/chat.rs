//! `POST /api/chat`, `POST /api/chat/continue`, `GET /api/chat/status/{thread_id}`: the
//! original system's conversation API, field for field.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::input_limits::InputLimits;
use super::{AppError, AppState, JsonBody};
use crate::access::Access;
use crate::agents::policy::UrlPolicy;
use crate::engine::StartRequest;
use crate::engine::timeline::Asker;
use crate::engine::view::{TaskAgentPair, ThreadView};
use crate::state::{TaskId, ThreadStatus, WebhookUrl};

/// Default of `max_results`: how many ranked agents a task shows.
pub const DEFAULT_MAX_RESULTS: i64 = 5;
/// Bounds of `max_results`.
pub const MAX_RESULTS_RANGE: std::ops::RangeInclusive<i64> = 1..=50;

/// Body of `POST /api/chat`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"prompt": "What is the weather in Oslo", "max_results": 2, "thread_id": "trip-42"}))]
pub struct ChatRequest {
    /// The request, in plain words; must not be blank.
    #[schema(pattern = "\\S")]
    pub prompt: String,
    /// How many ranked agents each task shows (primary and fallbacks); default 5.
    #[schema(minimum = 1, maximum = 50)]
    pub max_results: Option<i64>,
    /// Names the thread: a new one, or a finished one that gets a new turn (earlier turns are
    /// context). Without it the server picks an id.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub thread_id: Option<String>,
    /// Where to POST the thread's response when it pauses or finishes (see the README's
    /// Webhooks); a new turn without one keeps the thread's.
    pub webhook: Option<String>,
}

/// Body of `POST /api/chat/continue`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"thread_id": "trip-42", "response": "100 USD to EUR"}))]
pub struct ContinueRequest {
    /// The user's answer; must not be blank.
    #[schema(pattern = "\\S")]
    pub response: String,
    /// The thread waiting for the answer.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub thread_id: String,
    /// Which question this answers; without it, the pending one.
    pub question_id: Option<String>,
}

/// The answer to start and continue (the original `ProcessResponse`, plus `question_id`).
#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingQuestion {
    pub question_id: String,
    pub question: String,
    pub task_id: Option<TaskId>,
    /// Who asks (`asked_by`: `planner`, or `agent` with its `agent_id`), as in the
    /// `question_asked` event: the answer goes to them.
    #[serde(flatten)]
    pub asked_by: Asker,
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
                    asked_by: Asker::from(&q.kind),
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
#[derive(Debug, Clone, Serialize, ToSchema)]
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
    pub fn validate(
        self,
        policy: &UrlPolicy,
        limits: &InputLimits,
    ) -> Result<StartRequest, AppError> {
        if self.prompt.trim().is_empty() {
            return Err(AppError::Invalid("prompt must not be blank".to_owned()));
        }
        limits.check_prompt("prompt", &self.prompt)?;
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
            access: Access::Open,
        })
    }
}

impl ContinueRequest {
    /// Checks the answer before it reaches the engine.
    pub fn validate(&self, limits: &InputLimits) -> Result<(), AppError> {
        if self.response.trim().is_empty() {
            return Err(AppError::Invalid("response must not be blank".to_owned()));
        }
        limits.check_answer("response", &self.response)?;
        validate_thread_id(&self.thread_id)
    }
}

/// Starts a conversation (or a new turn of a finished thread).
///
/// Runs the request until it finishes or needs the user: the answer is either the final
/// response or the question to answer with `/api/chat/continue`.
#[utoipa::path(
    post,
    path = "/api/chat",
    operation_id = "chat",
    tag = "conversation",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The thread as the run left it: completed, failed, or waiting for the user", body = ProcessResponse,
        links(
            ("status" = (operation_id = "chat_status", parameters(("thread_id" = "$response.body#/thread_id")))),
            ("answer" = (operation_id = "chat_continue", request_body = json!({"thread_id": "$response.body#/thread_id", "response": "I want to analyze sales data"}))),
            ("cancel" = (operation_id = "thread_cancel", parameters(("thread_id" = "$response.body#/thread_id")))),
            ("checkpoint" = (operation_id = "thread_checkpoint", parameters(("thread_id" = "$response.body#/thread_id")))),
            ("history" = (operation_id = "thread_history", parameters(("thread_id" = "$response.body#/thread_id")))),
        )),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "The named thread belongs to another API key (to it, the thread does not exist)", body = ErrorBody),
        (status = 409, description = "The named thread is waiting for an answer or running", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "Wrong shape, blank prompt or one longer than `--max-prompt-chars`, `max_results` outside 1..=50, a malformed `thread_id`, or a `webhook` that is not an http(s) URL the URL policy allows", body = ErrorBody),
        (status = 500, description = "The run was aborted", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn start(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Result<Json<ProcessResponse>, AppError> {
    let request = StartRequest {
        access,
        ..request.validate(app.engine.services().agents.http().policy(), &app.input)?
    };
    Ok(Json(app.engine.start(request).await?.into()))
}

/// Answers the pending question of a thread.
///
/// Once every pending question is answered the run goes on, and the answer is where it stopped
/// next; while others are pending the thread keeps waiting.
#[utoipa::path(
    post,
    path = "/api/chat/continue",
    operation_id = "chat_continue",
    tag = "conversation",
    request_body = ContinueRequest,
    responses(
        (status = 200, description = "The thread as the run left it", body = ProcessResponse),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 409, description = "The thread is not waiting for an answer, has no such question, or another answer won the race", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "Wrong shape, blank response or one longer than `--max-answer-chars`, or a malformed `thread_id`", body = ErrorBody),
        (status = 500, description = "The run was aborted", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn answer(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(request): JsonBody<ContinueRequest>,
) -> Result<Json<ProcessResponse>, AppError> {
    request.validate(&app.input)?;
    app.engine
        .check_visible(&request.thread_id, &access)
        .await?;
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
///
/// Read from the latest checkpoint, so every process answers the same, whichever runs the thread.
#[utoipa::path(
    get,
    path = "/api/chat/status/{thread_id}",
    operation_id = "chat_status",
    tag = "conversation",
    params(("thread_id" = String, Path, description = "The thread")),
    responses(
        (status = 200, description = "The thread as it stands", body = ConversationStatus),
        (status = 400, description = "The path is not valid UTF-8 once decoded", body = ErrorBody),
        (status = 404, description = "No such thread", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn status(
    State(app): State<AppState>,
    Extension(access): Extension<Access>,
    Path(thread_id): Path<String>,
) -> Result<Json<ConversationStatus>, AppError> {
    let head = app.engine.visible(&thread_id, &access).await?;
    Ok(Json(ThreadView::of(&head).into()))
}
