//! MCP tools over streamable HTTP, through the official SDK (`rmcp`). A registered MCP server
//! becomes a card whose skills are its tools (name, description, input schema); calling a skill
//! is `tools/call` with the arguments the planner found. Required arguments missing from the
//! user's words become questions, as for REST parameters.
//!
//! Each call opens a session (initialize, call, close): MCP servers are usually local and
//! sessions cheap, and no connection state has to survive a Baton restart.

use std::collections::HashMap;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value, json};

use super::http::{HttpAgents, IDEMPOTENCY_HEADER};
use super::{AgentError, AgentReply, AgentRequest};
use crate::card::{AgentCard, AgentSkill, Protocol, SkillInput, slug};

/// Calls MCP servers' tools as skills, over the shared HTTP client and URL policy.
pub struct McpClient {
    http: HttpAgents,
}

impl McpClient {
    /// A client over Baton's HTTP transport (its policy and reqwest client).
    pub fn new(http: HttpAgents) -> Self {
        McpClient { http }
    }

    async fn connect(
        &self,
        url: &str,
        idempotency_key: Option<&str>,
    ) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>, AgentError> {
        self.http.policy().check(url).map_err(AgentError::Refused)?;
        let mut headers = HashMap::new();
        if let Some(key) = idempotency_key
            && let Ok(value) = reqwest::header::HeaderValue::from_str(key)
        {
            headers.insert(
                reqwest::header::HeaderName::from_static("idempotency-key"),
                value,
            );
        }
        debug_assert_eq!(IDEMPOTENCY_HEADER.to_ascii_lowercase(), "idempotency-key");
        let config =
            StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers);
        let transport =
            StreamableHttpClientTransport::with_client(self.http.client().clone(), config);
        ClientConfig::default()
            .serve(transport)
            .await
            .map_err(|e| AgentError::McpSession(Box::new(e)))
    }

    /// Reads an MCP server's tools into a card (id and name from `name`, or from the URL).
    pub async fn discover(&self, url: &str, name: Option<&str>) -> Result<AgentCard, AgentError> {
        let client = self.connect(url, None).await?;
        let tools = client.list_all_tools().await.map_err(|e| AgentError::Mcp {
            step: "tools/list",
            source: Box::new(e),
        })?;
        let info = client
            .peer_info()
            .map(|i| serde_json::to_value(i).unwrap_or_default())
            .unwrap_or_default();
        // Closing is best effort: the tools are already read, and the server drops idle sessions.
        let _ = client.cancel().await;
        let server_name = name
            .map(str::to_owned)
            .or_else(|| {
                info.pointer("/serverInfo/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| url.to_owned());
        let skills: Vec<AgentSkill> = tools
            .iter()
            .map(|tool| skill_of(&serde_json::to_value(tool).unwrap_or_default()))
            .collect();
        if skills.is_empty() {
            return Err(AgentError::BadResponse(
                "the MCP server lists no tools".into(),
            ));
        }
        let description = info
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "MCP tools: {}",
                    skills
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        Ok(AgentCard {
            id: slug(&server_name),
            name: server_name,
            description,
            url: url.to_owned(),
            version: info
                .pointer("/serverInfo/version")
                .and_then(Value::as_str)
                .unwrap_or("1.0.0")
                .to_owned(),
            capabilities: Default::default(),
            default_input_modes: vec!["application/json".to_owned()],
            default_output_modes: vec!["text/plain".to_owned()],
            skills,
            price_per_call_usd: 0.0,
            rating: 0.0,
            rating_count: 0,
            protocol: Protocol::Mcp,
            protocol_version: None,
            endpoints: Vec::new(),
            extra: Map::new(),
        })
    }

    /// Calls the request's skill as a tool.
    pub async fn call(
        &self,
        card: &AgentCard,
        request: &AgentRequest,
    ) -> Result<AgentReply, AgentError> {
        let skill = request
            .skill_id
            .as_deref()
            .and_then(|id| card.skill(id))
            .or_else(|| card.skills.first())
            .ok_or_else(|| AgentError::BadRequest(format!("{} has no tools", card.name)))?;
        let schema = skill.input_schema.clone().unwrap_or_default();
        let arguments: Map<String, Value> = request
            .inputs
            .iter()
            .map(|(name, value)| {
                let kind = schema
                    .pointer(&format!("/properties/{name}/type"))
                    .and_then(Value::as_str);
                (name.clone(), typed(value, kind))
            })
            .collect();
        let params: CallToolRequestParams =
            serde_json::from_value(json!({ "name": skill.id, "arguments": arguments }))
                .map_err(|e| AgentError::Unencodable(e.into()))?;
        let client = self
            .connect(&card.url, Some(&request.idempotency_key))
            .await?;
        let result = client.call_tool(params).await;
        // Closing is best effort: the answer (or its error) is already in hand.
        let _ = client.cancel().await;
        let result = serde_json::to_value(result.map_err(|e| AgentError::Mcp {
            step: "tools/call",
            source: Box::new(e),
        })?)
        .unwrap_or_default();
        let text = result
            .get("content")
            .and_then(Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .filter(|t| !t.is_empty())
            .or_else(|| result.get("structuredContent").map(Value::to_string))
            .unwrap_or_default();
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            Ok(AgentReply::Failed(text))
        } else {
            Ok(AgentReply::Completed(text))
        }
    }
}

/// A tool as a skill: its words become tags, its schema's properties inputs.
fn skill_of(tool: &Value) -> AgentSkill {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("tool")
        .to_owned();
    let description = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let schema = tool
        .get("inputSchema")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let inputs = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(prop, spec)| SkillInput {
                    name: prop.clone(),
                    description: spec
                        .get("description")
                        .and_then(Value::as_str)
                        .map_or_else(|| prop.replace('_', " "), str::to_owned),
                    required: required.contains(&prop.as_str()),
                    value_type: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let tags = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_ascii_lowercase)
        .collect();
    AgentSkill {
        id: name.clone(),
        name: tool
            .get("title")
            .and_then(Value::as_str)
            .map_or_else(|| name.replace('_', " "), str::to_owned),
        description,
        tags,
        examples: Vec::new(),
        inputs,
        input_schema: Some(schema),
    }
}

/// The user's words as the schema's type, when they parse as it.
fn typed(value: &str, kind: Option<&str>) -> Value {
    let trimmed = value.trim();
    match kind {
        Some("integer") => trimmed
            .parse::<i64>()
            .map_or_else(|_| json!(value), Value::from),
        Some("number") => trimmed
            .parse::<f64>()
            .map_or_else(|_| json!(value), Value::from),
        Some("boolean") => trimmed
            .parse::<bool>()
            .map_or_else(|_| json!(value), Value::from),
        _ => json!(value),
    }
}
