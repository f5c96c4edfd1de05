//! The HTTP side of every network transport: one reqwest client, the URL policy, a cap on
//! response size, and errors that say whether a retry could help. Every outbound client
//! (this one, the webhook deliverer's) starts from `outbound_client`: the resolver that refuses
//! blocked addresses and a redirect policy that checks each hop.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::AgentError;
use super::policy::{UrlPolicy, UrlRefused};
use super::resolver::GuardedResolver;
use super::sse::EventReader;

/// Header carrying the idempotency key of a call (`thread/turn/task/attempt`).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Most redirects one request follows (reqwest's own default).
const MAX_REDIRECTS: usize = 10;

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

/// A client builder that cannot reach what `policy` refuses: names resolve through a
/// `GuardedResolver` (blocked addresses dropped) and each redirect's target is checked like the
/// first URL. (A URL whose host is an address never reaches the resolver: callers check it
/// with `policy.check` before the request.)
pub fn outbound_client(policy: &UrlPolicy, resolver: GuardedResolver) -> reqwest::ClientBuilder {
    install_crypto();
    reqwest::Client::builder()
        .dns_resolver(resolver)
        .redirect(redirect_policy(policy.clone()))
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
}

/// Follows a redirect only to a URL `policy` allows (up to `MAX_REDIRECTS`): an agent on
/// loopback must not be able to send Baton on to the metadata service.
pub fn redirect_policy(policy: UrlPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match policy.check(attempt.url().as_str()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(UrlRefused::Redirect(Box::new(refused))),
        }
    })
}

impl HttpAgents {
    /// A client with a connect timeout, resolving through the system resolver; each call's
    /// own timeout is the engine's.
    pub fn new(policy: UrlPolicy, max_response_bytes: usize) -> Result<Self, AgentError> {
        let resolver = GuardedResolver::system(policy.outbound_allow().clone());
        Self::with_resolver(policy, max_response_bytes, resolver)
    }

    /// The same over another resolver: how tests make a name resolve to a blocked address
    /// without touching DNS.
    pub fn with_resolver(
        policy: UrlPolicy,
        max_response_bytes: usize,
        resolver: GuardedResolver,
    ) -> Result<Self, AgentError> {
        let client = outbound_client(&policy, resolver)
            .connect_timeout(Duration::from_secs(5))
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

/// Sends a request; a timeout says how long it waited, and a refusal (a name resolving to a
/// blocked address, a redirect to a refused URL) is `Refused`, never retried.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, AgentError> {
    let started = Instant::now();
    request.send().await.map_err(|source| {
        if let Some(refused) = UrlRefused::found_in(&source) {
            AgentError::Refused(refused.clone())
        } else if source.is_timeout() {
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::agents::policy::OutboundAllow;

    /// A loopback server counting the requests it answers: `/` answers JSON, `/hop/{n}`
    /// redirects to the `n`th of the URLs `targets` gives for the server's port.
    async fn counting_server(targets: impl FnOnce(u16) -> Vec<String>) -> (u16, Arc<AtomicUsize>) {
        use axum::extract::Path;
        use axum::http::{StatusCode, header::LOCATION};
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bound");
        let port = listener.local_addr().expect("address").port();
        let targets = Arc::new(targets(port));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let app = axum::Router::new()
            .route(
                "/",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { axum::Json(serde_json::json!({"ok": true})) }
                }),
            )
            .route(
                "/hop/{n}",
                get(move |Path(n): Path<usize>| async move {
                    (StatusCode::FOUND, [(LOCATION, targets[n].clone())])
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, served)
    }

    /// `blocked.test` resolves to 0.0.0.0 (blocked; on Linux it reaches the loopback server),
    /// `fine.test` to 127.0.0.1.
    fn test_resolver(allow: &[&str]) -> GuardedResolver {
        GuardedResolver::with_lookup(
            OutboundAllow::new(allow.iter().map(|a| (*a).to_owned())),
            Arc::new(|host: String| {
                let address: Option<std::net::SocketAddr> = match host.as_str() {
                    "blocked.test" => "0.0.0.0:0".parse().ok(),
                    "fine.test" => "127.0.0.1:0".parse().ok(),
                    _ => None,
                };
                Box::pin(async move {
                    address
                        .map(|a| vec![a])
                        .ok_or_else(|| std::io::Error::other("no such test name"))
                })
            }),
        )
    }

    fn agents(allow: &[&str]) -> HttpAgents {
        HttpAgents::with_resolver(UrlPolicy::default(), 1024, test_resolver(allow))
            .expect("a client")
    }

    #[tokio::test]
    async fn names_resolving_to_blocked_addresses_and_redirects_to_them_are_refused() {
        let (port, served) = counting_server(|port| {
            vec![
                "http://169.254.169.254/latest/meta-data/".to_owned(),
                format!("http://blocked.test:{port}/"),
                format!("http://fine.test:{port}/"),
            ]
        })
        .await;
        let http = agents(&[]);
        let get = |url: String| {
            let http = http.clone();
            async move { http.get_json(&url, &[], &[]).await }
        };

        let refused = get(format!("http://blocked.test:{port}/"))
            .await
            .expect_err("refused");
        assert!(
            matches!(
                &refused,
                AgentError::Refused(UrlRefused::ResolvesToBlocked { host, .. }) if host == "blocked.test"
            ),
            "{refused:?}"
        );
        assert!(!refused.is_retryable());
        let to_metadata = get(format!("http://fine.test:{port}/hop/0"))
            .await
            .expect_err("refused");
        assert!(
            matches!(&to_metadata, AgentError::Refused(UrlRefused::Redirect(hop))
                if matches!(**hop, UrlRefused::Blocked { .. })),
            "{to_metadata:?}"
        );
        let to_blocked_name = get(format!("http://fine.test:{port}/hop/1"))
            .await
            .expect_err("refused");
        assert!(
            matches!(
                &to_blocked_name,
                AgentError::Refused(UrlRefused::ResolvesToBlocked { .. })
            ),
            "{to_blocked_name:?}"
        );
        assert_eq!(served.load(Ordering::SeqCst), 0, "nothing got through");

        get(format!("http://fine.test:{port}/hop/2"))
            .await
            .expect("a redirect to an allowed URL is followed");
        assert_eq!(served.load(Ordering::SeqCst), 1);
        agents(&["blocked.test"])
            .get_json(&format!("http://blocked.test:{port}/"), &[], &[])
            .await
            .expect("the operator named the host");
        assert_eq!(served.load(Ordering::SeqCst), 2);
    }

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
