//! `AgentDirectory`: every change to the directory (register, discover, rate, remove) and its
//! queries, in one place the HTTP API, the CLI and the web console call alike, so the URL
//! policy, the store-then-index order and the rating arithmetic are not each caller's to repeat.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::Directory;
use super::register::parse_card;
use super::service_error::AgentDirectoryError;
use crate::agents::http::HttpAgents;
use crate::agents::mcp::McpClient;
use crate::card::{AgentCard, Protocol};
use crate::store::Store;

/// Search results a query gets when it does not say how many.
const DEFAULT_LIMIT: usize = 20;

/// Most search results one query gets, so a client cannot ask for the whole directory ranked.
const MAX_LIMIT: usize = 200;

/// Highest rating a card can have or be given (ratings are stars, 0 to 5).
const MAX_RATING: f64 = 5.0;

/// The directory as a service: the in-memory `Directory` (shared with the engine's nodes), the
/// store the cards persist in, and the outbound HTTP transport whose URL policy decides which
/// agents may be registered and which discovery fetches cards through.
pub struct AgentDirectory {
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    http: HttpAgents,
    mcp: McpClient,
    /// One rating at a time in this process, so no update is lost between read and write.
    rating: tokio::sync::Mutex<()>,
}

/// What kind of server `discover` reads a card from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverProtocol {
    /// An A2A agent: its card is at `/.well-known/agent-card.json` under the URL.
    #[default]
    A2a,
    /// An MCP server over streamable HTTP: its tools become the card's skills.
    Mcp,
}

/// Body of `POST /api/agents/discover`, and what `baton agents discover` sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverRequest {
    /// An A2A agent's base URL (its card is at `/.well-known/agent-card.json` under it), or an
    /// MCP server's streamable HTTP endpoint.
    pub url: String,
    /// `a2a` (the default, also for `null`) or `mcp`; anything else is refused with 422.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: DiscoverProtocol,
    /// For MCP servers: the name to list them under (default: the server's own name).
    #[serde(default)]
    pub name: Option<String>,
}

/// Clients have always been able to send `"protocol": null` for the default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A directory search: words, filters, and how many results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentQuery {
    /// Free text; blank lists every card (filtered) in ranking order.
    pub text: String,
    /// Skill tags; a card needs one of them (none: no filter).
    pub capabilities: Vec<String>,
    pub max_price: Option<f64>,
    pub min_rating: Option<f64>,
    /// How many results (default 20, kept within 1..=200).
    pub limit: Option<usize>,
}

/// One search hit, as the API answers it.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub relevance: f32,
    pub agent: Arc<AgentCard>,
}

impl AgentDirectory {
    /// A service over the engine's directory and store; `http` carries the URL policy that
    /// registration checks and discovery fetches through.
    pub fn new(directory: Arc<Directory>, store: Arc<dyn Store>, http: HttpAgents) -> Self {
        AgentDirectory {
            directory,
            store,
            mcp: McpClient::new(http.clone()),
            http,
            rating: tokio::sync::Mutex::new(()),
        }
    }

    /// Every card, ordered by id.
    pub fn list(&self) -> Vec<Arc<AgentCard>> {
        self.directory.list()
    }

    /// The card with this id.
    pub fn get(&self, id: &str) -> Result<Arc<AgentCard>, AgentDirectoryError> {
        self.directory
            .get(id)
            .ok_or_else(|| AgentDirectoryError::UnknownAgent(id.to_owned()))
    }

    /// Registers (or replaces) a card in any format `parse_card` reads; returns it as stored.
    pub async fn register(&self, card: Value) -> Result<AgentCard, AgentDirectoryError> {
        let card = parse_card(card).map_err(AgentDirectoryError::InvalidCard)?;
        self.save(card).await
    }

    /// Reads a card from a running agent (A2A) or server (MCP) and registers it.
    pub async fn discover(
        &self,
        request: &DiscoverRequest,
    ) -> Result<AgentCard, AgentDirectoryError> {
        let url = &request.url;
        self.http
            .policy()
            .check(url)
            .map_err(AgentDirectoryError::UrlRefused)?;
        let card = match request.protocol {
            DiscoverProtocol::A2a => {
                let value = self.http.fetch_card(url).await.map_err(|source| {
                    AgentDirectoryError::CardUnreachable {
                        url: url.clone(),
                        source,
                    }
                })?;
                parse_card(value).map_err(AgentDirectoryError::InvalidCard)?
            }
            DiscoverProtocol::Mcp => {
                let card = self
                    .mcp
                    .discover(url, request.name.as_deref())
                    .await
                    .map_err(|source| AgentDirectoryError::ToolsUnreachable {
                        url: url.clone(),
                        source,
                    })?;
                card.validate().map_err(AgentDirectoryError::InvalidCard)?;
                card
            }
        };
        self.save(card).await
    }

    /// Adds a rating (0 to 5) to the card's running mean; returns the card as stored.
    pub async fn rate(&self, id: &str, rating: f64) -> Result<AgentCard, AgentDirectoryError> {
        if !(0.0..=MAX_RATING).contains(&rating) {
            return Err(AgentDirectoryError::RatingOutOfRange(rating));
        }
        let _guard = self.rating.lock().await;
        let mut card = self.get(id)?.as_ref().clone();
        // A rating given at registration counts as the first one.
        if card.rating_count == 0 && card.rating > 0.0 {
            card.rating_count = 1;
        }
        let count = card.rating_count as f64;
        card.rating = ((card.rating * count + rating) / (count + 1.0)).clamp(0.0, MAX_RATING);
        card.rating_count += 1;
        self.save(card).await
    }

    /// Removes a card from the store and the index; `UnknownAgent` if neither had it.
    pub async fn remove(&self, id: &str) -> Result<(), AgentDirectoryError> {
        let deleted = self.store.delete_agent(id).await?;
        let removed = self.directory.remove(id)?;
        if deleted || removed {
            Ok(())
        } else {
            Err(AgentDirectoryError::UnknownAgent(id.to_owned()))
        }
    }

    /// Full-text search with filters, best first.
    pub fn search(&self, query: &AgentQuery) -> Result<Vec<SearchHit>, AgentDirectoryError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let hits = self.directory.find(
            &query.text,
            &query.capabilities,
            query.max_price,
            query.min_rating,
            limit,
        )?;
        Ok(hits
            .into_iter()
            .map(|(agent, relevance)| SearchHit { relevance, agent })
            .collect())
    }

    /// Persists a card, then indexes it: the store is the truth other processes reload from, so
    /// a card is never searchable here without being stored.
    async fn save(&self, card: AgentCard) -> Result<AgentCard, AgentDirectoryError> {
        if card.protocol != Protocol::Builtin {
            let urls = std::iter::once(&card.url).chain(card.endpoints.iter().map(|e| &e.endpoint));
            for url in urls {
                self.http
                    .policy()
                    .check(url)
                    .map_err(AgentDirectoryError::UrlRefused)?;
            }
        }
        self.store.put_agent(&card).await?;
        self.directory.upsert(vec![card.clone()])?;
        Ok(card)
    }
}
