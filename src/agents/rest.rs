//! Original-system REST agents: one HTTP call to the endpoint behind the chosen skill. GET sends
//! the parameters as the query, POST as a JSON body; defaults fill what the user did not give.

use serde_json::{Map, Value};

use super::http::{HttpAgents, IDEMPOTENCY_HEADER};
use super::{AgentError, AgentReply, AgentRequest};
use crate::card::{AgentCard, HttpMethod};

/// Calls original-system REST agents, over the shared HTTP client and URL policy.
pub struct RestClient {
    http: HttpAgents,
}

impl RestClient {
    /// A client over Baton's HTTP transport.
    pub fn new(http: HttpAgents) -> Self {
        RestClient { http }
    }

    /// Calls the endpoint of the request's skill (the first endpoint when none was chosen).
    pub async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        let index = request
            .skill_id
            .as_deref()
            .and_then(|s| s.strip_prefix("endpoint-"))
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0);
        let endpoint = card.endpoints.get(index).ok_or_else(|| {
            AgentError::BadRequest(format!("{} has no endpoint {index}", card.name))
        })?;
        let mut params = Map::new();
        for parameter in &endpoint.parameters {
            if let Some(value) = request.inputs.get(&parameter.name) {
                params.insert(parameter.name.clone(), typed(value, &parameter.param_type));
            } else if let Some(default) = &parameter.default_value {
                params.insert(parameter.name.clone(), default.clone());
            }
        }
        let headers = [(IDEMPOTENCY_HEADER, request.idempotency_key.as_str())];
        let answer = match endpoint.http_method {
            HttpMethod::Post => {
                self.http
                    .post_json(&endpoint.endpoint, &headers, &Value::Object(params))
                    .await?
            }
            HttpMethod::Get => {
                let query: Vec<(String, String)> = params
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect();
                self.http
                    .get_json(&endpoint.endpoint, &headers, &query)
                    .await?
            }
        };
        Ok(AgentReply::Completed(readable(&answer)))
    }
}

/// The user's words as the parameter's declared type, when they parse as it.
fn typed(value: &str, param_type: &str) -> Value {
    match param_type.to_ascii_lowercase().as_str() {
        "int" | "integer" => value
            .trim()
            .parse::<i64>()
            .map_or_else(|_| Value::String(value.to_owned()), Value::from),
        "float" | "number" | "double" => value
            .trim()
            .parse::<f64>()
            .map_or_else(|_| Value::String(value.to_owned()), Value::from),
        "bool" | "boolean" => value
            .trim()
            .parse::<bool>()
            .map_or_else(|_| Value::String(value.to_owned()), Value::from),
        _ => Value::String(value.to_owned()),
    }
}

/// A person-readable answer from whatever JSON came back.
fn readable(answer: &Value) -> String {
    if let Some(text) = answer.as_str() {
        return text.to_owned();
    }
    for key in [
        "result", "output", "response", "answer", "message", "text", "data",
    ] {
        match answer.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(other) if !other.is_null() => return other.to_string(),
            _ => {}
        }
    }
    answer.to_string()
}
