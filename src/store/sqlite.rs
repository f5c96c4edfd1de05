//! SQLite backend, the embedded default: one file in WAL mode.
//!
//! SQLite has one writer at a time, so checkpoint writes go through a single writer task that
//! commits whatever is queued in one transaction (group commit): under load many threads'
//! checkpoints share one fsync, and each caller still gets its own compare-and-set answer only
//! after the commit is durable. Reads use a separate pool (WAL readers never block the writer).

use std::borrow::Cow;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqlSafeStr, Sqlite};

use super::group::{GroupFailure, GroupWriter, Rounds, WriteQueue};
use super::revision::new_revision;
use super::sql::{CheckpointRow, Sql};
use super::{
    AttemptWrite, CardRow, Chain, Checkpoint, CheckpointWrite, Delivery, DeliveryClaim,
    DeliveryRecord, ExpiryBatch, HistoryEntry, Lease, LoggedTurn, PendingCheckpoint, RatedCard,
    SnapshotHead, SqliteSync, Store, StoreError, StoreOptions, ThreadQuery, ThreadSummary,
    WebhookAttempt, now_ms, rows,
};
use crate::card::AgentCard;
use crate::metrics::Metrics;
use crate::state::{ThreadStatus, WorkerId};

const READERS: u32 = 4;

/// Pages one incremental-vacuum step gives back (256 KiB at the default 4 KiB page): small, so
/// the writer is never held long (a step moves pages from the end of the file into the holes;
/// 256 pages took about 100 ms on the 2-core machine, 64 take about as long as a delete batch).
const VACUUM_STEP_PAGES: i64 = 64;

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("thread list"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0002_thread_list.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("webhooks"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0003_webhooks.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("turns"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0004_turns.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("directory snapshot"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0005_directory_snapshot.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("agent revisions"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0006_agent_revisions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("thread owner"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0007_thread_owner.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("agent revisions index"),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0008_agent_revisions_index.sql").into_sql_str(),
            false,
        ),
    ])
}

/// What a committed write did.
enum Written {
    /// `true`: applied; `false`: nothing matched (a lost compare-and-set, an absent card, a
    /// delivery no longer claimed).
    Applied(bool),
    /// The rows a statement returned: the webhook deliveries a claim took, a rated card.
    Rows(Vec<SqliteRow>),
    /// How many rows were deleted, or pages are left free.
    Counted(u64),
}

enum WriteOp {
    Checkpoint(CheckpointRow),
    PutAgent {
        id: String,
        card: String,
        revision: i64,
    },
    RenewLease {
        thread_id: String,
        lease: Lease,
    },
    DeleteAgent {
        id: String,
    },
    /// Adds a rating to a card's running mean; answers the card's row.
    RateAgent {
        id: String,
        rating: f64,
        revision: i64,
    },
    /// One part of a directory snapshot not yet published.
    SnapshotPart {
        snapshot_id: i64,
        part: i64,
        bytes: Vec<u8>,
    },
    /// Flips the snapshot head (applied unless a newer snapshot is the head).
    PublishSnapshot(SnapshotHead),
    /// Deletes superseded snapshots' parts.
    PruneSnapshots,
    DeleteThread {
        thread_id: String,
        version: i64,
        now: i64,
    },
    /// Claims due webhook deliveries.
    Claim {
        worker: WorkerId,
        now: i64,
        until: i64,
        limit: i64,
    },
    /// Records a webhook attempt (two statements: always in a transaction).
    Attempt {
        attempt: WebhookAttempt,
        body: Option<String>,
        worker: WorkerId,
    },
    /// Deletes one batch of expired threads.
    Expire(ExpiryBatch),
    /// One step of incremental vacuum; answers the free pages left.
    Vacuum,
}

/// The embedded default: reads from a pool of WAL readers, every write through one writer task
/// that commits whatever is queued as one transaction (group commit), since SQLite has one writer.
pub struct SqliteStore {
    readers: Sql<Sqlite>,
    writes: WriteQueue<WriteOp, Written>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and applies migrations.
    pub async fn open(path: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_sync {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5));
        // Before the first table exists, so that a new database frees space as threads are
        // deleted; on an existing one it changes nothing until `baton vacuum`.
        let writer_options = connect.clone().auto_vacuum(SqliteAutoVacuum::Incremental);
        let mut writer = SqliteConnection::connect_with(&writer_options).await?;
        migrator().run(&mut writer).await?;
        warn_without_incremental_vacuum(&mut writer, path).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(connect.clone().read_only(true))
            .await?;
        let writer = SqliteWriter {
            conn: writer,
            retention: options.retention,
            metrics: options.metrics.clone(),
        };
        Ok(SqliteStore {
            readers: Sql::new(readers),
            writes: WriteQueue::start([writer]),
        })
    }
}

/// SQLite's one writer: owns the only connection that writes.
struct SqliteWriter {
    conn: SqliteConnection,
    retention: i64,
    metrics: Metrics,
}

impl GroupWriter for SqliteWriter {
    type Op = WriteOp;
    type Out = Written;

    fn thread(op: &WriteOp) -> Option<&str> {
        match op {
            WriteOp::Checkpoint(row) => Some(&row.thread_id),
            _ => None,
        }
    }

    fn chain(op: &WriteOp) -> Option<Chain> {
        match op {
            WriteOp::Checkpoint(row) => row.chain,
            _ => None,
        }
    }

    fn lost(out: &Written) -> Option<bool> {
        match out {
            Written::Applied(applied) => Some(!applied),
            Written::Rows(_) | Written::Counted(_) => None,
        }
    }

    fn refused() -> Written {
        Written::Applied(false)
    }

    async fn commit(&mut self, group: &[WriteOp]) -> Result<Vec<Written>, GroupFailure> {
        match write_group(&mut self.conn, group, self.retention).await {
            Ok(written) => Ok(written),
            Err(e) => {
                // Harmless when no transaction is open.
                let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
                Err(GroupFailure::NotWritten(e))
            }
        }
    }

    fn committed(&self, size: usize, took: Duration) {
        self.metrics.sqlite_group_committed(size, took);
    }
}

/// Applies one group in one transaction. Checkpoints go in as one multi-row upsert per round (a
/// thread written twice in one group has its second write in a later round, so it sees the
/// first), and `RETURNING` tells which compare-and-sets won. The common group, one round and no
/// agent cards, is a single statement and needs no explicit transaction.
async fn write_group(
    conn: &mut SqliteConnection,
    group: &[WriteOp],
    retention: i64,
) -> Result<Vec<Written>, sqlx::Error> {
    let now = now_ms();
    let rounds = Rounds::of(group.iter().enumerate().filter_map(|(i, op)| match op {
        WriteOp::Checkpoint(row) => Some((i, row)),
        _ => None,
    }));
    let cards: Vec<usize> = (0..group.len())
        .filter(|&i| !matches!(group[i], WriteOp::Checkpoint(_)))
        .collect();
    let multi_statement = group.iter().any(|op| matches!(op, WriteOp::Attempt { .. }));
    let explicit = rounds.statements() + cards.len() > 1 || multi_statement;
    if explicit {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    let mut applied: Vec<Written> = group.iter().map(|_| Written::Applied(false)).collect();
    for i in cards {
        applied[i] = match &group[i] {
            WriteOp::PutAgent { id, card, revision } => {
                Sql::put_agent(&mut *conn, id, card, *revision, now).await?;
                Written::Applied(true)
            }
            WriteOp::SnapshotPart {
                snapshot_id,
                part,
                bytes,
            } => {
                Sql::<Sqlite>::put_snapshot_part(&mut *conn, *snapshot_id, *part, bytes.clone())
                    .await?;
                Written::Applied(true)
            }
            WriteOp::PublishSnapshot(head) => {
                Written::Applied(Sql::<Sqlite>::publish_snapshot(&mut *conn, head).await?)
            }
            WriteOp::PruneSnapshots => {
                Written::Counted(Sql::<Sqlite>::prune_snapshot_parts(&mut *conn).await?)
            }
            WriteOp::DeleteAgent { id } => {
                Written::Applied(Sql::delete_agent(&mut *conn, id).await?)
            }
            WriteOp::RateAgent {
                id,
                rating,
                revision,
            } => Written::Rows(
                Sql::rate_agent(&mut *conn, id, *rating, *revision, now)
                    .await?
                    .into_iter()
                    .collect(),
            ),
            WriteOp::DeleteThread {
                thread_id,
                version,
                now,
            } => Written::Applied(Sql::delete_thread(&mut *conn, thread_id, *version, *now).await?),
            WriteOp::RenewLease { thread_id, lease } => {
                Written::Applied(Sql::renew_lease(&mut *conn, thread_id, lease).await?)
            }
            WriteOp::Claim {
                worker,
                now,
                until,
                limit,
            } => {
                let claim = DeliveryClaim {
                    worker,
                    now: *now,
                    until: *until,
                    limit: *limit,
                };
                Written::Rows(Sql::claim_deliveries(&mut *conn, &claim).await?)
            }
            WriteOp::Attempt {
                attempt,
                body,
                worker,
            } => {
                let write = AttemptWrite {
                    attempt,
                    body: body.as_deref(),
                    worker,
                };
                Written::Applied(Sql::<Sqlite>::record_attempt(&mut *conn, &write).await?)
            }
            WriteOp::Expire(batch) => {
                Written::Counted(Sql::<Sqlite>::expire_threads(&mut *conn, batch).await?)
            }
            WriteOp::Vacuum => Written::Counted(vacuum_step(&mut *conn).await?),
            WriteOp::Checkpoint(_) => continue,
        };
    }
    let mut won = vec![false; group.len()];
    rounds
        .write::<Sqlite>(&mut *conn, retention, now, &mut won)
        .await?;
    for (i, op) in group.iter().enumerate() {
        if matches!(op, WriteOp::Checkpoint(_)) {
            applied[i] = Written::Applied(won[i]);
        }
    }
    if explicit {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    Ok(applied)
}

impl SqliteStore {
    /// Queues a write and waits until its transaction has committed.
    async fn queue(&self, op: WriteOp) -> Result<Written, StoreError> {
        self.writes.submit(op).await
    }

    /// Queues a write that applies or not, and waits for its commit.
    async fn write(&self, op: WriteOp) -> Result<bool, StoreError> {
        match self.queue(op).await? {
            Written::Applied(applied) => Ok(applied),
            Written::Rows(_) | Written::Counted(_) => Ok(true),
        }
    }

    /// Queues a write that counts (rows deleted, pages left), and waits for its commit.
    async fn count(&self, op: WriteOp) -> Result<u64, StoreError> {
        match self.queue(op).await? {
            Written::Counted(count) => Ok(count),
            Written::Applied(_) | Written::Rows(_) => Ok(0),
        }
    }
}

/// Gives up to `VACUUM_STEP_PAGES` free pages back to the file system (a no-op on a database
/// without incremental auto-vacuum) and answers how many free pages are left.
async fn vacuum_step(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    // A pragma, not a bound value: the step is this module's constant.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})"
    )))
    .execute(&mut *conn)
    .await?;
    let left: i64 = sqlx::query("PRAGMA freelist_count")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok(u64::try_from(left).unwrap_or(0))
}

/// SQLite's `auto_vacuum` value for incremental vacuum.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Says at start-up when the database predates incremental auto-vacuum: deleted threads' pages
/// are then reused but the file never shrinks, until one `baton vacuum` switches it (not done
/// here: a full VACUUM rewrites the whole file and blocks every write while it runs).
async fn warn_without_incremental_vacuum(
    conn: &mut SqliteConnection,
    path: &str,
) -> Result<(), StoreError> {
    let mode: i64 = sqlx::query("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if mode != AUTO_VACUUM_INCREMENTAL {
        tracing::warn!(
            database = path,
            "this SQLite database was created without incremental auto-vacuum: space freed by \
             deleted or expired threads is reused but the file does not shrink; run `baton \
             vacuum --database-url sqlite://{path}` once, with the server stopped, to switch it"
        );
    }
    Ok(())
}

/// What `vacuum` did to a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vacuumed {
    /// File size before, in bytes (the WAL included).
    pub bytes_before: u64,
    /// File size after, in bytes.
    pub bytes_after: u64,
}

/// `baton vacuum`: one full VACUUM of the database file at `path`, which rewrites it compactly
/// and switches it to incremental auto-vacuum. It needs the file to itself for as long as it
/// takes (writes wait), so it is a command the operator runs, never done at start-up.
pub async fn vacuum(path: &str) -> Result<Vacuumed, StoreError> {
    let bytes_before = file_bytes(path);
    let connect = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .auto_vacuum(SqliteAutoVacuum::Incremental)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&connect).await?;
    sqlx::query("VACUUM").execute(&mut conn).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(Vacuumed {
        bytes_before,
        bytes_after: file_bytes(path),
    })
}

/// The size of the database at `path` once its WAL is written back into the file (`baton
/// bench`'s bytes per conversation); other connections may stay open.
pub async fn checkpointed_bytes(path: &str) -> Result<u64, StoreError> {
    let connect = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&connect).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(file_bytes(path))
}

/// The bytes of the database file and its WAL (0 for a file that is absent).
pub fn file_bytes(path: &str) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{path}{suffix}")).ok())
        .map(|m| m.len())
        .sum()
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        self.queue_checkpoint(write).await?.await
    }

    async fn queue_checkpoint(
        &self,
        write: &CheckpointWrite<'_>,
    ) -> Result<PendingCheckpoint, StoreError> {
        let queued = self
            .writes
            .enqueue(WriteOp::Checkpoint(CheckpointRow::of(write)?))
            .await?;
        let conflict = rows::conflict(write);
        Ok(PendingCheckpoint::new(async move {
            match queued.committed().await? {
                Written::Applied(true) => Ok(()),
                Written::Applied(false) => Err(conflict),
                // A checkpoint is answered whether it applied; nothing else is.
                Written::Rows(_) | Written::Counted(_) => Ok(()),
            }
        }))
    }

    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.readers.get_checkpoint(thread_id).await
    }

    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.readers.history(thread_id).await
    }

    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.readers.checkpoint_at(thread_id, version).await
    }

    async fn list_threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError> {
        self.readers.list_threads(query).await
    }

    async fn delete_thread(
        &self,
        thread_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(WriteOp::DeleteThread {
            thread_id: thread_id.to_owned(),
            version,
            now,
        })
        .await
    }

    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        self.readers.stored_bytes(thread_id).await
    }

    async fn turns(
        &self,
        thread_id: &str,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError> {
        self.readers.turns(thread_id, positions).await
    }

    async fn turn_opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        self.readers.turn_opened_by(thread_id, message_id).await
    }

    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.readers.expired_runs(now).await
    }

    async fn threads_by_status(&self) -> Result<Vec<(ThreadStatus, u64)>, StoreError> {
        self.readers.threads_by_status().await
    }

    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        self.write(WriteOp::RenewLease {
            thread_id: thread_id.to_owned(),
            lease: lease.clone(),
        })
        .await
    }

    async fn put_agent(&self, card: &AgentCard) -> Result<i64, StoreError> {
        let json = serde_json::to_string(card).map_err(StoreError::Encode)?;
        let revision = new_revision();
        self.write(WriteOp::PutAgent {
            id: card.id.clone(),
            card: json,
            revision,
        })
        .await?;
        Ok(revision)
    }

    async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CardRow>, StoreError> {
        self.readers.agent_rows(after, limit).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError> {
        self.readers.agent(id).await
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        self.write(WriteOp::DeleteAgent { id: id.to_owned() }).await
    }

    async fn rate_agent(&self, id: &str, rating: f64) -> Result<Option<RatedCard>, StoreError> {
        let revision = new_revision();
        let op = WriteOp::RateAgent {
            id: id.to_owned(),
            rating,
            revision,
        };
        let card = match self.queue(op).await? {
            Written::Rows(rows) => rows.first().map(rows::agent).transpose()?,
            Written::Applied(_) | Written::Counted(_) => None,
        };
        Ok(card.map(|card| RatedCard { card, revision }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers.ping().await
    }

    async fn agent_revisions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.readers.agent_revisions(after, limit).await
    }

    async fn agent_rows_of(&self, ids: &[String]) -> Result<Vec<CardRow>, StoreError> {
        self.readers.agent_rows_of(ids).await
    }

    async fn snapshot_head(&self) -> Result<Option<SnapshotHead>, StoreError> {
        self.readers.snapshot_head().await
    }

    async fn snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.readers.snapshot_part(snapshot_id, part).await
    }

    async fn put_snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::SnapshotPart {
            snapshot_id,
            part,
            bytes,
        })
        .await?;
        Ok(())
    }

    async fn publish_snapshot(&self, head: &SnapshotHead) -> Result<bool, StoreError> {
        self.write(WriteOp::PublishSnapshot(*head)).await
    }

    async fn prune_snapshot_parts(&self) -> Result<u64, StoreError> {
        self.count(WriteOp::PruneSnapshots).await
    }

    async fn claim_deliveries(
        &self,
        claim: &DeliveryClaim<'_>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let op = WriteOp::Claim {
            worker: claim.worker.clone(),
            now: claim.now,
            until: claim.until,
            limit: claim.limit,
        };
        match self.queue(op).await? {
            Written::Rows(rows) => Sql::<Sqlite>::claimed(&rows),
            Written::Applied(_) | Written::Counted(_) => Ok(Vec::new()),
        }
    }

    async fn record_attempt(&self, write: &AttemptWrite<'_>) -> Result<bool, StoreError> {
        self.write(WriteOp::Attempt {
            attempt: write.attempt.clone(),
            body: write.body.map(str::to_owned),
            worker: write.worker.clone(),
        })
        .await
    }

    async fn deliveries(&self, thread_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.readers.deliveries(thread_id).await
    }

    async fn expire_threads(&self, batch: &ExpiryBatch) -> Result<u64, StoreError> {
        self.count(WriteOp::Expire(*batch)).await
    }

    async fn reclaim_space(&self) -> Result<u64, StoreError> {
        self.count(WriteOp::Vacuum).await
    }
}
