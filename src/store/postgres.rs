//! PostgreSQL backend: several Baton processes share one database.
//!
//! Each checkpoint is one upsert whose compare-and-set on `version` holds across processes; a
//! trigger (migration 0001) keeps the history and announces every committed checkpoint with
//! `NOTIFY baton_events`, which `watch` turns into events for this process's WebSockets.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Row, SqlSafeStr};
use tokio::sync::mpsc;

use super::rows;
use super::{
    Checkpoint, CheckpointWrite, HistoryEntry, Lease, Notice, Store, StoreError, StoreOptions,
    StoredEvent, encode, now_ms,
};
use crate::card::AgentCard;

/// The channel checkpoints are announced on.
const CHANNEL: &str = "baton_events";
/// The channel card changes are announced on (payload: the card id).
const AGENTS_CHANNEL: &str = "baton_agents";

/// Events buffered for this process before the listener waits.
const EVENT_BUFFER: usize = 4096;

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("agent notices"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0002_agent_notices.sql").into_sql_str(),
            false,
        ),
    ])
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    retention: i64,
    listen: bool,
}

impl PostgresStore {
    /// Connects (pool of `options.pool_size`) and applies migrations; concurrent starts are
    /// serialized by the migrator's advisory lock.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let mut connect = PgConnectOptions::from_str(url)?;
        if options.statement_timeout_ms > 0 {
            connect = connect.options([(
                "statement_timeout",
                options.statement_timeout_ms.to_string(),
            )]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        migrator().run(&pool).await?;
        Ok(PostgresStore {
            pool,
            retention: options.retention,
            listen: options.listen,
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        let (state, undo) = encode(write)?;
        let checkpoint = write.checkpoint;
        let now = now_ms();
        let won = sqlx::query(
            "INSERT INTO threads (thread_id, version, step, node, next_node, status, state, undo, writer,
                                  lease_owner, lease_expires_at, retention, updated_at, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13
             WHERE $2 = 1 OR EXISTS (SELECT 1 FROM threads WHERE thread_id = $1)
             ON CONFLICT (thread_id) DO UPDATE SET
                 version = EXCLUDED.version, step = EXCLUDED.step, node = EXCLUDED.node,
                 next_node = EXCLUDED.next_node, status = EXCLUDED.status, state = EXCLUDED.state,
                 undo = EXCLUDED.undo, writer = EXCLUDED.writer, lease_owner = EXCLUDED.lease_owner,
                 lease_expires_at = EXCLUDED.lease_expires_at, retention = EXCLUDED.retention,
                 updated_at = EXCLUDED.updated_at
             WHERE threads.version = EXCLUDED.version - 1
             RETURNING thread_id",
        )
        .bind(&checkpoint.thread_id)
        .bind(checkpoint.version)
        .bind(checkpoint.step)
        .bind(write.node)
        .bind(checkpoint.next.as_str())
        .bind(checkpoint.state.status.as_str())
        .bind(state)
        .bind(undo)
        .bind(write.writer)
        .bind(write.lease.map(|l| l.owner.as_str()))
        .bind(write.lease.map_or(0, |l| l.expires_at))
        .bind(self.retention)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if won.is_some() {
            Ok(())
        } else {
            Err(rows::conflict(write))
        }
    }

    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row =
            sqlx::query("SELECT version, step, next_node, state FROM threads WHERE thread_id = $1")
                .bind(thread_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| rows::checkpoint(thread_id, &row)).transpose()
    }

    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, step, node, next_node, status, writer, created_at FROM checkpoints
             WHERE thread_id = $1 ORDER BY version DESC",
        )
        .bind(thread_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::history_entry).collect()
    }

    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        // REPEATABLE READ: the head and the history come from one snapshot.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let Some(head) = sqlx::query("SELECT version, state FROM threads WHERE thread_id = $1")
            .bind(thread_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let head_version: i64 = head.try_get("version")?;
        let Some(target) = sqlx::query(
            "SELECT step, next_node FROM checkpoints WHERE thread_id = $1 AND version = $2",
        )
        .bind(thread_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let undos = sqlx::query(
            "SELECT undo FROM checkpoints WHERE thread_id = $1 AND version > $2 AND version <= $3
             ORDER BY version DESC",
        )
        .bind(thread_id)
        .bind(version)
        .bind(head_version)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows::past_checkpoint(thread_id, version, &head, &target, &undos).map(Some)
    }

    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT ((SELECT COALESCE(SUM(octet_length(state) + COALESCE(octet_length(undo), 0)), 0)
                      FROM threads WHERE thread_id = $1)
                   + (SELECT COALESCE(SUM(COALESCE(octet_length(undo), 0) + octet_length(node)
                                          + octet_length(next_node) + 40), 0)
                      FROM checkpoints WHERE thread_id = $1))::BIGINT AS bytes",
        )
        .bind(thread_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0))
    }

    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT thread_id FROM threads WHERE status = 'processing' AND lease_expires_at < $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("thread_id")
                    .map_err(StoreError::from)
            })
            .collect()
    }

    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE threads SET lease_expires_at = $1
             WHERE thread_id = $2 AND lease_owner = $3 AND status = 'processing'",
        )
        .bind(lease.expires_at)
        .bind(thread_id)
        .bind(&lease.owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_agent(&self, card: &AgentCard) -> Result<(), StoreError> {
        let json = serde_json::to_string(card).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO agents (id, card, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET card = EXCLUDED.card, updated_at = EXCLUDED.updated_at",
        )
        .bind(&card.id)
        .bind(json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn agents(&self) -> Result<Vec<AgentCard>, StoreError> {
        let rows = sqlx::query("SELECT id, card FROM agents ORDER BY id")
            .fetch_all(&self.pool)
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
        let done = sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn watch(&self) -> Result<Option<mpsc::Receiver<Notice>>, StoreError> {
        if !self.listen {
            return Ok(None);
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([CHANNEL, AGENTS_CHANNEL]).await?;
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection; notifications sent while
                // it was away are lost, which the watchers' fallback poll covers.
                match listener.recv().await {
                    Ok(notification) if notification.channel() == AGENTS_CHANNEL => {
                        let id = notification.payload().to_owned();
                        if events.send(Notice::Agent(id)).await.is_err() {
                            return;
                        }
                    }
                    Ok(notification) => {
                        match serde_json::from_str::<StoredEvent>(notification.payload()) {
                            Ok(event) => {
                                if events.send(Notice::Checkpoint(event)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable checkpoint notification")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "checkpoint notifications interrupted");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(receiver))
    }

    fn is_shared(&self) -> bool {
        true
    }
}
