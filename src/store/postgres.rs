//! PostgreSQL backend: several Baton processes share one database.
//!
//! Checkpoints go through writer tasks doing group commit (`group.rs`, as on SQLite): each writer
//! holds one pooled connection and writes whatever is queued as one upsert whose compare-and-set
//! on `version` holds across processes. One writer by default, which yields before gathering so
//! that the callers it answered queue their next writes into its next group; more writers overlap
//! commits but split the groups. Statement-level triggers (migration 0009) keep the history and
//! announce each statement's checkpoints with `NOTIFY baton_events` (a JSON array), which `watch`
//! turns into events for this process's WebSockets. `synchronous_commit` stays the server's (on by
//! default): a caller is answered only once its checkpoint is durable.

use std::borrow::Cow;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, SqlSafeStr};
use tokio::sync::mpsc;

use super::group::{Folded, GroupFailure, GroupWriter, Rounds, WriteQueue};
use super::revision::new_revision;
use super::sql::{CheckpointRow, Sql};
use super::{
    AttemptWrite, CardRow, Chain, Checkpoint, CheckpointWrite, Delivery, DeliveryClaim,
    DeliveryRecord, ExpiryBatch, HistoryEntry, Lease, LoggedTurn, Notice, PendingCheckpoint,
    RatedCard, SnapshotHead, Store, StoreError, StoreOptions, StoredEvent, ThreadQuery,
    ThreadSummary, now_ms, rows,
};
use crate::card::AgentCard;
use crate::metrics::Metrics;
use crate::state::ThreadStatus;

/// The channel checkpoints are announced on.
const CHANNEL: &str = "baton_events";
/// The channel card changes are announced on (payload: the card id).
const AGENTS_CHANNEL: &str = "baton_agents";

/// Events buffered for this process before the listener waits.
const EVENT_BUFFER: usize = 4096;

/// The checkpoints one notification announces: a JSON array of them (migration 0009, one
/// notification per statement, as many as a group commit wrote) or, from a process still
/// running the triggers of 0001 on the same database, one object.
fn announced(payload: &str) -> Result<Vec<StoredEvent>, serde_json::Error> {
    if payload.trim_start().starts_with('[') {
        serde_json::from_str(payload)
    } else {
        serde_json::from_str(payload).map(|event| vec![event])
    }
}

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
        Migration::new(
            3,
            Cow::Borrowed("thread list"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0003_thread_list.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("webhooks"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0004_webhooks.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("turns"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0005_turns.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("directory snapshot"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0006_directory_snapshot.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("agent revisions"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0007_agent_revisions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("thread owner"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0008_thread_owner.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("grouped history"),
            MigrationType::Simple,
            include_str!("migrations/postgres/0009_grouped_history.sql").into_sql_str(),
            false,
        ),
    ])
}

/// The store several Baton processes share: checkpoints are group-committed by writer tasks, and
/// the database announces every commit (`NOTIFY`) so each process can follow threads another one
/// runs.
pub struct PostgresStore {
    sql: Sql<Postgres>,
    checkpoints: WriteQueue<CheckpointRow, bool>,
    listen: bool,
}

/// One checkpoint writer: keeps a pooled connection from group to group, and takes a new one
/// after losing it.
struct PgWriter {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    retention: i64,
    metrics: Metrics,
}

impl GroupWriter for PgWriter {
    type Op = CheckpointRow;
    /// Whether the compare-and-set won.
    type Out = bool;

    /// A commit is a round trip to the server and its flush: groups twice the size halve them.
    const YIELDS: bool = true;

    fn thread(op: &CheckpointRow) -> Option<&str> {
        Some(&op.thread_id)
    }

    fn chain(op: &CheckpointRow) -> Option<Chain> {
        op.chain
    }

    fn lost(won: &bool) -> Option<bool> {
        Some(!won)
    }

    fn refused() -> bool {
        false
    }

    /// A thread's writes queued meanwhile are folded into one head write (`Folded`).
    const FOLDS: bool = true;

    fn committed(&self, size: usize, took: Duration) {
        self.metrics.pg_group_committed(size, took);
    }

    async fn commit(&mut self, group: &[CheckpointRow]) -> Result<Vec<bool>, GroupFailure> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self
                .pool
                .acquire()
                .await
                .map_err(GroupFailure::NotWritten)?,
        };
        match write_checkpoints(&mut conn, group, self.retention).await {
            Ok(won) => {
                self.conn = Some(conn);
                Ok(won)
            }
            // A connection that still answers rolled the group back (the transaction's guard
            // did, or the single statement failed whole).
            Err(e) if conn.ping().await.is_ok() => {
                self.conn = Some(conn);
                Err(GroupFailure::NotWritten(e))
            }
            Err(e) => {
                conn.close_on_drop();
                Err(GroupFailure::ConnectionLost(e))
            }
        }
    }
}

/// One group: a single statement when every thread is written once, or its writes can be
/// folded into one (its own transaction), else one statement per round in one transaction.
async fn write_checkpoints(
    conn: &mut PgConnection,
    group: &[CheckpointRow],
    retention: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let now = now_ms();
    let mut won = vec![false; group.len()];
    if let Some(folded) = Folded::of(group)
        && folded.folds()
    {
        let winners = Sql::<Postgres>::write_folded_checkpoints(
            conn,
            &folded.heads(),
            folded.passed(),
            retention,
            now,
        )
        .await?;
        folded.mark(&winners, &mut won);
        return Ok(won);
    }
    let rounds = Rounds::of(group.iter().enumerate());
    if rounds.statements() > 1 {
        let mut tx = conn.begin().await?;
        rounds
            .write::<Postgres>(&mut tx, retention, now, &mut won)
            .await?;
        tx.commit().await?;
    } else {
        rounds
            .write::<Postgres>(conn, retention, now, &mut won)
            .await?;
    }
    Ok(won)
}

impl PostgresStore {
    /// Connects (pool of `options.pool_size`, the writers' connections included), applies
    /// migrations (concurrent starts are serialized by the migrator's advisory lock) and starts
    /// `options.pg_writers` checkpoint writers.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let mut connect = PgConnectOptions::from_str(url)?;
        if options.statement_timeout_ms > 0 {
            connect = connect.options([(
                "statement_timeout",
                options.statement_timeout_ms.to_string(),
            )]);
        }
        let writers = options.pg_writers.max(1);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(writers + 2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await?;
        migrator().run(&pool).await?;
        let checkpoints = WriteQueue::start((0..writers).map(|_| PgWriter {
            pool: pool.clone(),
            conn: None,
            retention: options.retention,
            metrics: options.metrics.clone(),
        }));
        Ok(PostgresStore {
            sql: Sql::new(pool),
            checkpoints,
            listen: options.listen,
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        self.queue_checkpoint(write).await?.await
    }

    async fn queue_checkpoint(
        &self,
        write: &CheckpointWrite<'_>,
    ) -> Result<PendingCheckpoint, StoreError> {
        let queued = self.checkpoints.enqueue(CheckpointRow::of(write)?).await?;
        let conflict = rows::conflict(write);
        Ok(PendingCheckpoint::new(async move {
            if queued.committed().await? {
                Ok(())
            } else {
                Err(conflict)
            }
        }))
    }

    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.sql.get_checkpoint(thread_id).await
    }

    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.sql.history(thread_id).await
    }

    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.sql.checkpoint_at(thread_id, version).await
    }

    async fn list_threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError> {
        self.sql.list_threads(query).await
    }

    async fn delete_thread(
        &self,
        thread_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        // One statement (the trigger deletes the history in it), so no transaction is needed.
        Ok(Sql::delete_thread(self.sql.pool(), thread_id, version, now).await?)
    }

    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        self.sql.stored_bytes(thread_id).await
    }

    async fn turns(
        &self,
        thread_id: &str,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError> {
        self.sql.turns(thread_id, positions).await
    }

    async fn turn_opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        self.sql.turn_opened_by(thread_id, message_id).await
    }

    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.sql.expired_runs(now).await
    }

    async fn threads_by_status(&self) -> Result<Vec<(ThreadStatus, u64)>, StoreError> {
        self.sql.threads_by_status().await
    }

    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        Ok(Sql::renew_lease(self.sql.pool(), thread_id, lease).await?)
    }

    async fn put_agent(&self, card: &AgentCard) -> Result<i64, StoreError> {
        let json = serde_json::to_string(card).map_err(StoreError::Encode)?;
        let revision = new_revision();
        Sql::put_agent(self.sql.pool(), &card.id, &json, revision, now_ms()).await?;
        Ok(revision)
    }

    async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CardRow>, StoreError> {
        self.sql.agent_rows(after, limit).await
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError> {
        self.sql.agent(id).await
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        Ok(Sql::delete_agent(self.sql.pool(), id).await?)
    }

    async fn rate_agent(&self, id: &str, rating: f64) -> Result<Option<RatedCard>, StoreError> {
        let revision = new_revision();
        let row = Sql::rate_agent(self.sql.pool(), id, rating, revision, now_ms()).await?;
        let card = row.as_ref().map(rows::agent).transpose()?;
        Ok(card.map(|card| RatedCard { card, revision }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.sql.ping().await
    }

    async fn agent_revisions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        self.sql.agent_revisions(after, limit).await
    }

    async fn agent_rows_of(&self, ids: &[String]) -> Result<Vec<CardRow>, StoreError> {
        self.sql.agent_rows_of(ids).await
    }

    async fn snapshot_head(&self) -> Result<Option<SnapshotHead>, StoreError> {
        self.sql.snapshot_head().await
    }

    async fn snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.sql.snapshot_part(snapshot_id, part).await
    }

    async fn put_snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        Ok(Sql::put_snapshot_part(self.sql.pool(), snapshot_id, part, bytes).await?)
    }

    async fn publish_snapshot(&self, head: &SnapshotHead) -> Result<bool, StoreError> {
        Ok(Sql::publish_snapshot(self.sql.pool(), head).await?)
    }

    async fn prune_snapshot_parts(&self) -> Result<u64, StoreError> {
        Ok(Sql::<Postgres>::prune_snapshot_parts(self.sql.pool()).await?)
    }

    async fn claim_deliveries(
        &self,
        claim: &DeliveryClaim<'_>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let claimed = Sql::claim_deliveries(self.sql.pool(), claim).await?;
        Sql::<Postgres>::claimed(&claimed)
    }

    async fn record_attempt(&self, write: &AttemptWrite<'_>) -> Result<bool, StoreError> {
        let mut tx = self.sql.pool().begin().await?;
        let recorded = Sql::<Postgres>::record_attempt(&mut tx, write).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn deliveries(&self, thread_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.sql.deliveries(thread_id).await
    }

    async fn expire_threads(&self, batch: &ExpiryBatch) -> Result<u64, StoreError> {
        // One statement: its subquery's row locks last until it commits, so no transaction.
        Ok(Sql::<Postgres>::expire_threads(self.sql.pool(), batch).await?)
    }

    async fn watch(&self) -> Result<Option<mpsc::Receiver<Notice>>, StoreError> {
        if !self.listen {
            return Ok(None);
        }
        let mut listener = PgListener::connect_with(self.sql.pool()).await?;
        listener.listen_all([CHANNEL, AGENTS_CHANNEL]).await?;
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        // Owned by the receiver: the task ends when the receiver is dropped.
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection; notifications sent while
                // it was away are lost, which the watchers' fallback poll covers.
                let received = tokio::select! {
                    () = events.closed() => return,
                    received = listener.recv() => received,
                };
                match received {
                    Ok(notification) if notification.channel() == AGENTS_CHANNEL => {
                        let id = notification.payload().to_owned();
                        if events.send(Notice::Agent(id)).await.is_err() {
                            return;
                        }
                    }
                    Ok(notification) => match announced(notification.payload()) {
                        Ok(announced) => {
                            for event in announced {
                                if events.send(Notice::Checkpoint(event)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable checkpoint notification")
                        }
                    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Node;
    use crate::store::Origin;

    #[test]
    fn a_notification_announces_an_array_of_checkpoints_or_one() {
        let many = r#"[{"thread_id" : "a", "node" : "start", "status" : "processing",
                        "next" : "parse_prompt", "step" : 1, "version" : 1, "writer" : "w"},
                       {"thread_id" : "b", "node" : "parse_prompt", "status" : "completed",
                        "next" : "end", "step" : 4, "version" : 7, "writer" : "v"}]"#;
        let events = announced(many).expect("an array");
        let seen: Vec<(&str, i64, Origin, Node)> = events
            .iter()
            .map(|e| (e.thread_id.as_str(), e.version, e.node, e.next))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", 1, Origin::Start, Node::ParsePrompt),
                ("b", 7, Origin::Node(Node::ParsePrompt), Node::End),
            ]
        );
        let one = r#"{"thread_id" : "c", "node" : "start", "status" : "processing",
                      "next" : "parse_prompt", "step" : 1, "version" : 1, "writer" : "w"}"#;
        let events = announced(one).expect("one object, as migration 0001 sent");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].thread_id, "c");
        assert!(announced("[{\"thread_id\": 1}]").is_err());
    }
}
