//! MCP tools through a real rmcp server on loopback: discovered as skills, called with
//! `tools/call`, and a missing required argument asked for.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::json;

use crate::helpers::serve_on_loopback;
use crate::helpers::{assert_completed_saying, spawn_app_with};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct QuoteRequest {
    #[schemars(description = "the ticker symbol, for example ACME")]
    ticker: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct ScaleRequest {
    #[schemars(description = "the number to scale")]
    value: f64,
    #[schemars(description = "the factor")]
    factor: Option<f64>,
}

#[derive(Debug, Clone)]
struct Market;

#[tool_router]
impl Market {
    fn new() -> Self {
        Market
    }

    #[tool(description = "Get the latest stock quote for a ticker")]
    fn stock_quote(&self, Parameters(QuoteRequest { ticker }): Parameters<QuoteRequest>) -> String {
        format!("{}: 123.45 USD", ticker.to_uppercase())
    }

    #[tool(description = "Scale a number by a factor")]
    fn scale_number(
        &self,
        Parameters(ScaleRequest { value, factor }): Parameters<ScaleRequest>,
    ) -> String {
        format!("scaled: {}", value * factor.unwrap_or(2.0))
    }
}

#[tool_handler]
impl ServerHandler for Market {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Market data tools: stock quotes and arithmetic")
    }
}

async fn mcp_server() -> String {
    let service = StreamableHttpService::new(
        || Ok(Market::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let base = serve_on_loopback(|_| axum::Router::new().nest_service("/mcp", service)).await;
    format!("{base}/mcp")
}

#[tokio::test]
async fn mcp_tools_become_skills_and_are_called() {
    let url = mcp_server().await;
    let app = spawn_app_with(|s| s.no_demo_agents = true).await;
    let (code, card) = app
        .discover(&json!({"url": url, "protocol": "mcp", "name": "Market Tools"}))
        .await;
    assert_eq!(code, 201, "{card}");
    assert_eq!(card["protocol"], "mcp");
    assert_eq!(card["id"], "market-tools");
    let skills = card["skills"].as_array().expect("skills");
    let quote = skills
        .iter()
        .find(|s| s["id"] == "stock_quote")
        .expect("stock_quote skill");
    assert_eq!(quote["inputs"][0]["name"], "ticker");
    assert_eq!(quote["inputs"][0]["required"], true);

    let done = app
        .ask_and_answer("Get me a stock quote", &["the ticker symbol"], "acme")
        .await;
    assert_completed_saying(&done, &["ACME: 123.45 USD"]);

    // Typed arguments: "value" is a number in the tool's schema.
    let r = app.chat("scale number value: 21").await;
    assert_completed_saying(&r, &["scaled: 42"]);

    let (code, r) = app
        .discover(&json!({"url": "http://127.0.0.1:1/mcp", "protocol": "mcp"}))
        .await;
    assert_eq!(code, 422, "{r}");
}
