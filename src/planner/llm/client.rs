//! A small typed client for OpenAI-compatible chat completions (`POST {base}/chat/completions`),
//! as served by OpenAI, Ollama, vLLM and llama.cpp's server.
//!
//! Baton writes its own rather than use one of the maintained OpenAI crates: those bring much more
//! than one endpoint (streaming, assistants, files, their own retry and HTTP stacks) and several
//! default to native-tls/OpenSSL. This client sits on the `reqwest` Baton already has (rustls with
//! the `ring` provider), and adds only what the planner needs: structured outputs, bounded retries
//! with backoff, `Retry-After`, a cap on the answer's size, and usage for the thread's cost.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::planner::ModelCost;

/// The environment variable the key is read from; there is deliberately no flag, so the key
/// never shows in a process list or a shell history.
pub const API_KEY_ENV: &str = "BATON_LLM_API_KEY";

/// The API key for the model endpoint. Its `Debug` never prints it and it is not `Serialize`,
/// so it cannot leak into logs, responses or checkpoints by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key, or `None` for a blank one (an endpoint without authentication, such as Ollama).
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        let key = key.trim();
        (!key.is_empty()).then(|| ApiKey(key.to_owned()))
    }

    /// The key in `BATON_LLM_API_KEY`, if set and not blank.
    pub fn from_env() -> Option<Self> {
        std::env::var(API_KEY_ENV).ok().and_then(Self::new)
    }

    /// The `Authorization` header value, marked sensitive so reqwest and hyper never print it.
    fn header(&self) -> Result<HeaderValue, LlmError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .map_err(|_| LlmError::Setup("the API key is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Timeouts and retries of model requests.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Longest wait for one request (a model that hangs is cut off here).
    pub timeout: Duration,
    /// Requests per call (first try plus retries) after timeouts, transport errors, 429 and 5xx.
    pub attempts: u32,
    /// First retry delay; doubles per retry, with jitter.
    pub backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// Largest answer read, in bytes.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(10),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    /// The decision's instructions (and its schema, when the endpoint refuses
    /// `response_format`): the planner rewrites it in place on every try.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }

    /// What the model works on (or the feedback on its last answer).
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// The model's own earlier answer, replayed when asking it to correct itself.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A JSON Schema the answer must follow, sent as `response_format` (structured outputs).
#[derive(Debug, Clone, Copy)]
pub struct Structured<'a> {
    /// Names the schema (the endpoint echoes it in errors; Baton's tests route on it).
    pub name: &'a str,
    pub schema: &'a Value,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaFormat<'a>,
}

#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'a str,
    schema: &'a Value,
    strict: bool,
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
}

#[derive(Deserialize)]
struct ResponseMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// What went wrong talking to the model. One type for the client layer; the underlying error is
/// kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The request never got an answer: connection refused, reset, DNS, TLS.
    #[error("cannot reach the model endpoint")]
    Transport(#[source] reqwest::Error),
    /// No answer within the request timeout.
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with an error status.
    #[error("the model endpoint answered {status}: {body}")]
    Status {
        status: u16,
        /// The start of the error body (endpoints explain rejections there).
        body: String,
        /// `Retry-After`, when a 429 or 503 gave one in seconds.
        retry_after: Option<Duration>,
    },
    /// The answer exceeded `max_response_bytes`.
    #[error("the model's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// A 2xx answer that is not a chat completion.
    #[error("the model's answer is not a chat completion")]
    Envelope(#[source] serde_json::Error),
    /// A chat completion without content (no choices, or a refusal).
    #[error("the model returned no content{0}")]
    NoContent(String),
    /// The client could not be set up (bad base URL, bad key characters).
    #[error("model client: {0}")]
    Setup(String),
}

impl LlmError {
    /// Timeouts, transport errors, 408, 429 and 5xx may pass; anything else will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Transport(_) | LlmError::Timeout(_) => true,
            LlmError::Status { status, .. } => {
                matches!(*status, 408 | 429) || (500..=599).contains(status)
            }
            LlmError::TooLarge(_)
            | LlmError::Envelope(_)
            | LlmError::NoContent(_)
            | LlmError::Setup(_) => false,
        }
    }

    /// A 400 or 422: the endpoint refused the request's shape. When the request carried a
    /// `response_format`, the planner retries without it (schema in the prompt instead).
    pub fn rejects_request(&self) -> bool {
        matches!(
            self,
            LlmError::Status {
                status: 400 | 422,
                ..
            }
        )
    }

    /// This error and its sources, joined, for the fallback reason recorded in the thread.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// One chat completion's content and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Chat completions over HTTP. Cheap to share (`reqwest::Client` is a handle); holds no state
/// about threads.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    key: Option<ApiKey>,
    options: ClientOptions,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("options", &self.options)
            .finish()
    }
}

impl ChatClient {
    /// A client for `{base_url}/chat/completions` with `model`. The base URL must be http(s).
    pub fn new(
        base_url: &str,
        model: &str,
        key: Option<ApiKey>,
        options: ClientOptions,
    ) -> Result<Self, LlmError> {
        let base = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| LlmError::Setup(format!("base URL {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(LlmError::Setup(format!(
                "base URL {base:?} must start with http:// or https://"
            )));
        }
        if model.trim().is_empty() {
            return Err(LlmError::Setup("the model name is blank".to_owned()));
        }
        crate::agents::http::install_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Setup(e.to_string()))?;
        Ok(ChatClient {
            http,
            endpoint: format!("{base}/chat/completions"),
            model: model.trim().to_owned(),
            key,
            options: ClientOptions {
                attempts: options.attempts.max(1),
                ..options
            },
        })
    }

    /// The full completions URL, logged at start-up so a wrong base URL shows before the first
    /// request fails.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `messages` (with `format` as `response_format` when given), retrying what may pass
    /// with backoff (honouring `Retry-After`, capped). Every request sent and the tokens the
    /// endpoint reports are added to `cost`, including those of failed tries.
    pub async fn complete(
        &self,
        messages: &[Message],
        format: Option<Structured<'_>>,
        cost: &mut ModelCost,
    ) -> Result<Completion, LlmError> {
        let body = ChatRequest {
            model: &self.model,
            messages,
            temperature: 0.0,
            response_format: format.map(|f| ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchemaFormat {
                    name: f.name,
                    schema: f.schema,
                    strict: true,
                },
            }),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            cost.calls = cost.calls.saturating_add(1);
            match self.send_once(&body).await {
                Ok(completion) => {
                    cost.prompt_tokens =
                        cost.prompt_tokens.saturating_add(completion.prompt_tokens);
                    cost.completion_tokens = cost
                        .completion_tokens
                        .saturating_add(completion.completion_tokens);
                    return Ok(completion);
                }
                Err(e) if attempt < self.options.attempts && e.is_retryable() => {
                    let wait = match &e {
                        LlmError::Status {
                            retry_after: Some(after),
                            ..
                        } => (*after).min(self.options.max_retry_after),
                        _ => backoff(self.options.backoff, attempt),
                    };
                    tracing::warn!(error = %e.describe(), attempt, wait_ms = wait.as_millis() as u64, "model request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(&self, body: &ChatRequest<'_>) -> Result<Completion, LlmError> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .timeout(self.options.timeout)
            .json(body);
        if let Some(key) = &self.key {
            request = request.header(AUTHORIZATION, key.header()?);
        }
        let timeout = self.options.timeout;
        let mut response = request.send().await.map_err(|e| classify(e, timeout))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        if response
            .content_length()
            .is_some_and(|n| n > self.options.max_response_bytes as u64)
        {
            return Err(LlmError::TooLarge(self.options.max_response_bytes));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, timeout))? {
            if bytes.len() + chunk.len() > self.options.max_response_bytes {
                return Err(LlmError::TooLarge(self.options.max_response_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // An endpoint may quote the key back ("invalid key sk-…"); the body goes into the
            // fallback reason and from there into the checkpoint, so the key is cut out first.
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(key) = &self.key {
                text = text.replace(&key.0, "<redacted>");
            }
            return Err(LlmError::Status {
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
                retry_after: retry_after.filter(|_| {
                    matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    )
                }),
            });
        }
        let parsed: ChatResponse = serde_json::from_slice(&bytes).map_err(LlmError::Envelope)?;
        let usage = parsed.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        let message = parsed
            .choices
            .into_iter()
            .next()
            .map(|c| c.message)
            .ok_or_else(|| LlmError::NoContent(" (no choices)".to_owned()))?;
        match message.content {
            Some(content) if !content.trim().is_empty() => Ok(Completion {
                content,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            }),
            _ => Err(LlmError::NoContent(
                message
                    .refusal
                    .map(|r| format!(" (refused: {})", r.chars().take(200).collect::<String>()))
                    .unwrap_or_default(),
            )),
        }
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout(timeout)
    } else {
        LlmError::Transport(e)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: the backoff applies then).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// `base * 2^(attempt-1)` plus up to half of that again, so retries from many threads spread out.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    exp + exp.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let key = ApiKey::new("sk-very-secret").expect("key");
        assert!(!format!("{key:?}").contains("sk-very"));
        let client = ChatClient::new(
            "http://127.0.0.1:1/v1/",
            "m",
            Some(key),
            ClientOptions::default(),
        )
        .expect("client");
        let shown = format!("{client:?}");
        assert!(!shown.contains("sk-very"), "{shown}");
        assert!(
            shown.contains("http://127.0.0.1:1/v1/chat/completions"),
            "{shown}"
        );
    }

    #[test]
    fn blank_keys_and_bad_base_urls_are_refused() {
        assert!(ApiKey::new("  ").is_none());
        assert!(ChatClient::new("ftp://x", "m", None, ClientOptions::default()).is_err());
        assert!(ChatClient::new("not a url", "m", None, ClientOptions::default()).is_err());
        assert!(ChatClient::new("http://x/v1", " ", None, ClientOptions::default()).is_err());
    }

    #[test]
    fn which_failures_are_retried() {
        let status = |status| LlmError::Status {
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(status(400).rejects_request());
        assert!(status(422).rejects_request());
        assert!(!status(401).rejects_request());
        assert!(LlmError::Timeout(Duration::from_secs(1)).is_retryable());
    }
}
