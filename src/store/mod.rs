//! Persistence: thread checkpoints and agent cards behind one trait, with a backend per database.
//!
//! Every checkpoint write is a compare-and-set on the thread's version, so two writers racing on
//! one thread cannot both win, whether they live in one process or several.

pub mod delta;
mod dialect;
pub mod expiry;
mod group;
pub mod memory;
mod origin;
pub mod outbox;
mod pending;
pub mod postgres;
pub mod reaper;
pub mod revision;
mod rows;
pub mod snapshot_parts;
mod sql;
pub mod sqlite;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::access::Owner;
use crate::card::AgentCard;
use crate::metrics::Metrics;
pub use expiry::{ExpiryBatch, ExpiryPolicy};
pub use origin::Origin;
pub use outbox::{
    AttemptOutcome, AttemptWrite, Delivery, DeliveryClaim, DeliveryRecord, DeliveryState,
    WebhookAttempt, WebhookEvent,
};
pub use pending::{Chain, PendingCheckpoint};
pub use snapshot_parts::{SnapshotHead, StoredSnapshot};
pub use sql::{THREADS_BY_STATUS, list_sql, owned_list_sql};

use crate::state::{ForkPoint, Node, ThreadState, ThreadStatus, Turn, WorkerId};

/// Store failures. `Conflict` is expected under races and maps to 409; the others keep their
/// cause as `source` for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("thread {thread_id} was changed by another request (expected version {expected})")]
    Conflict { thread_id: String, expected: i64 },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A group commit failed and was rolled back: every write of the group gets the one error.
    #[error("database: group commit: {0}")]
    GroupCommit(#[source] Arc<sqlx::Error>),
    /// The writer's connection was lost mid-group (PostgreSQL): whether the group committed is
    /// unknown; every write of the group gets the one error, and the writer reconnects.
    #[error(
        "database: connection lost during a group commit (its writes may or may not have \
         committed): {0}"
    )]
    ConnectionLost(#[source] Arc<sqlx::Error>),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data could not be read: {what}: {source}")]
    Corrupt {
        /// Which record (thread, history, card) did not decode.
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("data could not be encoded for storing: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the in-memory store's lock was poisoned by a panic")]
    Poisoned,
    #[error("unsupported database url {0:?} (use sqlite://PATH, postgres://… or memory://)")]
    UnsupportedUrl(String),
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// A record that did not decode, named for the log.
    pub(crate) fn corrupt(what: impl Into<String>, source: serde_json::Error) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            source,
        }
    }
}

/// A thread's state after a node, with the node to run next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub thread_id: String,
    /// Bumped by every write; the compare-and-set key.
    pub version: i64,
    /// Nodes executed in this thread so far.
    pub step: i64,
    pub next: Node,
    /// The thread's current turn (tasks, plan, results, questions and answers) and the count of
    /// its earlier turns, which live in the turn log (`Store::turns`).
    #[schema(value_type = Object)]
    pub state: ThreadState,
}

/// Who runs a thread, and until when. The run renews it while it works; once it has expired,
/// another process may take the run over from the last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The process running the thread (column `lease_owner`).
    pub worker: WorkerId,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// One checkpoint to write, with what the store needs besides it.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointWrite<'a> {
    pub checkpoint: &'a Checkpoint,
    /// What produced this checkpoint (history, events).
    pub node: Origin,
    /// The state this write replaces (version - 1); the history keeps the difference.
    pub previous: Option<&'a ThreadState>,
    /// The process writing (column `writer`; events from other processes are told apart by it).
    pub worker: &'a WorkerId,
    /// The run's lease; `None` releases it (the run stopped).
    pub lease: Option<&'a Lease>,
    /// Earlier turns this write closes (`ThreadState::take_unlogged_turns`): appended to the
    /// thread's turn log in the same statement as the checkpoint, at positions
    /// `state.earlier_turns - closed.len()` onwards, so a crash neither loses nor doubles one.
    pub closed: &'a [Turn],
    /// On a fork's first write: the thread forked from, whose logged turns before the fork
    /// point (the first `state.earlier_turns - closed.len()`) the fork's log starts with,
    /// copied in the same statement.
    pub turns_from: Option<&'a str>,
    /// The run's chain when the write is queued behind others of the run not yet committed
    /// (`Chain`); `None` for a write its caller waits for.
    pub chain: Option<Chain>,
}

impl CheckpointWrite<'_> {
    /// The position in the turn log of the first turn in `closed`.
    pub fn first_closed(&self) -> usize {
        self.checkpoint
            .state
            .earlier_turns
            .saturating_sub(self.closed.len())
    }
}

/// An earlier turn as the thread's turn log keeps it: its position (from 0, as Baton's A2A task
/// ids count turns) and the turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoggedTurn {
    pub turn: usize,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub body: Turn,
}

/// A change another process may have made.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A checkpoint was committed.
    Checkpoint(StoredEvent),
    /// The card with this id was added, changed or removed.
    Agent(String),
}

/// A committed checkpoint as the database announces it to every process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredEvent {
    pub thread_id: String,
    pub node: Origin,
    pub status: ThreadStatus,
    pub next: Node,
    pub step: i64,
    pub version: i64,
    /// The process that wrote it (`writer` in the notification, as in the database column).
    #[serde(rename = "writer")]
    pub worker: WorkerId,
}

/// One past checkpoint of a thread, without its state (see `Store::checkpoint_at`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub version: i64,
    pub step: i64,
    /// What produced it.
    pub node: Origin,
    /// The node that ran (or runs) after it.
    pub next: Node,
    pub status: ThreadStatus,
    /// The process that wrote it (`writer` in the JSON, public API, and in the database).
    #[serde(rename = "writer")]
    pub worker: WorkerId,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// On the first checkpoint of a fork (`node` = `fork`): the thread and version it was forked
    /// from. The store does not keep it per entry; the engine fills it from the fork's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkPoint>,
}

/// Where a page of the thread list starts: after the thread last seen, in the list's order
/// (`updated_at` then `thread_id`, both descending), so pages neither repeat nor skip a thread
/// while new ones are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// The last listed thread's `updated_at`.
    pub updated_at: i64,
    /// The last listed thread's id.
    pub thread_id: String,
}

/// One page of the thread list to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadQuery {
    /// Only threads with this status.
    pub status: Option<ThreadStatus>,
    /// Only threads this owner created (a user key's list); `None`: every thread.
    pub owner: Option<Owner>,
    /// Threads after this one; `None`: from the newest.
    pub after: Option<ListCursor>,
    /// How many threads at most.
    pub limit: u32,
}

/// A thread as the list shows it: what the head row keeps beside the state, so listing reads no
/// state.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ThreadSummary {
    pub thread_id: String,
    pub status: ThreadStatus,
    /// The head's version (what a fork of the latest checkpoint names).
    pub version: i64,
    /// Milliseconds since the Unix epoch: the first checkpoint.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch: the latest checkpoint (the list's order).
    pub updated_at: i64,
    /// Turns of the thread, the current one included.
    pub turns: i64,
    /// The thread's first prompt.
    pub prompt: String,
    /// The oldest question waiting for the user, if any.
    pub question_for_user: Option<String>,
}

impl ThreadSummary {
    /// Where the page after this thread starts.
    pub fn cursor(&self) -> ListCursor {
        ListCursor {
            updated_at: self.updated_at,
            thread_id: self.thread_id.clone(),
        }
    }
}

/// What a list item shows of a state, computed at each write: turns (the current one included),
/// the first prompt, the oldest pending question.
pub(crate) fn summary_of(state: &ThreadState) -> (i64, &str, Option<&str>) {
    let turns = i64::try_from(state.turn_index()).unwrap_or(i64::MAX - 1) + 1;
    let prompt = state.thread_prompt();
    let question = state.pending_question().map(|q| q.text.as_str());
    (turns, prompt, question)
}

/// A card as a rating left it, with the revision that write set: the directory records it, so
/// a snapshot taken later knows the rated card is current (as `put_agent`'s revision does).
#[derive(Debug, Clone, PartialEq)]
pub struct RatedCard {
    pub card: AgentCard,
    pub revision: i64,
}

/// A stored card as the `agents` table keeps it: its id and its JSON, unparsed, with the
/// revision its last write set (`None` for rows written before revisions existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    pub id: String,
    pub json: String,
    pub revision: Option<i64>,
}

/// What the engine and the directory need from a database; every backend keeps the same
/// compare-and-set and lease rules, so the engine never knows which one it runs on.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes a checkpoint if the stored version is `version - 1` (version 1 creates the thread
    /// and conflicts if it exists), records it in the thread's history, and sets or releases the
    /// run's lease.
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError>;

    /// `put_checkpoint`, returning once the write is queued behind the caller's earlier ones
    /// rather than once it has committed, so the caller can go on meanwhile (see
    /// [`PendingCheckpoint`]). A store without a write queue writes it before returning.
    async fn queue_checkpoint(
        &self,
        write: &CheckpointWrite<'_>,
    ) -> Result<PendingCheckpoint, StoreError> {
        self.put_checkpoint(write).await?;
        Ok(PendingCheckpoint::written())
    }

    /// The latest checkpoint of a thread.
    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError>;

    /// The thread's kept checkpoints, newest first.
    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError>;

    /// A past checkpoint, rebuilt from the head and the history; `None` if not kept.
    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError>;

    /// A page of threads, newest first (by their latest checkpoint), read from an index: no
    /// state is read.
    async fn list_threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError>;

    /// Deletes a thread and its history if its head is still at `version` and no run holds a
    /// live lease on it (`processing` with a lease expiring at or after `now`); false otherwise
    /// (the thread moved on, is running, or is gone).
    async fn delete_thread(
        &self,
        thread_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Bytes stored for a thread (head, history and turn log), to watch growth.
    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError>;

    /// The thread's logged earlier turns whose positions fall in `positions`, oldest first
    /// (one indexed range read, however long the thread). A thread's log only grows: a position
    /// below a head's `earlier_turns` stays readable until the thread is deleted.
    async fn turns(
        &self,
        thread_id: &str,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError>;

    /// The position of the logged turn the A2A message `message_id` opened, if one did (an
    /// index lookup: a caller resending its message is given that turn back).
    async fn turn_opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<usize>, StoreError>;

    /// Threads with a run in progress whose lease expired before `now` (or that have none).
    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError>;

    /// How many threads the store holds in each status (statuses without threads may be
    /// absent); read when `/metrics` is scraped.
    async fn threads_by_status(&self) -> Result<Vec<(ThreadStatus, u64)>, StoreError>;

    /// Extends a lease its owner still holds; false if another process took the run.
    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError>;

    /// Adds or replaces an agent card; answers the revision the write set (`revision.rs`), which
    /// the directory records so that a snapshot taken later knows the card is current.
    async fn put_agent(&self, card: &AgentCard) -> Result<i64, StoreError>;

    /// Up to `limit` stored cards as id and JSON, by id, after the id `after`: what the
    /// directory loads at start-up, a batch at a time (parsed on every core, never all of
    /// them in memory twice).
    async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CardRow>, StoreError>;

    /// One stored card: how a process brings one card in line after another process announced
    /// a change to it, without reading the whole directory.
    async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError>;

    /// Removes a card; false if there was none.
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError>;

    /// Adds a rating to a stored card's running mean (`AgentCard::add_rating`) in one atomic
    /// step of the store, so ratings racing on several processes all count; answers the card as
    /// stored after it with the revision the write set, or `None` when no card has this id.
    async fn rate_agent(&self, id: &str, rating: f64) -> Result<Option<RatedCard>, StoreError>;

    /// Answers when the database does (health checks).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Up to `limit` stored cards' ids with their revisions (`revision::new_revision`, set by
    /// every write of the card; `None`: written before revisions), by id, after `after`: what
    /// a directory restored from a snapshot compares its cards with. The default, for stores
    /// without snapshots (test wrappers), lists none.
    async fn agent_revisions(
        &self,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        Ok(Vec::new())
    }

    /// The stored cards among `ids`, in no order (absent ids are left out): the cards changed
    /// behind a snapshot, read without walking the whole table.
    async fn agent_rows_of(&self, _ids: &[String]) -> Result<Vec<CardRow>, StoreError> {
        Ok(Vec::new())
    }

    /// The head of the directory's persisted snapshot (`snapshot_parts`), if any. The default,
    /// for stores without snapshots, has none: the directory then always loads in full.
    async fn snapshot_head(&self) -> Result<Option<SnapshotHead>, StoreError> {
        Ok(None)
    }

    /// One part of a snapshot; `None` once pruned (a newer snapshot replaced it meanwhile).
    async fn snapshot_part(
        &self,
        _snapshot_id: i64,
        _part: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// Writes one part of a snapshot not yet published (one statement of its own).
    async fn put_snapshot_part(
        &self,
        _snapshot_id: i64,
        _part: i64,
        _bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes a fully written snapshot the head in one statement, unless a newer one is
    /// already (another process's); false then.
    async fn publish_snapshot(&self, _head: &SnapshotHead) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Deletes the parts of snapshots older than the head; returns how many.
    async fn prune_snapshot_parts(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Claims due webhook deliveries (see `outbox`). The default, for stores without an outbox
    /// (test wrappers), has none: their webhooks are never delivered.
    async fn claim_deliveries(
        &self,
        _claim: &DeliveryClaim<'_>,
    ) -> Result<Vec<Delivery>, StoreError> {
        Ok(Vec::new())
    }

    /// Records an attempt on a delivery the worker holds; false if it no longer does.
    async fn record_attempt(&self, _write: &AttemptWrite<'_>) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// A thread's webhook deliveries with their attempts, oldest checkpoint first.
    async fn deliveries(&self, _thread_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Deletes one batch of expired threads (see `expiry`) with their history and webhook
    /// deliveries, each only at the version it was selected at (a compare-and-set), so a thread
    /// answered or restarted meanwhile survives; returns how many went. Safe to run from several
    /// processes at once. The default, for stores that keep nothing (test wrappers), deletes
    /// nothing.
    async fn expire_threads(&self, _batch: &ExpiryBatch) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Gives a few pages the deletions freed back to the file system (SQLite's incremental
    /// vacuum, in small steps); returns the free pages left, 0 when there is nothing to do.
    async fn reclaim_space(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// What any process sharing this database writes, as it commits (checkpoints, card
    /// changes); `None` when no other process can write (then this process sees everything).
    async fn watch(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Notice>>, StoreError> {
        Ok(None)
    }

    /// Whether other processes may share this database (and hold leases on its runs). When not,
    /// a run found in progress at start-up was cut short and is resumed at once.
    fn is_shared(&self) -> bool {
        false
    }
}

/// How hard SQLite pushes each commit to disk. Parsed from its name (`full`, `normal`) so the
/// command line can take it without the store knowing about the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// fsync on every commit: survives power loss.
    Full,
    /// WAL without fsync on commit: survives a killed process, may lose the last commits on
    /// power loss.
    Normal,
}

impl SqliteSync {
    /// Every setting, for the command line's list of accepted values.
    pub const ALL: [SqliteSync; 2] = [SqliteSync::Full, SqliteSync::Normal];

    /// The name the command line and the environment use.
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSync::Full => "full",
            SqliteSync::Normal => "normal",
        }
    }
}

impl fmt::Display for SqliteSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a `SqliteSync` setting.
#[derive(Debug, thiserror::Error)]
#[error("unknown SQLite sync setting {0:?} (use full or normal)")]
pub struct UnknownSqliteSync(pub String);

impl FromStr for SqliteSync {
    type Err = UnknownSqliteSync;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SqliteSync::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| UnknownSqliteSync(name.to_owned()))
    }
}

/// Store settings taken from the command line.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sqlite_sync: SqliteSync,
    /// Checkpoints kept per thread (0: all).
    pub retention: i64,
    /// PostgreSQL connections per process, the writers' included.
    pub pool_size: u32,
    /// PostgreSQL checkpoint writers per process (group commit), each with its own connection.
    pub pg_writers: u32,
    /// Follow other processes with PostgreSQL LISTEN/NOTIFY.
    pub listen: bool,
    /// PostgreSQL `statement_timeout`, in milliseconds (0: none).
    pub statement_timeout_ms: u64,
    /// Where the SQLite writer reports its group commits (the server's own `Metrics`).
    pub metrics: Metrics,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_sync: SqliteSync::Full,
            retention: 500,
            pool_size: 10,
            pg_writers: 1,
            listen: true,
            statement_timeout_ms: 5_000,
            metrics: Metrics::default(),
        }
    }
}

/// The JSON of a checkpoint's state and of its undo (the difference to the state it replaced).
pub(crate) fn encode(write: &CheckpointWrite<'_>) -> Result<(String, Option<String>), StoreError> {
    let state = serde_json::to_string(&write.checkpoint.state).map_err(StoreError::Encode)?;
    let undo = write
        .previous
        .map(|previous| delta::undo(previous, &write.checkpoint.state).to_string());
    Ok((state, undo))
}

/// Rebuilds the state of an earlier version from the head's state and the undos of every
/// version after it, newest first.
pub(crate) fn rebuild(
    thread_id: &str,
    head_state: &str,
    undos_newest_first: impl IntoIterator<Item = Option<String>>,
) -> Result<ThreadState, StoreError> {
    let mut state: serde_json::Value = serde_json::from_str(head_state)
        .map_err(|e| StoreError::corrupt(format!("thread {thread_id}"), e))?;
    for undo in undos_newest_first.into_iter().flatten() {
        let undo: serde_json::Value = serde_json::from_str(&undo)
            .map_err(|e| StoreError::corrupt(format!("thread {thread_id} history"), e))?;
        delta::apply(&mut state, &undo);
    }
    serde_json::from_value(state)
        .map_err(|e| StoreError::corrupt(format!("thread {thread_id} history"), e))
}

/// Opens the store a URL names: `sqlite://PATH` (created if missing), `postgres://…`, or
/// `memory://`. Migrations are applied.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url == "memory://" || url == "memory" {
        return Ok(Arc::new(memory::MemoryStore::new(options.retention)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresStore::open(url, options).await?));
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(sqlite::SqliteStore::open(path, options).await?));
    }
    Err(StoreError::UnsupportedUrl(url.to_owned()))
}

/// Milliseconds since the Unix epoch: timestamps and lease expiries.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
