//! SQLite backend, the embedded default: one file in WAL mode.
//!
//! SQLite has one writer at a time, so checkpoint writes go through a single writer task that
//! commits whatever is queued in one transaction (group commit): under load many threads'
//! checkpoints share one fsync, and each caller still gets its own compare-and-set answer only
//! after the commit is durable. Reads use a separate pool (WAL readers never block the writer).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row, SqlSafeStr};
use tokio::sync::{mpsc, oneshot};

use super::{
    Checkpoint, CheckpointWrite, HistoryEntry, Lease, SqliteSync, Store, StoreError, StoreOptions,
    encode, now_ms, rows,
};
use crate::card::AgentCard;

/// Most checkpoints one commit carries.
const MAX_GROUP: usize = 256;

/// Checkpoints waiting for the writer; callers wait when it is full.
const QUEUE_DEPTH: usize = 4096;

const READERS: u32 = 4;

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("init"),
        MigrationType::Simple,
        include_str!("migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
    )])
}

/// A write queued for the writer task, answered once its transaction has committed.
struct PendingWrite {
    op: WriteOp,
    /// `Ok(true)`: applied; `Ok(false)`: nothing matched (a lost compare-and-set, an absent card).
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

enum WriteOp {
    Checkpoint(CheckpointRow),
    PutAgent {
        id: String,
        card: String,
    },
    RenewLease {
        thread_id: String,
        owner: String,
        expires_at: i64,
    },
    DeleteAgent {
        id: String,
    },
}

/// A checkpoint as the writer binds it.
struct CheckpointRow {
    thread_id: String,
    version: i64,
    step: i64,
    node: String,
    next: &'static str,
    status: &'static str,
    state: String,
    undo: Option<String>,
    writer: String,
    lease_owner: Option<String>,
    lease_expires_at: i64,
}

/// The SQLite store.
pub struct SqliteStore {
    readers: SqlitePool,
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
        tokio::spawn(write_loop(writer, queue, options.retention));
        Ok(SqliteStore { readers, writes })
    }
}

/// Drains the queue: every round commits all queued checkpoints in one transaction.
async fn write_loop(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<PendingWrite>,
    retention: i64,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        match write_group(&mut conn, &group, retention).await {
            Ok(outcomes) => {
                for (write, applied) in group.drain(..).zip(outcomes) {
                    let _ = write.reply.send(Ok(applied));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "checkpoint commit failed");
                // Harmless when no transaction is open.
                let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                for write in group.drain(..) {
                    let _ = write.reply.send(Err(StoreError::Database(e.to_string())));
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
) -> Result<Vec<bool>, sqlx::Error> {
    let now = now_ms();
    let mut applied = vec![false; group.len()];
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
    let explicit = rounds.len() + cards.len() > 1;
    if explicit {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    for i in cards {
        let done = match &group[i].op {
            WriteOp::PutAgent { id, card } => {
                sqlx::query(
                    "INSERT INTO agents (id, card, updated_at) VALUES (?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET card = excluded.card, updated_at = excluded.updated_at",
                )
                .bind(id)
                .bind(card)
                .bind(now)
                .execute(&mut *conn)
                .await?
            }
            WriteOp::DeleteAgent { id } => {
                sqlx::query("DELETE FROM agents WHERE id = ?")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?
            }
            WriteOp::RenewLease {
                thread_id,
                owner,
                expires_at,
            } => {
                sqlx::query(
                    "UPDATE threads SET lease_expires_at = ? WHERE thread_id = ? AND lease_owner = ? AND status = 'processing'",
                )
                .bind(expires_at)
                .bind(thread_id)
                .bind(owner)
                .execute(&mut *conn)
                .await?
            }
            WriteOp::Checkpoint(_) => continue,
        };
        applied[i] = done.rows_affected() > 0;
    }
    for round in rounds {
        let won = write_checkpoints(conn, group, &round, now, retention).await?;
        for i in round {
            if let WriteOp::Checkpoint(CheckpointRow { thread_id, .. }) = &group[i].op {
                applied[i] = won.contains(thread_id);
            }
        }
    }
    if explicit {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    Ok(applied)
}

/// One statement for checkpoints of distinct threads; returns the threads written.
///
/// Version 1 inserts a thread (and loses if it exists); version n updates a thread whose version
/// is n - 1 (and loses otherwise, including when the thread does not exist). The triggers of
/// migration 0001 add each written checkpoint to the history and prune it.
async fn write_checkpoints(
    conn: &mut SqliteConnection,
    group: &[PendingWrite],
    indices: &[usize],
    now: i64,
    retention: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; indices.len()].join(", ");
    let sql = format!(
        "INSERT INTO threads (thread_id, version, step, node, next_node, status, state, undo, writer,
                              lease_owner, lease_expires_at, retention, updated_at, created_at)
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9,
                column10, column11, column12, column13, column13
         FROM (VALUES {rows})
         WHERE column2 = 1 OR EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = column1)
         ON CONFLICT (thread_id) DO UPDATE SET
             version = excluded.version, step = excluded.step, node = excluded.node,
             next_node = excluded.next_node, status = excluded.status, state = excluded.state,
             undo = excluded.undo, writer = excluded.writer, lease_owner = excluded.lease_owner,
             lease_expires_at = excluded.lease_expires_at, retention = excluded.retention,
             updated_at = excluded.updated_at
         WHERE threads.version = excluded.version - 1
         RETURNING thread_id"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for &i in indices {
        if let WriteOp::Checkpoint(row) = &group[i].op {
            query = query
                .bind(&row.thread_id)
                .bind(row.version)
                .bind(row.step)
                .bind(&row.node)
                .bind(row.next)
                .bind(row.status)
                .bind(&row.state)
                .bind(&row.undo)
                .bind(&row.writer)
                .bind(&row.lease_owner)
                .bind(row.lease_expires_at)
                .bind(retention)
                .bind(now);
        }
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

impl SqliteStore {
    /// Queues a write and waits until its transaction has committed.
    async fn write(&self, op: WriteOp) -> Result<bool, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writes
            .send(PendingWrite { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        let (state, undo) = encode(write)?;
        let checkpoint = write.checkpoint;
        let applied = self
            .write(WriteOp::Checkpoint(CheckpointRow {
                thread_id: checkpoint.thread_id.clone(),
                version: checkpoint.version,
                step: checkpoint.step,
                node: write.node.to_owned(),
                next: checkpoint.next.as_str(),
                status: checkpoint.state.status.as_str(),
                state,
                undo,
                writer: write.writer.to_owned(),
                lease_owner: write.lease.map(|l| l.owner.clone()),
                lease_expires_at: write.lease.map_or(0, |l| l.expires_at),
            }))
            .await?;
        if applied {
            Ok(())
        } else {
            Err(rows::conflict(write))
        }
    }

    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row =
            sqlx::query("SELECT version, step, next_node, state FROM threads WHERE thread_id = ?")
                .bind(thread_id)
                .fetch_optional(&self.readers)
                .await?;
        row.map(|row| rows::checkpoint(thread_id, &row)).transpose()
    }

    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, step, node, next_node, status, writer, created_at FROM checkpoints
             WHERE thread_id = ? ORDER BY version DESC",
        )
        .bind(thread_id)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(rows::history_entry).collect()
    }

    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        // One read transaction, so the head and the history agree.
        let mut tx = self.readers.begin().await?;
        let Some(head) = sqlx::query("SELECT version, state FROM threads WHERE thread_id = ?")
            .bind(thread_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let head_version: i64 = head.try_get("version")?;
        let Some(target) = sqlx::query(
            "SELECT step, next_node FROM checkpoints WHERE thread_id = ? AND version = ?",
        )
        .bind(thread_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let undos = sqlx::query(
            "SELECT undo FROM checkpoints WHERE thread_id = ? AND version > ? AND version <= ? ORDER BY version DESC",
        )
        .bind(thread_id)
        .bind(version)
        .bind(head_version)
        .fetch_all(&mut *tx)
        .await?;
        rows::past_checkpoint(thread_id, version, &head, &target, &undos).map(Some)
    }

    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(SUM(LENGTH(state) + COALESCE(LENGTH(undo), 0)), 0) FROM threads WHERE thread_id = ?1)
                  + (SELECT COALESCE(SUM(COALESCE(LENGTH(undo), 0) + LENGTH(node) + LENGTH(next_node) + 40), 0)
                     FROM checkpoints WHERE thread_id = ?1) AS bytes",
        )
        .bind(thread_id)
        .fetch_one(&self.readers)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0))
    }

    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT thread_id FROM threads WHERE status = 'processing' AND lease_expires_at < ?",
        )
        .bind(now)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("thread_id")
                    .map_err(StoreError::from)
            })
            .collect()
    }

    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        self.write(WriteOp::RenewLease {
            thread_id: thread_id.to_owned(),
            owner: lease.owner.clone(),
            expires_at: lease.expires_at,
        })
        .await
    }

    async fn put_agent(&self, card: &AgentCard) -> Result<(), StoreError> {
        let json = serde_json::to_string(card).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(WriteOp::PutAgent {
            id: card.id.clone(),
            card: json,
        })
        .await?;
        Ok(())
    }

    async fn agents(&self) -> Result<Vec<AgentCard>, StoreError> {
        let rows = sqlx::query("SELECT id, card FROM agents ORDER BY id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let card: String = r.try_get("card")?;
                serde_json::from_str(&card)
                    .map_err(|e| StoreError::Corrupt(format!("agent {id}: {e}")))
            })
            .collect()
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        self.write(WriteOp::DeleteAgent { id: id.to_owned() }).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}
