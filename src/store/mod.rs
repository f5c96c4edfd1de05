//! Persistence: thread checkpoints and agent cards behind one trait, with a backend per database.
//!
//! Every checkpoint write is a compare-and-set on the thread's version, so two writers racing on
//! one thread cannot both win, whether they live in one process or several.

pub mod memory;
pub mod sqlite;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::directory::card::AgentCard;
use crate::state::{Node, ThreadState};

/// Store failures. `Conflict` is expected under races and maps to 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("thread {thread_id} was changed by another request (expected version {expected})")]
    Conflict { thread_id: String, expected: i64 },
    #[error("database: {0}")]
    Database(String),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?} (use sqlite://PATH or memory://)")]
    UnsupportedUrl(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration: {e}"))
    }
}

/// A thread's state after a node, with the node to run next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub thread_id: String,
    /// Bumped by every write; the compare-and-set key.
    pub version: i64,
    /// Nodes executed in this thread so far.
    pub step: i64,
    pub next: Node,
    pub state: ThreadState,
}

/// The persistence every backend provides.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes `checkpoint` if the stored version is `checkpoint.version - 1`; version 1 creates
    /// the thread and conflicts if it exists.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// The latest checkpoint of a thread.
    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError>;

    /// Threads whose run was cut short (status `processing`), to resume at start-up.
    async fn unfinished_threads(&self) -> Result<Vec<String>, StoreError>;

    /// Adds or replaces an agent card.
    async fn put_agent(&self, card: &AgentCard) -> Result<(), StoreError>;

    /// Every stored agent card.
    async fn agents(&self) -> Result<Vec<AgentCard>, StoreError>;

    /// Removes a card; false if there was none.
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError>;

    /// Answers when the database does (health checks).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// How hard SQLite pushes each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// fsync on every commit: survives power loss.
    Full,
    /// WAL without fsync on commit: survives a killed process, may lose the last commits on
    /// power loss.
    Normal,
}

/// Store settings taken from the command line.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sqlite_sync: SqliteSync,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_sync: SqliteSync::Full,
        }
    }
}

/// Opens the store a URL names: `sqlite://PATH` (created if missing) or `memory://`.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url == "memory://" || url == "memory" {
        return Ok(Arc::new(memory::MemoryStore::default()));
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(sqlite::SqliteStore::open(path, options).await?));
    }
    Err(StoreError::UnsupportedUrl(url.to_owned()))
}

/// Milliseconds since the Unix epoch, for `created_at`/`updated_at` columns.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
