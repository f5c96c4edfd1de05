//! Assembles a running server from settings: store, directory, planner, agents, engine, router.
//! Kept apart from `main` so tests build the same thing on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::agents::builtin::{self, BuiltinAgents};
use crate::agents::http::HttpAgents;
use crate::agents::policy::{OutboundAllow, UrlPolicy};
use crate::agents::{AgentDispatcher, AgentError};
use crate::api::{self, AppState};
use crate::auth::limits::{KeyLimits, LimitSettings};
use crate::auth::{Authenticator, MetricsToken};
use crate::config::{PlannerKind, Settings};
use crate::directory::snapshot_writer::SnapshotWriter;
use crate::directory::{AgentDirectory, Directory, DirectoryError};
use crate::engine::{Engine, EngineError, Takeover};
use crate::metrics::Metrics;
use crate::nodes::Services;
use crate::planner::Planner;
use crate::planner::llm::LlmPlanner;
use crate::planner::llm::client::ChatClient;
use crate::planner::rules::RulesPlanner;
use crate::state::WorkerId;
use crate::store::reaper::Reaper;
use crate::store::{self, Store, StoreError, StoreOptions};
use crate::webhooks::Deliverer;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("loading the directory: {0}")]
    DirectoryLoad(#[from] crate::directory::LoadError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("agent transport: {0}")]
    Agents(#[from] AgentError),
    #[error("demo agent cards: {0}")]
    DemoCards(#[from] serde_json::Error),
    #[error("planner: {0}")]
    Planner(#[from] crate::planner::PlannerError),
    /// `--planner llm` without what it needs; the text names the flag.
    #[error("{0}")]
    LlmSettings(&'static str),
    #[error("LLM client: {0}")]
    LlmClient(#[from] crate::planner::llm::client::LlmError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// No keys file and a non-loopback address, without `--insecure-no-auth`.
    #[error(
        "refusing to listen on {addr} without authentication: give --api-keys-file (see `baton keys add`), listen on loopback (127.0.0.1), or pass --insecure-no-auth to let anyone who reaches the port read and change everything"
    )]
    OpenToNetwork { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// Builds the engine the server and the in-process CLI share: opens the store, registers the
/// demo agents (unless turned off), and loads the directory from the store.
pub async fn build_engine(settings: &Settings) -> Result<Engine, StartupError> {
    build_metered_engine(settings, Metrics::default()).await
}

/// `build_engine` reporting to `metrics` (the store's writer included).
async fn build_metered_engine(
    settings: &Settings,
    metrics: Metrics,
) -> Result<Engine, StartupError> {
    let options = StoreOptions {
        metrics: metrics.clone(),
        ..settings.store_options()
    };
    let store = store::connect(&settings.database_url, &options).await?;
    metered_engine_over(store, settings, metrics).await
}

/// The engine over an already opened store (tests wrap stores to watch what is written).
pub async fn engine_over(
    store: Arc<dyn Store>,
    settings: &Settings,
) -> Result<Engine, StartupError> {
    metered_engine_over(store, settings, Metrics::default()).await
}

/// `engine_over` reporting to `metrics`.
async fn metered_engine_over(
    store: Arc<dyn Store>,
    settings: &Settings,
    metrics: Metrics,
) -> Result<Engine, StartupError> {
    if !settings.no_demo_agents {
        // Refresh the demo cards' definitions, keeping the ratings users gave them.
        // One lookup per demo card: the directory may hold 100k others.
        for mut card in builtin::demo_cards()? {
            let previous = store.agent(&card.id).await?;
            if let Some(previous) = &previous {
                card.rating = previous.rating;
                card.rating_count = previous.rating_count;
            }
            if previous.as_ref() != Some(&card) {
                store.put_agent(&card).await?;
            }
        }
    }
    let directory = Arc::new(Directory::new());
    directory.load(store.as_ref()).await?;
    let builtin = Arc::new(BuiltinAgents::new(settings.demo_latencies()));
    let http = HttpAgents::new(
        UrlPolicy::new(settings.agent_url_allow.clone())
            .with_outbound_allow(OutboundAllow::new(settings.outbound_allow.clone())),
        settings.agent_max_response_bytes,
    )?;
    let services = Services {
        planner: build_planner(settings, &directory)?,
        directory,
        agents: AgentDispatcher::new(builtin, http),
        worker: WorkerId::new(format!("baton-{}", uuid::Uuid::now_v7().simple())),
        calls: settings.call_policy(),
        metrics,
    };
    Ok(Engine::new(store, services, settings.lease()))
}

/// The planner the settings name, over `directory`.
pub fn build_planner(
    settings: &Settings,
    directory: &Arc<Directory>,
) -> Result<Arc<dyn Planner>, StartupError> {
    match settings.planner {
        PlannerKind::Rules => Ok(Arc::new(RulesPlanner::new(directory.clone()))),
        PlannerKind::Llm => {
            let base_url = settings
                .llm_base_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| {
                    StartupError::LlmSettings(
                        "--planner llm needs --llm-base-url (or BATON_LLM_BASE_URL): an OpenAI-compatible endpoint such as http://127.0.0.1:11434/v1 (Ollama) or https://api.openai.com/v1",
                    )
                })?;
            let model = settings
                .llm_model
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| {
                    StartupError::LlmSettings(
                        "--planner llm needs --llm-model (or BATON_LLM_MODEL): the model name, such as llama3.1",
                    )
                })?;
            let client = ChatClient::new(
                base_url,
                model,
                settings.llm_api_key.clone(),
                settings.llm_client_options(),
            )?;
            tracing::info!(
                endpoint = client.endpoint(),
                model,
                key = settings.llm_api_key.is_some(),
                "llm planner"
            );
            let planner = LlmPlanner::new(
                client,
                RulesPlanner::new(directory.clone()),
                settings.llm_deadline(),
            )?;
            Ok(Arc::new(planner))
        }
    }
}

/// The keys the server accepts (`--api-keys-file`), or `None` when authentication is off, which
/// is allowed only on a loopback address or with `--insecure-no-auth`, and said loudly.
fn authentication(
    settings: &Settings,
    listener: &TcpListener,
) -> Result<Option<Arc<Authenticator>>, StartupError> {
    if let Some(path) = &settings.api_keys_file {
        let auth = Authenticator::load(path)?;
        tracing::info!(keys = auth.key_count(), path = %path.display(), "API keys required");
        return Ok(Some(Arc::new(auth)));
    }
    let addr = listener.local_addr().map_err(|source| StartupError::Bind {
        addr: settings.addr.clone(),
        source,
    })?;
    if !addr.ip().is_loopback() {
        if !settings.insecure_no_auth {
            return Err(StartupError::OpenToNetwork { addr });
        }
        tracing::warn!(%addr, "AUTHENTICATION IS OFF on a network address (--insecure-no-auth): anyone who reaches this port can read, answer and delete every thread and change the agent directory");
    } else {
        tracing::warn!(%addr, "authentication is off (no --api-keys-file): every local caller may read and change everything");
    }
    Ok(None)
}

/// A bound, not yet serving, server.
pub struct Application {
    listener: TcpListener,
    engine: Engine,
    agents: Arc<AgentDirectory>,
    max_body_bytes: usize,
    ws_max_watches: usize,
    input: crate::api::input_limits::InputLimits,
    public_url: Option<String>,
    auth: Option<Arc<Authenticator>>,
    metrics_token: Option<MetricsToken>,
    key_limits: LimitSettings,
    background: BackgroundTasks,
    /// Writes the directory's snapshot; `None` when `--directory-snapshot-interval 0`.
    snapshots: Option<Arc<SnapshotWriter>>,
}

/// The server's own tasks (the lease watch, other processes' events, the webhook deliverer, the
/// reaper of expired threads):
/// owned here and aborted when the server stops or is dropped, so that no task outlives the
/// server that started it.
struct BackgroundTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Application {
    /// Binds the address (port 0 picks a free one) and resumes runs a crash cut short.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        // The one `Metrics` of the server: the store, the engine and the API report to it.
        let engine = build_metered_engine(settings, Metrics::new()).await?;
        let listener =
            TcpListener::bind(&settings.addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.addr.clone(),
                    source,
                })?;
        let auth = authentication(settings, &listener)?;
        let resumed = engine.take_over_expired_runs(Takeover::AtStartup).await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed interrupted runs");
        }
        let mut background = vec![engine.spawn_lease_watch()];
        let agents = Arc::new(AgentDirectory::new(
            engine.services().directory.clone(),
            engine.store().clone(),
            engine.services().agents.http().clone(),
        ));
        background.extend(engine.spawn_remote_events(agents.clone()).await?);
        background.push(Deliverer::new(&engine, &settings.webhooks())?.spawn());
        let snapshots = (settings.directory_snapshot_interval > 0).then(|| {
            SnapshotWriter::new(engine.services().directory.clone(), engine.store().clone())
        });
        if let Some(writer) = &snapshots {
            let interval = std::time::Duration::from_secs(settings.directory_snapshot_interval);
            background.push(writer.spawn(interval));
        }
        background.extend(
            Reaper::new(
                engine.store().clone(),
                settings.expiry(),
                engine.services().metrics.clone(),
            )
            .spawn(),
        );
        if let Some(auth) = &auth {
            background.push(auth.clone().spawn_reload_on_sighup());
        }
        Ok(Application {
            listener,
            auth,
            metrics_token: settings.metrics_token.clone(),
            key_limits: settings.key_limits(),
            engine,
            agents,
            max_body_bytes: settings.max_body_bytes,
            ws_max_watches: settings.ws_max_watches,
            input: settings.input_limits(),
            public_url: settings.public_url.clone(),
            background: BackgroundTasks(background),
            snapshots,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The engine behind the server.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The directory service the API serves, for callers in the same process.
    pub fn agents(&self) -> &Arc<AgentDirectory> {
        &self.agents
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = api::router(AppState {
            engine: self.engine,
            agents: self.agents,
            max_body_bytes: self.max_body_bytes,
            ws_max_watches: self.ws_max_watches,
            input: self.input,
            public_url: self.public_url,
            limits: self.auth.as_ref().map(|_| KeyLimits::new(self.key_limits)),
            auth: self.auth,
            metrics_token: self.metrics_token,
        });
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        drop(self.background);
        // After the tasks (the periodic writer among them) stopped: the last changes go into
        // one more snapshot, so the next start-up reloads none.
        if let Some(writer) = self.snapshots {
            writer.write_logged().await;
        }
        served
    }
}
