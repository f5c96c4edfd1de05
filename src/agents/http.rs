//! The HTTP side of every network transport: one reqwest client, the URL policy, a cap on
//! response size, and errors that say whether a retry could help.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::AgentError;
use super::policy::UrlPolicy;
use super::sse::EventReader;

/// Header carrying the idempotency key of a call (`thread/turn/task/attempt`).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Outbound HTTP for agents: one pooled client and one policy for every transport, so no agent
/// call escapes the URL allow-list or the size cap.
#[derive(Clone)]
pub struct HttpAgents {
    client: reqwest::Client,
    policy: UrlPolicy,
    max_response_bytes: usize,
}

/// Makes rustls use the `ring` provider (Baton builds without aws-lc and OpenSSL). Idempotent;
/// call it before building any HTTP client.
pub fn install_crypto() {
    // An error only says a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpAgents {
    /// A client with a connect timeout; each call's own timeout is the engine's.
    pub fn new(policy: UrlPolicy, max_response_bytes: usize) -> Result<Self, AgentError> {
        install_crypto();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AgentError::Transport)?;
        Ok(HttpAgents {
            client,
            policy,
            max_response_bytes,
        })
    }

    /// The underlying reqwest client (shared by the MCP transport).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The outbound URL policy.
    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// POSTs JSON and reads a JSON answer.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, AgentError> {
        self.policy.check(url).map_err(AgentError::Refused)?;
        let request = self
            .client
            .post(url)
            .headers(header_map(headers)?)
            .json(body);
        self.read_json(request).await
    }

    /// GETs with a query and reads a JSON answer (or text, returned as a JSON string).
    pub async fn get_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        query: &[(String, String)],
    ) -> Result<Value, AgentError> {
        self.policy.check(url).map_err(AgentError::Refused)?;
        let request = self
            .client
            .get(url)
            .headers(header_map(headers)?)
            .query(query);
        self.read_json(request).await
    }

    /// Reads the agent card under `base` (`/.well-known/agent-card.json`, then the older
    /// `/.well-known/agent.json`), or at `base` itself when it names a JSON file.
    pub async fn fetch_card(&self, base: &str) -> Result<Value, AgentError> {
        let base = base.trim_end_matches('/');
        if base.ends_with(".json") {
            return self.get_json(base, &[], &[]).await;
        }
        match self
            .get_json(&format!("{base}/.well-known/agent-card.json"), &[], &[])
            .await
        {
            Ok(card) => Ok(card),
            Err(AgentError::Status(404, _)) => {
                self.get_json(&format!("{base}/.well-known/agent.json"), &[], &[])
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// POSTs JSON asking for a stream of events; an agent may answer with events (A2A
    /// streaming) or with one JSON answer (an error, or an agent that does not stream).
    pub async fn post_for_events(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<Answer, AgentError> {
        self.policy.check(url).map_err(AgentError::Refused)?;
        let request = self
            .client
            .post(url)
            .headers(header_map(headers)?)
            .header(ACCEPT, EVENT_STREAM)
            .json(body);
        let response = send(request).await?;
        if response.status().is_success() && content_type(&response).contains(EVENT_STREAM) {
            return Ok(Answer::Events(EventReader::new(
                response,
                self.max_response_bytes,
            )));
        }
        self.read_body(response).await.map(Answer::Json)
    }

    async fn read_json(&self, request: reqwest::RequestBuilder) -> Result<Value, AgentError> {
        let response = send(request).await?;
        self.read_body(response).await
    }

    /// Reads a response's JSON answer (or text, as a JSON string) within the size cap; an HTTP
    /// error status is an error with the start of the body.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Value, AgentError> {
        let status = response.status();
        let json_type = content_type(&response).contains("json");
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response_bytes as u64)
        {
            return Err(AgentError::TooLarge(self.max_response_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(AgentError::Transport)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(AgentError::TooLarge(self.max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(AgentError::Status(
                status.as_u16(),
                text.chars().take(300).collect(),
            ));
        }
        match serde_json::from_slice(&body) {
            Ok(value) => Ok(value),
            // A plain-text answer from a REST agent is still an answer.
            Err(_) if !json_type && std::str::from_utf8(&body).is_ok() => {
                Ok(Value::String(String::from_utf8_lossy(&body).into_owned()))
            }
            Err(e) => Err(AgentError::NotJson(e)),
        }
    }
}

/// What a request for events was answered with.
pub enum Answer {
    /// A stream of events.
    Events(EventReader),
    /// One JSON answer.
    Json(Value),
}

/// The media type of server-sent events.
const EVENT_STREAM: &str = "text/event-stream";

/// Sends a request; a timeout says how long it waited.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, AgentError> {
    let started = Instant::now();
    request.send().await.map_err(|source| {
        if source.is_timeout() {
            AgentError::Timeout {
                elapsed: started.elapsed(),
                source,
            }
        } else {
            AgentError::Transport(source)
        }
    })
}

/// The response's `Content-Type`, or empty.
fn content_type(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn header_map(headers: &[(&str, &str)]) -> Result<HeaderMap, AgentError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| AgentError::Unencodable(e.into()))?;
        let value = HeaderValue::from_str(value).map_err(|e| AgentError::Unencodable(e.into()))?;
        map.insert(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn failures_keep_their_cause() {
        let http = HttpAgents::new(UrlPolicy::default(), 1024).expect("a client");
        let unreachable = http
            .post_json("http://127.0.0.1:1/", &[], &Value::Null)
            .await
            .expect_err("nothing listens on port 1");
        assert!(
            matches!(unreachable, AgentError::Transport(_)),
            "{unreachable:?}"
        );
        assert!(unreachable.source().is_some());
        assert!(unreachable.is_retryable());
        let bad_header = http
            .post_json("http://127.0.0.1:1/", &[("bad header", "x")], &Value::Null)
            .await
            .expect_err("an invalid header name");
        assert!(matches!(bad_header, AgentError::Unencodable(_)));
        assert!(bad_header.source().is_some());
        assert!(!bad_header.is_retryable());
    }
}
