//! SQLite backend, the embedded default: one file in WAL mode.
//!
//! SQLite has one writer at a time, so checkpoint writes go through a single writer task that
//! commits whatever is queued in one transaction (group commit): under load many threads'
//! checkpoints share one fsync, and each caller still gets its own compare-and-set answer only
//! after the commit is durable. Reads use a separate pool (WAL readers never block the writer).

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, SqlSafeStr, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::sql::{CheckpointRow, Sql};
use super::{
    AttemptWrite, CardRow, Checkpoint, CheckpointWrite, Delivery, DeliveryClaim, DeliveryRecord,
    HistoryEntry, Lease, SqliteSync, Store, StoreError, StoreOptions, ThreadQuery, ThreadSummary,
    WebhookAttempt, now_ms, rows,
};
use crate::card::AgentCard;
use crate::metrics::Metrics;
use crate::state::{ThreadStatus, WorkerId};

/// Most checkpoints one commit carries.
const MAX_GROUP: usize = 256;

/// Checkpoints waiting for the writer; callers wait when it is full.
const QUEUE_DEPTH: usize = 4096;

const READERS: u32 = 4;

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
    ])
}

/// A write queued for the writer task, answered once its transaction has committed.
struct PendingWrite {
    op: WriteOp,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// What a committed write did.
enum Written {
    /// `true`: applied; `false`: nothing matched (a lost compare-and-set, an absent card, a
    /// delivery no longer claimed).
    Applied(bool),
    /// The webhook deliveries a claim took, as rows.
    Claimed(Vec<SqliteRow>),
}

enum WriteOp {
    Checkpoint(CheckpointRow),
    PutAgent {
        id: String,
        card: String,
    },
    RenewLease {
        thread_id: String,
        lease: Lease,
    },
    DeleteAgent {
        id: String,
    },
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
}

/// The embedded default: reads from a pool of WAL readers, every write through one writer task
/// that commits whatever is queued as one transaction (group commit), since SQLite has one writer.
pub struct SqliteStore {
    readers: Sql<Sqlite>,
    writes: mpsc::Sender<PendingWrite>,
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
        let mut writer = SqliteConnection::connect_with(&connect).await?;
        migrator().run(&mut writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(connect.clone().read_only(true))
            .await?;
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_loop(
            writer,
            queue,
            options.retention,
            options.metrics.clone(),
        ));
        Ok(SqliteStore {
            readers: Sql::new(readers),
            writes,
        })
    }
}

/// Drains the queue: every round commits all queued checkpoints in one transaction.
async fn write_loop(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<PendingWrite>,
    retention: i64,
    metrics: Metrics,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let started = Instant::now();
        let committed = write_group(&mut conn, &group, retention).await;
        metrics.sqlite_group_committed(group.len(), started.elapsed());
        match committed {
            Ok(outcomes) => {
                for (write, written) in group.drain(..).zip(outcomes) {
                    let _ = write.reply.send(Ok(written));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "checkpoint commit failed");
                // Harmless when no transaction is open.
                let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                let e = Arc::new(e);
                for write in group.drain(..) {
                    let _ = write.reply.send(Err(StoreError::GroupCommit(e.clone())));
                }
            }
        }
    }
}

/// Applies one group in one transaction. Checkpoints go in as one multi-row upsert per round (a
/// thread written twice in one group has its second write in a later round, so it sees the
/// first), and `RETURNING` tells which compare-and-sets won. The common group, one round and no
/// agent cards, is a single statement and needs no explicit transaction.
async fn write_group(
    conn: &mut SqliteConnection,
    group: &[PendingWrite],
    retention: i64,
) -> Result<Vec<Written>, sqlx::Error> {
    let now = now_ms();
    let mut applied: Vec<Written> = group.iter().map(|_| Written::Applied(false)).collect();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut writes_of: HashMap<&str, usize> = HashMap::new();
    let mut cards = Vec::new();
    for (i, write) in group.iter().enumerate() {
        if let WriteOp::Checkpoint(CheckpointRow { thread_id, .. }) = &write.op {
            // The k-th write of a thread in this group goes to round k.
            let seen = writes_of.entry(thread_id.as_str()).or_insert(0);
            if *seen == rounds.len() {
                rounds.push(Vec::new());
            }
            rounds[*seen].push(i);
            *seen += 1;
        } else {
            cards.push(i);
        }
    }
    let multi_statement = group
        .iter()
        .any(|w| matches!(w.op, WriteOp::Attempt { .. }));
    let explicit = rounds.len() + cards.len() > 1 || multi_statement;
    if explicit {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    for i in cards {
        applied[i] = match &group[i].op {
            WriteOp::PutAgent { id, card } => {
                Sql::put_agent(&mut *conn, id, card, now).await?;
                Written::Applied(true)
            }
            WriteOp::DeleteAgent { id } => {
                Written::Applied(Sql::delete_agent(&mut *conn, id).await?)
            }
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
                Written::Claimed(Sql::claim_deliveries(&mut *conn, &claim).await?)
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
            WriteOp::Checkpoint(_) => continue,
        };
    }
    for round in rounds {
        let written: Vec<&CheckpointRow> = round
            .iter()
            .filter_map(|&i| match &group[i].op {
                WriteOp::Checkpoint(row) => Some(row),
                _ => None,
            })
            .collect();
        let won = Sql::write_checkpoints(&mut *conn, &written, retention, now).await?;
        for i in round {
            if let WriteOp::Checkpoint(CheckpointRow { thread_id, .. }) = &group[i].op {
                applied[i] = Written::Applied(won.contains(thread_id));
            }
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
        let (reply, outcome) = oneshot::channel();
        self.writes
            .send(PendingWrite { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a write that applies or not, and waits for its commit.
    async fn write(&self, op: WriteOp) -> Result<bool, StoreError> {
        match self.queue(op).await? {
            Written::Applied(applied) => Ok(applied),
            Written::Claimed(_) => Ok(true),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        let applied = self
            .write(WriteOp::Checkpoint(CheckpointRow::of(write)?))
            .await?;
        if applied {
            Ok(())
        } else {
            Err(rows::conflict(write))
        }
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

    async fn put_agent(&self, card: &AgentCard) -> Result<(), StoreError> {
        let json = serde_json::to_string(card).map_err(StoreError::Encode)?;
        self.write(WriteOp::PutAgent {
            id: card.id.clone(),
            card: json,
        })
        .await?;
        Ok(())
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers.ping().await
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
            Written::Claimed(rows) => Sql::<Sqlite>::claimed(&rows),
            Written::Applied(_) => Ok(Vec::new()),
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
}
