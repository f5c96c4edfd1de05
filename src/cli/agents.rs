//! `baton agents add|discover|list|search|rate|remove`: the agent directory of a running server,
//! over its HTTP API (the server's `AgentDirectory` does the work; this only sends and prints).

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::agents::http::install_crypto;
use crate::api::agents::NEXT_CURSOR;
use crate::directory::service::{DiscoverProtocol, DiscoverRequest, MAX_PAGE};

/// Flags of `baton agents`.
#[derive(Debug, Clone, Args)]
pub struct AgentsArgs {
    /// The server to talk to.
    #[arg(
        long,
        env = "BATON_SERVER",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub server: String,
    /// The API key to send (`Authorization: Bearer`), for a server run with `--api-keys-file`;
    /// changing the directory needs an admin key.
    #[arg(long, env = "BATON_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AgentsCommand,
}

/// What to do with the directory.
#[derive(Debug, Clone, Subcommand)]
pub enum AgentsCommand {
    /// Register a card (A2A or original REST format) from a JSON file, or `-` for stdin.
    Add { file: String },
    /// Fetch an A2A agent's card from URL/.well-known/agent-card.json (or list an MCP server's
    /// tools with --mcp) and register it.
    Discover {
        url: String,
        /// The URL is an MCP server (streamable HTTP).
        #[arg(long)]
        mcp: bool,
        /// Name for an MCP server's card.
        #[arg(long)]
        name: Option<String>,
    },
    /// Every registered agent.
    List,
    /// Full-text search with filters.
    Search {
        query: Option<String>,
        /// Comma-separated skill tags; an agent needs one of them.
        #[arg(long)]
        capabilities: Option<String>,
        #[arg(long)]
        max_price: Option<f64>,
        #[arg(long)]
        min_rating: Option<f64>,
    },
    /// Add a rating (0 to 5) to an agent's running mean.
    Rate { id: String, rating: f64 },
    /// Remove an agent.
    Remove { id: String },
}

/// Why a directory command failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentsCliError {
    #[error("cannot read {0}: {1}")]
    File(String, std::io::Error),
    #[error("{0} is not JSON: {1}")]
    NotJson(String, serde_json::Error),
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, reqwest::Error),
    /// `--api-key` holds characters no HTTP header may.
    #[error("the API key is not a valid header value")]
    BadKey,
    #[error("the server answered {0}: {1}")]
    Refused(u16, String),
}

/// An HTTP client that sends `key` as the bearer on every request.
fn client_with_key(key: Option<&str>) -> Result<reqwest::Client, AgentsCliError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| AgentsCliError::BadKey)?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| AgentsCliError::Unreachable("an HTTP client".to_owned(), e))
}

/// Runs one directory command, printing its outcome.
pub async fn run(args: AgentsArgs) -> Result<(), AgentsCliError> {
    install_crypto();
    let client = client_with_key(args.api_key.as_deref())?;
    let base = args.server.trim_end_matches('/').to_owned();
    let request = match &args.command {
        AgentsCommand::Add { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| AgentsCliError::File(file.clone(), e))?
            } else {
                std::fs::read_to_string(file).map_err(|e| AgentsCliError::File(file.clone(), e))?
            };
            let card: Value = serde_json::from_str(&text)
                .map_err(|e| AgentsCliError::NotJson(file.clone(), e))?;
            client.post(format!("{base}/api/agents")).json(&card)
        }
        AgentsCommand::Discover { url, mcp, name } => {
            let body = DiscoverRequest {
                url: url.clone(),
                protocol: if *mcp {
                    DiscoverProtocol::Mcp
                } else {
                    DiscoverProtocol::A2a
                },
                name: name.clone(),
            };
            client
                .post(format!("{base}/api/agents/discover"))
                .json(&body)
        }
        AgentsCommand::List => {
            let cards = list_all(&client, &base).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&cards).unwrap_or_default()
                );
            } else {
                print_cards(&cards, |c| c);
            }
            return Ok(());
        }
        AgentsCommand::Search {
            query,
            capabilities,
            max_price,
            min_rating,
        } => {
            let mut params: Vec<(&str, String)> = Vec::new();
            if let Some(q) = query {
                params.push(("q", q.clone()));
            }
            if let Some(c) = capabilities {
                params.push(("capabilities", c.clone()));
            }
            if let Some(p) = max_price {
                params.push(("max_price", p.to_string()));
            }
            if let Some(r) = min_rating {
                params.push(("min_rating", r.to_string()));
            }
            client
                .get(format!("{base}/api/agents/search"))
                .query(&params)
        }
        AgentsCommand::Rate { id, rating } => client
            .post(format!("{base}/api/agents/{id}/rate"))
            .json(&serde_json::json!({ "rating": rating })),
        AgentsCommand::Remove { id } => client.delete(format!("{base}/api/agents/{id}")),
    };
    let (body, _) = answer(request, &base).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return Ok(());
    }
    match &args.command {
        AgentsCommand::Remove { id } => println!("removed {id}"),
        AgentsCommand::Search { .. } => {
            print_cards(
                body.as_array().map(Vec::as_slice).unwrap_or_default(),
                |hit| &hit["agent"],
            );
        }
        _ => print_cards(std::slice::from_ref(&body), |c| c),
    }
    Ok(())
}

/// Every card of the directory, page after page while the server names a next one.
async fn list_all(client: &reqwest::Client, base: &str) -> Result<Vec<Value>, AgentsCliError> {
    let mut cards = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("limit", MAX_PAGE.to_string())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let request = client.get(format!("{base}/api/agents")).query(&params);
        let (page, next) = answer(request, base).await?;
        cards.extend(page.as_array().cloned().unwrap_or_default());
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(cards),
        }
    }
}

/// Sends a request; its JSON body (`null` when there is none) and the next page's cursor, or
/// the server's refusal in its own words.
async fn answer(
    request: reqwest::RequestBuilder,
    base: &str,
) -> Result<(Value, Option<String>), AgentsCliError> {
    let response = request
        .send()
        .await
        .map_err(|e| AgentsCliError::Unreachable(base.to_owned(), e))?;
    let status = response.status().as_u16();
    let next = response
        .headers()
        .get(NEXT_CURSOR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let message = body["error"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned);
        return Err(AgentsCliError::Refused(status, message));
    }
    Ok((body, next))
}

fn print_cards(items: &[Value], card_of: impl Fn(&Value) -> &Value) {
    if items.is_empty() {
        println!("(no agents)");
    }
    for item in items {
        let card = card_of(item);
        println!(
            "{:<28} {:<8} {:>4.1}★  {:<24} {}",
            card["id"].as_str().unwrap_or("?"),
            card["protocol"].as_str().unwrap_or("?"),
            card["rating"].as_f64().unwrap_or(0.0),
            card["name"].as_str().unwrap_or("?"),
            card["url"].as_str().unwrap_or("")
        );
    }
}
