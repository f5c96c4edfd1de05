//! `AgentDirectory`: every change to the directory (register, discover, rate, remove) and its
//! queries, in one place the HTTP API, the CLI and the web console call alike, so the URL
//! policy, the store-then-index order and the rating arithmetic are not each caller's to repeat.

use std::future::Future;
use std::hash::Hasher;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::Directory;
use super::hasher::WordHasher;
use super::health::AgentHealth;
use super::register::{CardError, parse_card};
use super::service_error::AgentDirectoryError;
use crate::agents::AgentError;
use crate::agents::http::HttpAgents;
use crate::agents::mcp::McpClient;
use crate::card::{AgentCard, MAX_RATING, Protocol};
use crate::store::Store;

/// Search results a query gets when it does not say how many.
const DEFAULT_LIMIT: usize = 20;

/// Most search results one query gets, so a client cannot ask for the whole directory ranked.
const MAX_LIMIT: usize = 200;

/// Cards a directory page has when the client does not say.
pub const DEFAULT_PAGE: usize = 100;

/// Most cards one directory page has, so no response carries the whole directory.
pub const MAX_PAGE: usize = 1000;

/// How many locks order the changes to cards: changes to one id always take the same one.
const WRITE_STRIPES: usize = 64;

/// The directory as a service: the in-memory `Directory` (shared with the engine's nodes), the
/// store the cards persist in, and the outbound HTTP transport whose URL policy decides which
/// agents may be registered and which discovery fetches cards through.
pub struct AgentDirectory {
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    http: HttpAgents,
    mcp: McpClient,
    /// Changes to one card id, each a store write then an index update, run one at a time
    /// (by stripe of the id): two racing registrations of a card leave the index with the one
    /// the store kept. Held across the store write, never across anything a client controls.
    writes: Arc<[tokio::sync::Mutex<()>]>,
}

/// A page of the directory in id order.
#[derive(Debug, Clone)]
pub struct CardPage {
    pub cards: Vec<Arc<AgentCard>>,
    /// The id to continue after; `None` on the last page.
    pub next_after: Option<String>,
}

/// A page of search hits, best first.
#[derive(Debug, Clone)]
pub struct HitPage {
    pub hits: Vec<SearchHit>,
    /// How many hits to skip for the next page; `None` on the last page.
    pub next_skip: Option<usize>,
}

/// What kind of server `discover` reads a card from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverProtocol {
    /// An A2A agent: its card is at `/.well-known/agent-card.json` under the URL.
    #[default]
    A2a,
    /// An MCP server over streamable HTTP: its tools become the card's skills.
    Mcp,
}

/// Body of `POST /api/agents/discover`, and what `baton agents discover` sends.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// How many of the best hits to skip: the page the client asks for.
    pub skip: usize,
}

/// One search hit, as the API answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub relevance: f32,
    #[schema(value_type = AgentCard)]
    pub agent: Arc<AgentCard>,
    /// What this process measured of the agent's calls, which ranks it beside its rating.
    pub health: AgentHealth,
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
            writes: (0..WRITE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Up to `limit` cards (within 1..=`MAX_PAGE`) ordered by id, after the id `after`.
    pub fn page(&self, after: Option<&str>, limit: usize) -> CardPage {
        let limit = limit.clamp(1, MAX_PAGE);
        // One more than asked tells whether there is a next page.
        let mut cards = self.directory.page(after, limit + 1);
        let more = cards.len() > limit;
        cards.truncate(limit);
        let next_after = more.then(|| cards.last().map(|c| c.id.clone())).flatten();
        CardPage { cards, next_after }
    }

    /// How many cards the directory holds.
    pub fn len(&self) -> usize {
        self.directory.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.directory.is_empty()
    }

    /// The card with this id.
    pub fn get(&self, id: &str) -> Result<Arc<AgentCard>, AgentDirectoryError> {
        self.directory
            .get(id)
            .ok_or_else(|| AgentDirectoryError::UnknownAgent(id.to_owned()))
    }

    /// Registers (or replaces) a card in any format `parse_card` reads; returns it as stored.
    pub async fn register(&self, card: Value) -> Result<AgentCard, AgentDirectoryError> {
        let card = parse_card(card)?;
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
                    unreachable_or_refused(source, |source| AgentDirectoryError::CardUnreachable {
                        url: url.clone(),
                        source,
                    })
                })?;
                parse_card(value)?
            }
            DiscoverProtocol::Mcp => {
                let card = self
                    .mcp
                    .discover(url, request.name.as_deref())
                    .await
                    .map_err(|source| {
                        unreachable_or_refused(source, |source| {
                            AgentDirectoryError::ToolsUnreachable {
                                url: url.clone(),
                                source,
                            }
                        })
                    })?;
                card.validate().map_err(CardError::Invalid)?;
                card
            }
        };
        self.save(card).await
    }

    /// Adds a rating (0 to 5) to the card's running mean; returns the card as stored. The
    /// store does the arithmetic in one atomic step on the stored card, so ratings racing on
    /// any number of processes all count; the index takes the card the store returns.
    pub async fn rate(&self, id: &str, rating: f64) -> Result<AgentCard, AgentDirectoryError> {
        if !(0.0..=MAX_RATING).contains(&rating) {
            return Err(AgentDirectoryError::RatingOutOfRange(rating));
        }
        let key = id.to_owned();
        // In order with this process's other changes to the card, so the index ends with the
        // latest rating the store returned here (another process's is reloaded when announced).
        let rated = self
            .in_order(id, move |store, directory| async move {
                let Some(rated) = store.rate_agent(&key, rating).await? else {
                    return Ok(None);
                };
                // With the revision the rating wrote: a snapshot taken later then holds the
                // card as current, and the next start-up does not reload it.
                let mut prepared = directory.prepare_card(&rated.card)?;
                prepared.set_revision(Some(rated.revision));
                directory.put(prepared)?;
                Ok(Some(rated.card))
            })
            .await?;
        rated.ok_or_else(|| AgentDirectoryError::UnknownAgent(id.to_owned()))
    }

    /// Removes a card from the store and the index; `UnknownAgent` if neither had it.
    pub async fn remove(&self, id: &str) -> Result<(), AgentDirectoryError> {
        let key = id.to_owned();
        // Whole: a client that goes away mid-request cannot leave the card deleted from the
        // store but still in the index.
        let found = self
            .in_order(id, move |store, directory| async move {
                let deleted = store.delete_agent(&key).await?;
                let removed = directory.remove(&key)?;
                Ok(deleted || removed)
            })
            .await?;
        if found {
            tracing::info!(agent = id, "agent card removed");
            Ok(())
        } else {
            Err(AgentDirectoryError::UnknownAgent(id.to_owned()))
        }
    }

    /// Brings one card of the in-memory directory in line with the store after another process
    /// changed it (PostgreSQL announces the id), so every process ranks with the same cards.
    pub async fn reload(&self, id: &str) -> Result<(), AgentDirectoryError> {
        let key = id.to_owned();
        // In order with this process's own changes to the card, and whole even if the caller
        // is dropped: whatever the store holds last is what the index ends with.
        self.in_order(id, move |store, directory| async move {
            match store.agent(&key).await? {
                Some(card) => directory.upsert(vec![card])?,
                None => {
                    directory.remove(&key)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Full-text search with filters, best first: the page `query.skip..` of `query.limit`.
    pub fn search(&self, query: &AgentQuery) -> Result<HitPage, AgentDirectoryError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        // One more than asked tells whether there is a next page.
        let mut hits = self.directory.find(
            &query.text,
            &query.capabilities,
            query.max_price,
            query.min_rating,
            query.skip,
            limit + 1,
        )?;
        let more = hits.len() > limit;
        hits.truncate(limit);
        Ok(HitPage {
            hits: hits
                .into_iter()
                .map(|(agent, relevance)| SearchHit {
                    relevance,
                    health: self.directory.health(&agent.id),
                    agent,
                })
                .collect(),
            next_skip: more.then_some(query.skip + limit),
        })
    }

    /// Persists a card, then indexes it: the store is the truth other processes reload from, so
    /// a card is never searchable here without being stored. Failures are returned, not logged:
    /// the caller that handles one logs it (the API logs every 5xx once).
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
        // Analyzed before any lock or write: the write path only splices.
        let mut prepared = self.directory.prepare_card(&card)?;
        // Whole: a client that goes away mid-request cannot leave the card in the store but
        // not in the index (or the other way round).
        let id = card.id.clone();
        let card = self
            .in_order(&id, move |store, directory| async move {
                let revision = store.put_agent(&card).await?;
                prepared.set_revision(Some(revision));
                directory.put(prepared)?;
                Ok(card)
            })
            .await?;
        tracing::info!(agent = %card.id, protocol = ?card.protocol, "agent card saved");
        Ok(card)
    }

    /// Runs a change to the card `id` (store write, then index) in its own task, awaited, so
    /// a caller dropped mid-change cannot cut it in half, and after every earlier change to
    /// that id on this process, under the id's stripe lock.
    async fn in_order<T, F, Fut>(&self, id: &str, change: F) -> Result<T, AgentDirectoryError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>, Arc<Directory>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, AgentDirectoryError>> + Send + 'static,
    {
        let (store, directory, writes) = (
            self.store.clone(),
            self.directory.clone(),
            self.writes.clone(),
        );
        let stripe = stripe(id);
        tokio::spawn(async move {
            // Held across the store write and the index update: one id's changes in order.
            let _order = writes[stripe].lock().await;
            change(store, directory).await
        })
        .await
        .map_err(AgentDirectoryError::Interrupted)?
    }
}

/// A discovery that failed: refused by the URL policy on the way (a name resolving to a blocked
/// address, a redirect to one) is said as such, anything else is `unreachable`.
fn unreachable_or_refused(
    source: AgentError,
    unreachable: impl FnOnce(AgentError) -> AgentDirectoryError,
) -> AgentDirectoryError {
    match source.refusal() {
        Some(refused) => AgentDirectoryError::UrlRefused(refused.clone()),
        None => unreachable(source),
    }
}

/// The write lock stripe of a card id.
fn stripe(id: &str) -> usize {
    // FNV-1a: stable and cheap; the spread only needs to be fair, not secret.
    let mut hasher = WordHasher::default();
    hasher.write(id.as_bytes());
    (hasher.finish() % WRITE_STRIPES as u64) as usize
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::agents::policy::UrlPolicy;
    use crate::store::{self, StoreOptions};

    async fn service(allow: &[&str]) -> AgentDirectory {
        let store = store::connect("memory://", &StoreOptions::default())
            .await
            .expect("memory store");
        let http = HttpAgents::new(
            UrlPolicy::new(allow.iter().map(|a| (*a).to_owned()).collect()),
            1 << 20,
        )
        .expect("http");
        AgentDirectory::new(Arc::new(Directory::new()), store, http)
    }

    fn card(id: &str, url: &str) -> Value {
        json!({
            "id": id, "name": "Forecaster", "url": url, "description": "Weather forecasts",
            "rating": 4.0,
            "skills": [{"id": "f", "name": "Forecast", "description": "forecast", "tags": ["weather"]}]
        })
    }

    #[tokio::test]
    async fn a_card_is_registered_rated_found_and_removed() {
        let agents = service(&[]).await;
        let stored = agents
            .register(card("fc", "http://127.0.0.1:9/a2a"))
            .await
            .expect("registered");
        assert_eq!(stored.protocol, Protocol::A2a);
        let rated = agents.rate("fc", 2.0).await.expect("rated");
        assert_eq!((rated.rating, rated.rating_count), (3.0, 2));
        let hits = agents
            .search(&AgentQuery {
                text: "forecast".into(),
                ..AgentQuery::default()
            })
            .expect("search");
        assert_eq!(hits.hits.len(), 1);
        assert_eq!(
            hits.hits[0].agent.rating, 3.0,
            "the index has the rated card"
        );
        agents.remove("fc").await.expect("removed");
        assert!(matches!(
            agents.get("fc"),
            Err(AgentDirectoryError::UnknownAgent(_))
        ));
        assert!(matches!(
            agents.remove("fc").await,
            Err(AgentDirectoryError::UnknownAgent(_))
        ));
    }

    #[tokio::test]
    async fn refusals_say_which_rule() {
        let agents = service(&["127.0.0.1:9"]).await;
        assert!(matches!(
            agents.register(card("far", "http://10.0.0.1/a2a")).await,
            Err(AgentDirectoryError::UrlRefused(_))
        ));
        assert!(matches!(
            agents.register(json!({"name": "no url"})).await,
            Err(AgentDirectoryError::InvalidCard(_))
        ));
        assert!(matches!(
            agents.rate("nobody", 9.0).await,
            Err(AgentDirectoryError::RatingOutOfRange(_))
        ));
        assert!(matches!(
            agents.rate("nobody", 3.0).await,
            Err(AgentDirectoryError::UnknownAgent(_))
        ));
        let request: DiscoverRequest =
            serde_json::from_value(json!({"url": "ftp://127.0.0.1:9/mcp", "protocol": "mcp"}))
                .expect("request");
        assert_eq!(request.protocol, DiscoverProtocol::Mcp);
        assert!(matches!(
            agents.discover(&request).await,
            Err(AgentDirectoryError::UrlRefused(_))
        ));
        assert!(agents.is_empty(), "nothing refused was kept");
    }

    #[test]
    fn the_discover_protocol_defaults_to_a2a_and_refuses_other_words() {
        for body in [
            json!({"url": "http://h"}),
            json!({"url": "http://h", "protocol": null}),
            json!({"url": "http://h", "protocol": "a2a"}),
        ] {
            let request: DiscoverRequest = serde_json::from_value(body).expect("request");
            assert_eq!(request.protocol, DiscoverProtocol::A2a);
        }
        for protocol in ["A2A", "rest", ""] {
            let body = json!({"url": "http://h", "protocol": protocol});
            assert!(serde_json::from_value::<DiscoverRequest>(body).is_err());
        }
    }
}
