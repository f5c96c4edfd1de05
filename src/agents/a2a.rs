//! A2A over JSON-RPC, both protocol versions seen in the wild:
//!
//! - v1.0: `SendMessage` / `GetTask` with the header `A2A-Version: 1.0`; proto-JSON shapes
//!   (`role: "ROLE_USER"`, parts `{"text": …}`, states `TASK_STATE_INPUT_REQUIRED`, a result of
//!   `{"task": …}` or `{"message": …}`).
//! - v0.3: `message/send` / `tasks/get`; `kind`-tagged shapes (`role: "user"`, parts
//!   `{"kind": "text", "text": …}`, states `input-required`, the task or message as the result).
//!
//! Baton speaks v1.0 unless the card says the agent only speaks 0.x, and falls back to v0.3 (and
//! remembers it) when an agent refuses v1.0 (`-32009` version not supported, `-32601` method not
//! found). Replies are read liberally: either version's shapes are understood in either case.
//! The official Rust SDK (`a2a-lf`) was not used: see ARCHITECTURE.md.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::http::{HttpAgents, IDEMPOTENCY_HEADER};
use super::{AgentError, AgentReply, AgentRequest};
use crate::card::AgentCard;

/// How often a task still `working` after the send is polled.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The A2A client.
pub struct A2aClient {
    http: HttpAgents,
    /// Agents that refused v1.0; they get v0.3 from then on.
    v03_only: Mutex<HashSet<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V03,
}

impl A2aClient {
    /// A client over Baton's HTTP transport.
    pub fn new(http: HttpAgents) -> Self {
        A2aClient {
            http,
            v03_only: Mutex::new(HashSet::new()),
        }
    }

    /// Sends the task (or the user's answer to the agent's question) and reads the outcome.
    pub async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        let known_v03 = self.v03_only.lock().is_ok_and(|s| s.contains(&card.id));
        if known_v03 || !speaks_v1(card) {
            return self.send(card, request, Version::V03).await;
        }
        match self.send(card, request, Version::V1).await {
            Err(AgentError::Rpc { code, .. }) if code == -32009 || code == -32601 => {
                if let Ok(mut set) = self.v03_only.lock() {
                    set.insert(card.id.clone());
                }
                self.send(card, request, Version::V03).await
            }
            other => other,
        }
    }

    async fn send(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
        version: Version,
    ) -> Result<AgentReply, AgentError> {
        let (method, get_method) = match version {
            Version::V1 => ("SendMessage", "GetTask"),
            Version::V03 => ("message/send", "tasks/get"),
        };
        let params = json!({ "message": message(request, version) });
        let mut result = self
            .rpc(card, &request.idempotency_key, version, method, params)
            .await?;
        // A blocking send normally returns a settled task; poll one that is still working.
        loop {
            let reply = read_result(&result)?;
            match reply {
                Read::Working(task_id) => {
                    tokio::time::sleep(POLL_EVERY).await;
                    result = self
                        .rpc(
                            card,
                            &request.idempotency_key,
                            version,
                            get_method,
                            json!({ "id": task_id }),
                        )
                        .await?;
                }
                Read::Reply(reply) => return Ok(reply),
            }
        }
    }

    async fn rpc(
        &self,
        card: &AgentCard,
        key: &str,
        version: Version,
        method: &str,
        params: Value,
    ) -> Result<Value, AgentError> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::now_v7().to_string(),
            "method": method,
            "params": params,
        });
        let mut headers = vec![(IDEMPOTENCY_HEADER, key)];
        if version == Version::V1 {
            headers.push(("A2A-Version", "1.0"));
        }
        let response = self.http.post_json(&card.url, &headers, &body).await?;
        if let Some(error) = response.get("error").filter(|e| !e.is_null()) {
            return Err(AgentError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("JSON-RPC error")
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        response.get("result").cloned().ok_or_else(|| {
            AgentError::BadResponse("a JSON-RPC response without result or error".into())
        })
    }
}

/// The card offers v1.0 (a JSON-RPC interface of version 1.x), or says nothing about versions.
fn speaks_v1(card: &AgentCard) -> bool {
    let interfaces_v1 = card
        .extra
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().any(|i| {
                i.get("protocolVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with('1'))
            })
        });
    interfaces_v1
        || card
            .protocol_version
            .as_deref()
            .is_none_or(|v| !v.starts_with("0."))
}

/// The message carrying the task (or the answer to the agent's question).
fn message(request: &AgentRequest, version: Version) -> Value {
    let text = request
        .follow_up
        .as_ref()
        .map_or(request.text.as_str(), |f| f.answer.as_str());
    let metadata = json!({
        "idempotencyKey": request.idempotency_key,
        "batonThreadId": request.thread_id,
        "batonTaskId": request.task_id,
        "skillId": request.skill_id,
    });
    let mut parts = vec![];
    let mut message = match version {
        Version::V1 => {
            parts.push(json!({ "text": text }));
            if !request.inputs.is_empty() && request.follow_up.is_none() {
                parts.push(json!({ "data": request.inputs }));
            }
            json!({ "messageId": uuid::Uuid::now_v7().to_string(), "role": "ROLE_USER", "parts": parts, "metadata": metadata })
        }
        Version::V03 => {
            parts.push(json!({ "kind": "text", "text": text }));
            if !request.inputs.is_empty() && request.follow_up.is_none() {
                parts.push(json!({ "kind": "data", "data": request.inputs }));
            }
            json!({ "kind": "message", "messageId": uuid::Uuid::now_v7().to_string(), "role": "user", "parts": parts, "metadata": metadata })
        }
    };
    if let Some(follow_up) = &request.follow_up {
        if let Some(task_id) = &follow_up.task_id {
            message["taskId"] = json!(task_id);
        }
        if let Some(context_id) = &follow_up.context_id {
            message["contextId"] = json!(context_id);
        }
    }
    message
}

enum Read {
    Working(String),
    Reply(AgentReply),
}

/// Reads a `SendMessage`/`message/send`/`GetTask` result in either version's shapes.
fn read_result(result: &Value) -> Result<Read, AgentError> {
    let (task, message) = match (result.get("task"), result.get("message")) {
        (Some(task), _) => (Some(task), None),
        (None, Some(message)) if result.get("kind").is_none() => (None, Some(message)),
        _ => match result.get("kind").and_then(Value::as_str) {
            Some("message") => (None, Some(result)),
            _ if result.get("status").is_some() => (Some(result), None),
            _ if result.get("parts").is_some() => (None, Some(result)),
            _ => {
                return Err(AgentError::BadResponse(
                    "the result is neither a task nor a message".into(),
                ));
            }
        },
    };
    if let Some(message) = message {
        return Ok(Read::Reply(AgentReply::Completed(text_of(message))));
    }
    let task = task.ok_or_else(|| AgentError::BadResponse("no task".into()))?;
    let state = task
        .pointer("/status/state")
        .and_then(Value::as_str)
        .map(normalize_state)
        .ok_or_else(|| AgentError::BadResponse("a task without status.state".into()))?;
    let status_text = task
        .pointer("/status/message")
        .map(text_of)
        .unwrap_or_default();
    let task_id = task.get("id").and_then(Value::as_str).map(str::to_owned);
    let context_id = task
        .get("contextId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(match state.as_str() {
        "completed" => {
            let artifacts = task
                .get("artifacts")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(text_of)
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            let text = if !artifacts.is_empty() {
                artifacts
            } else if !status_text.is_empty() {
                status_text
            } else {
                last_agent_message(task)
            };
            Read::Reply(AgentReply::Completed(text))
        }
        "input-required" | "auth-required" => Read::Reply(AgentReply::InputRequired {
            question: if status_text.is_empty() {
                "The agent needs more information to go on.".to_owned()
            } else {
                status_text
            },
            task_id,
            context_id,
        }),
        "failed" | "rejected" | "canceled" | "cancelled" => {
            Read::Reply(AgentReply::Failed(if status_text.is_empty() {
                format!("the agent's task ended {state}")
            } else {
                format!("{state}: {status_text}")
            }))
        }
        "submitted" | "working" => match task_id {
            Some(id) => Read::Working(id),
            None => {
                return Err(AgentError::BadResponse(format!(
                    "a {state} task without an id"
                )));
            }
        },
        other => {
            return Err(AgentError::BadResponse(format!(
                "unknown task state {other:?}"
            )));
        }
    })
}

/// `TASK_STATE_INPUT_REQUIRED` and `input-required` both become `input-required`.
fn normalize_state(state: &str) -> String {
    state
        .trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The text parts of a message or artifact, joined; data parts as JSON.
fn text_of(value: &Value) -> String {
    value
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(
                    |p| match (p.get("text").and_then(Value::as_str), p.get("data")) {
                        (Some(text), _) => Some(text.to_owned()),
                        (None, Some(data)) => Some(data.to_string()),
                        _ => None,
                    },
                )
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn last_agent_message(task: &Value) -> String {
    task.get("history")
        .and_then(Value::as_array)
        .and_then(|h| {
            h.iter().rev().find(|m| {
                m.get("role")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.eq_ignore_ascii_case("agent") || r == "ROLE_AGENT")
            })
        })
        .map(text_of)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(v: Value) -> AgentReply {
        match read_result(&v).expect("readable") {
            Read::Reply(r) => r,
            Read::Working(_) => panic!("working"),
        }
    }

    #[test]
    fn reads_v1_and_v03_tasks() {
        let v1 = json!({"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED",
            "message": {"role": "ROLE_AGENT", "parts": [{"text": "Which metric?"}]}}}});
        assert_eq!(
            reply(v1),
            AgentReply::InputRequired {
                question: "Which metric?".into(),
                task_id: Some("t".into()),
                context_id: Some("c".into())
            }
        );
        let v03 = json!({"kind": "task", "id": "t", "contextId": "c", "status": {"state": "completed"},
            "artifacts": [{"artifactId": "a", "parts": [{"kind": "text", "text": "42"}]}]});
        assert_eq!(reply(v03), AgentReply::Completed("42".into()));
        let msg =
            json!({"kind": "message", "role": "agent", "parts": [{"kind": "text", "text": "hi"}]});
        assert_eq!(reply(msg), AgentReply::Completed("hi".into()));
        let v1msg = json!({"message": {"role": "ROLE_AGENT", "parts": [{"text": "hello"}]}});
        assert_eq!(reply(v1msg), AgentReply::Completed("hello".into()));
        let auth = json!({"kind": "task", "id": "t2", "status": {"state": "auth-required",
            "message": {"kind": "message", "role": "agent", "parts": [{"kind": "text", "text": "Sign in at https://example.test"}]}}});
        assert!(
            matches!(reply(auth), AgentReply::InputRequired { question, .. } if question.starts_with("Sign in"))
        );
        let failed = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_REJECTED"}}});
        assert!(matches!(reply(failed), AgentReply::Failed(_)));
        assert!(read_result(&json!({"nonsense": true})).is_err());
    }
}
