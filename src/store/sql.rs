//! The store's SQL, written once for SQLite and PostgreSQL: every query, its binds and how its
//! rows decode. A backend keeps only what is its own: SQLite's group-commit writer task,
//! PostgreSQL's pool options and LISTEN/NOTIFY. Where the two databases differ, `Dialect` says
//! how.
//!
//! The database columns keep their first names (`writer`, `lease_owner`) for the process the
//! Rust side calls a worker (`WorkerId`); renaming them would need a migration for no gain.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::query::Query;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Postgres, Row, Type,
};

use super::dialect::Dialect;
use super::expiry::ExpiryBatch;
use super::outbox::{AttemptWrite, Delivery, DeliveryClaim, DeliveryRecord};
use super::{
    CardRow, Chain, Checkpoint, CheckpointWrite, HistoryEntry, Lease, LoggedTurn, Origin,
    SnapshotHead, StoreError, ThreadQuery, ThreadSummary, encode, rows, summary_of,
};
use crate::card::AgentCard;
use crate::state::{Node, ThreadStatus, WorkerId};

/// Ids one `agent_rows_of` query binds: far below either database's limit on parameters.
const IN_LIST: usize = 500;

/// Columns one checkpoint binds in `upsert_checkpoints`.
const CHECKPOINT_BINDS: usize = 19;

/// A checkpoint as the SQL binds it: encoded and owned, so SQLite's writer task can queue it.
pub(crate) struct CheckpointRow {
    pub thread_id: String,
    pub version: i64,
    pub step: i64,
    pub node: Origin,
    pub next: Node,
    pub status: ThreadStatus,
    /// The state as JSON.
    pub state: String,
    /// The difference to the state this write replaces, as JSON.
    pub undo: Option<String>,
    /// Goes to the `writer` column.
    pub worker: WorkerId,
    /// Goes to `lease_owner` and `lease_expires_at`; `None` releases the run.
    pub lease: Option<Lease>,
    /// What the thread list shows (`turns`, `prompt`, `question`), kept beside the state.
    pub turns: i64,
    pub prompt: String,
    pub question: Option<String>,
    /// The earlier turns the write closes, as a JSON array (`closed_turns`: the trigger of
    /// migration 0004/0005 appends them to the turn log); `None` for almost every write.
    pub closed_turns: Option<String>,
    /// A fork's origin, whose earlier turns the trigger copies into the fork's log on insert.
    pub turns_from: Option<String>,
    /// The key's owner that created the thread (column `owner`, set on insert only).
    pub owner: Option<String>,
    /// The run's chain of queued writes (not stored: the writer refuses a chain's writes after
    /// one of them lost).
    pub chain: Option<Chain>,
}

impl CheckpointRow {
    /// Encodes a write's state and undo.
    pub fn of(write: &CheckpointWrite<'_>) -> Result<Self, StoreError> {
        let (state, undo) = encode(write)?;
        let checkpoint = write.checkpoint;
        let (turns, prompt, question) = summary_of(&checkpoint.state);
        let closed_turns = if write.closed.is_empty() {
            None
        } else {
            Some(serde_json::to_string(write.closed).map_err(StoreError::Encode)?)
        };
        Ok(CheckpointRow {
            closed_turns,
            turns_from: write.turns_from.map(str::to_owned),
            chain: write.chain,
            owner: checkpoint
                .state
                .owner
                .as_ref()
                .map(|o| o.as_str().to_owned()),
            turns,
            prompt: prompt.to_owned(),
            question: question.map(str::to_owned),
            thread_id: checkpoint.thread_id.clone(),
            version: checkpoint.version,
            step: checkpoint.step,
            node: write.node,
            next: checkpoint.next,
            status: checkpoint.state.status,
            state,
            undo,
            worker: write.worker.clone(),
            lease: write.lease.cloned(),
        })
    }
}

/// The `threads` columns a checkpoint write fills, in the order both upserts give them: the
/// one place they are listed (SQLite's `VALUES` rows and PostgreSQL's arrays follow it).
/// `created_at` takes the write's time like `updated_at` (kept on update); `owner` is written on
/// insert only (the `ON CONFLICT` clause leaves it).
pub(crate) const CHECKPOINT_COLUMNS: &str =
    "thread_id, version, step, node, next_node, status, state, undo, writer, lease_owner,
     lease_expires_at, retention, updated_at, created_at, turns, prompt, question, closed_turns,
     turns_from, owner";

/// What a checkpoint write does to an existing thread: every column but `thread_id`,
/// `created_at` and `owner` replaced (the condition follows: the compare-and-set).
macro_rules! checkpoint_update {
    () => {
        "ON CONFLICT (thread_id) DO UPDATE SET
         version = excluded.version, step = excluded.step, node = excluded.node,
         next_node = excluded.next_node, status = excluded.status, state = excluded.state,
         undo = excluded.undo, writer = excluded.writer, lease_owner = excluded.lease_owner,
         lease_expires_at = excluded.lease_expires_at, retention = excluded.retention,
         updated_at = excluded.updated_at, turns = excluded.turns, prompt = excluded.prompt,
         question = excluded.question, closed_turns = excluded.closed_turns,
         turns_from = excluded.turns_from"
    };
}

/// `checkpoint_update`, only from the version just before (the compare-and-set). `RETURNING`
/// names the threads written.
pub(crate) const CHECKPOINT_CONFLICT: &str = concat!(
    checkpoint_update!(),
    "
     WHERE threads.version = excluded.version - 1
     RETURNING thread_id"
);

/// One multi-row upsert for checkpoints of distinct threads (SQLite's, one row of binds per
/// checkpoint).
///
/// Version 1 inserts a thread (and loses if it exists); version n updates a thread whose version
/// is n - 1 (and loses otherwise, including when the thread does not exist). `RETURNING` names
/// the threads written. The triggers of migration 0001 add each written checkpoint to the history
/// and prune it; those of 0004 append the turns it closes to the turn log.
fn upsert_checkpoints(rows: usize) -> String {
    let values = (0..rows)
        .map(|row| {
            let binds = (1..=CHECKPOINT_BINDS)
                .map(|column| format!("${}", row * CHECKPOINT_BINDS + column))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({binds})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO threads ({CHECKPOINT_COLUMNS})
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9,
                column10, column11, column12, column13, column13, column14, column15, column16,
                column17, column18, column19
         FROM (VALUES {values}) AS written
         WHERE column2 = 1 OR EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = column1)
         {CHECKPOINT_CONFLICT}"
    )
}

/// PostgreSQL's upsert of checkpoints of distinct threads: the same columns, conditions and
/// conflict clause as `upsert_checkpoints`, but one array per column (`UNNEST`), so the statement
/// has one shape whatever the group's size and each writer's connection prepares it once (a
/// `VALUES` list is a new statement for every size: parsed, planned and described again).
///
/// The existence check is a scalar subquery, not `EXISTS`: under `OR` the planner may turn an
/// `EXISTS` into a hashed subplan over the whole table for a plan it expects to see many rows,
/// which an array's unknown length invites; a scalar subquery is always a primary-key lookup.
pub(crate) static PG_UPSERT_CHECKPOINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO threads ({CHECKPOINT_COLUMNS})
         SELECT w.thread_id, w.version, w.step, w.node, w.next_node, w.status, w.state, w.undo,
                w.writer, w.lease_owner, w.lease_expires_at, $12, $13, $13, w.turns, w.prompt,
                w.question, w.closed_turns, w.turns_from, w.owner
         FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $14::int8[],
                     $15::text[], $16::text[], $17::text[], $18::text[], $19::text[])
              AS w(thread_id, version, step, node, next_node, status, state, undo, writer,
                   lease_owner, lease_expires_at, turns, prompt, question, closed_turns,
                   turns_from, owner)
         WHERE w.version = 1
            OR (SELECT true FROM threads t WHERE t.thread_id = w.thread_id) IS NOT NULL
         {CHECKPOINT_CONFLICT}"
    )
});

/// PostgreSQL's group write when it holds several consecutive checkpoints of a thread (the
/// engine queues a node's checkpoint before its predecessor's has committed): only the last of
/// them is written to `threads`, from the version before the first (`$20`, the expected version
/// of each row, replaces `excluded.version - 1`; 0 creates the thread, which a thread that exists
/// refuses), and the ones before it (`$21`–`$28`) go only to
/// the history, announced and pruned as the statement-level triggers of 0009 do, and only for
/// the threads whose compare-and-set won. They are recorded during the statement and the last
/// one by the trigger after it, so the history and the notifications keep the versions' order.
/// Otherwise the columns and conditions of `PG_UPSERT_CHECKPOINTS`.
pub(crate) static PG_FOLD_CHECKPOINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH written AS (
             INSERT INTO threads ({CHECKPOINT_COLUMNS})
             SELECT w.thread_id, w.version, w.step, w.node, w.next_node, w.status, w.state,
                    w.undo, w.writer, w.lease_owner, w.lease_expires_at, $12, $13, $13, w.turns,
                    w.prompt, w.question, w.closed_turns, w.turns_from, w.owner
             FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[],
                         $14::int8[], $15::text[], $16::text[], $17::text[], $18::text[],
                         $19::text[], $20::int8[])
                  AS w(thread_id, version, step, node, next_node, status, state, undo, writer,
                       lease_owner, lease_expires_at, turns, prompt, question, closed_turns,
                       turns_from, owner, expected)
             WHERE w.expected = 0
                OR (SELECT true FROM threads t WHERE t.thread_id = w.thread_id) IS NOT NULL
             {update}
             WHERE (threads.thread_id, threads.version) IN
                   (SELECT e.thread_id, e.expected
                    FROM UNNEST($1::text[], $20::int8[]) AS e(thread_id, expected))
             RETURNING thread_id
         ),
         passed AS MATERIALIZED (
             SELECT baton_record_checkpoints(ARRAY(
                 SELECT ROW(p.thread_id, p.version, p.step, p.node, p.next_node, p.status,
                            p.undo, p.writer, $12, $13, NULL)::baton_written
                 FROM UNNEST($21::text[], $22::int8[], $23::int8[], $24::text[], $25::text[],
                             $26::text[], $27::text[], $28::text[])
                      AS p(thread_id, version, step, node, next_node, status, undo, writer)
                 WHERE p.thread_id IN (SELECT thread_id FROM written)
                 ORDER BY p.thread_id, p.version))
         )
         SELECT written.thread_id FROM written LEFT JOIN passed ON true",
        update = checkpoint_update!()
    )
});

/// The SQL of one page of the thread list (see `Sql::list_threads`), in `$n` placeholders: public
/// so a test (or an operator) can ask each database for its plan.
pub fn list_sql(filtered: bool, after: bool) -> String {
    owned_list_sql(filtered, false, after)
}

/// `list_sql`, also kept to one owner's threads when `owned` (a user key's list).
pub fn owned_list_sql(filtered: bool, owned: bool, after: bool) -> String {
    let mut conditions = Vec::new();
    // `$1` is the limit; the status, the owner and the cursor take the next numbers, in order.
    let mut next = 2;
    if filtered {
        conditions.push(format!("status = ${next}"));
        next += 1;
    }
    if owned {
        conditions.push(format!("owner = ${next}"));
        next += 1;
    }
    if after {
        conditions.push(format!(
            "(updated_at, thread_id) < (${next}, ${})",
            next + 1
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT thread_id, status, version, created_at, updated_at, turns, prompt, question
         FROM threads {filter} ORDER BY updated_at DESC, thread_id DESC LIMIT $1"
    )
}

/// The list query with its binds in the order `list_sql` numbers them.
fn list_query<DB>(q: &ThreadQuery) -> Query<'static, DB, DB::Arguments>
where
    DB: Dialect,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'r> i64: Encode<'r, DB> + Type<DB>,
    for<'r> String: Encode<'r, DB> + Type<DB>,
{
    let sql = owned_list_sql(q.status.is_some(), q.owner.is_some(), q.after.is_some());
    let mut statement = query::<DB>(&sql).bind(i64::from(q.limit));
    if let Some(status) = q.status {
        statement = statement.bind(status.as_str());
    }
    if let Some(owner) = &q.owner {
        statement = statement.bind(owner.as_str().to_owned());
    }
    if let Some(after) = &q.after {
        statement = statement
            .bind(after.updated_at)
            .bind(after.thread_id.clone());
    }
    statement
}

/// A query in this database's placeholders. Only the module's own SQL text comes here (values
/// are always bound), which is what makes the assertion true.
fn query<DB: Dialect>(sql: &str) -> Query<'static, DB, DB::Arguments> {
    sqlx::query(AssertSqlSafe(DB::placeholders(sql)))
}

/// Threads counted by status (`/metrics`), one grouped query that both databases answer from an
/// index leading with `status` (public so that a test can check the plans).
pub const THREADS_BY_STATUS: &str = "SELECT status, COUNT(*) AS count FROM threads GROUP BY status";

/// The queries over one pool of either database.
pub(crate) struct Sql<DB: sqlx::Database> {
    pool: Pool<DB>,
}

/// Binds `$1`-`$19` of PostgreSQL's checkpoint statements (`PG_UPSERT_CHECKPOINTS`,
/// `PG_FOLD_CHECKPOINTS`): one array per column, one element per checkpoint.
fn bind_checkpoint_arrays<'q>(
    statement: Query<'q, Postgres, PgArguments>,
    rows: &[&CheckpointRow],
    retention: i64,
    now: i64,
) -> Query<'q, Postgres, PgArguments> {
    let text = |f: fn(&CheckpointRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let maybe =
        |f: fn(&CheckpointRow) -> Option<&str>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let number = |f: fn(&CheckpointRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    statement
        .bind(text(|r| r.thread_id.as_str()))
        .bind(number(|r| r.version))
        .bind(number(|r| r.step))
        .bind(text(|r| r.node.as_str()))
        .bind(text(|r| r.next.as_str()))
        .bind(text(|r| r.status.as_str()))
        .bind(text(|r| r.state.as_str()))
        .bind(maybe(|r| r.undo.as_deref()))
        .bind(text(|r| r.worker.as_str()))
        .bind(maybe(|r| r.lease.as_ref().map(|l| l.worker.as_str())))
        .bind(number(|r| r.lease.as_ref().map_or(0, |l| l.expires_at)))
        .bind(retention)
        .bind(now)
        .bind(number(|r| r.turns))
        .bind(text(|r| r.prompt.as_str()))
        .bind(maybe(|r| r.question.as_deref()))
        .bind(maybe(|r| r.closed_turns.as_deref()))
        .bind(maybe(|r| r.turns_from.as_deref()))
        .bind(maybe(|r| r.owner.as_deref()))
}

impl Sql<Postgres> {
    /// Writes checkpoints of distinct threads in one statement of one shape
    /// (`PG_UPSERT_CHECKPOINTS`, one array per column); returns the threads whose
    /// compare-and-set won.
    pub async fn write_checkpoint_arrays(
        conn: &mut PgConnection,
        written: &[&CheckpointRow],
        retention: i64,
        now: i64,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let statement = sqlx::query(AssertSqlSafe(PG_UPSERT_CHECKPOINTS.as_str()));
        let won = bind_checkpoint_arrays(statement, written, retention, now)
            .fetch_all(conn)
            .await?;
        won.iter().map(|r| r.try_get("thread_id")).collect()
    }

    /// Writes `heads` (checkpoints of distinct threads, each from its `expected` version) and
    /// records `passed` (the checkpoints between, for the history only) in one statement
    /// (`PG_FOLD_CHECKPOINTS`); returns the threads whose compare-and-set won.
    pub async fn write_folded_checkpoints(
        conn: &mut PgConnection,
        heads: &[(&CheckpointRow, i64)],
        passed: &[&CheckpointRow],
        retention: i64,
        now: i64,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let passed_text =
            |f: fn(&CheckpointRow) -> &str| passed.iter().map(|r| f(r)).collect::<Vec<_>>();
        let rows: Vec<&CheckpointRow> = heads.iter().map(|(row, _)| *row).collect();
        let statement = sqlx::query(AssertSqlSafe(PG_FOLD_CHECKPOINTS.as_str()));
        let won = bind_checkpoint_arrays(statement, &rows, retention, now)
            .bind(
                heads
                    .iter()
                    .map(|(_, expected)| *expected)
                    .collect::<Vec<_>>(),
            )
            .bind(passed_text(|r| r.thread_id.as_str()))
            .bind(passed.iter().map(|r| r.version).collect::<Vec<_>>())
            .bind(passed.iter().map(|r| r.step).collect::<Vec<_>>())
            .bind(passed_text(|r| r.node.as_str()))
            .bind(passed_text(|r| r.next.as_str()))
            .bind(passed_text(|r| r.status.as_str()))
            .bind(passed.iter().map(|r| r.undo.as_deref()).collect::<Vec<_>>())
            .bind(passed_text(|r| r.worker.as_str()))
            .fetch_all(conn)
            .await?;
        won.iter().map(|r| r.try_get("thread_id")).collect()
    }
}

impl<DB> Sql<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Encode<'r, DB> + Type<DB>,
    for<'r> String: Encode<'r, DB>,
    for<'r> Option<i64>: Decode<'r, DB> + Encode<'r, DB> + Type<DB>,
{
    /// Queries over `pool` (SQLite's readers, or PostgreSQL's one pool).
    pub fn new(pool: Pool<DB>) -> Self {
        Sql { pool }
    }

    /// The pool, for what a backend does besides these queries.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Writes checkpoints of distinct threads in one statement; returns the threads whose
    /// compare-and-set won.
    pub async fn write_checkpoints<'c, E>(
        executor: E,
        written: &[&CheckpointRow],
        retention: i64,
        now: i64,
    ) -> Result<HashSet<String>, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let mut statement = query::<DB>(&upsert_checkpoints(written.len()));
        for row in written {
            statement = statement
                .bind(row.thread_id.as_str())
                .bind(row.version)
                .bind(row.step)
                .bind(row.node.as_str())
                .bind(row.next.as_str())
                .bind(row.status.as_str())
                .bind(row.state.as_str())
                .bind(row.undo.as_deref())
                .bind(row.worker.as_str())
                .bind(row.lease.as_ref().map(|l| l.worker.as_str()))
                .bind(row.lease.as_ref().map_or(0, |l| l.expires_at))
                .bind(retention)
                .bind(now)
                .bind(row.turns)
                .bind(row.prompt.as_str())
                .bind(row.question.as_deref())
                .bind(row.closed_turns.as_deref())
                .bind(row.turns_from.as_deref())
                .bind(row.owner.as_deref());
        }
        let won = statement.fetch_all(executor).await?;
        won.iter().map(|r| r.try_get("thread_id")).collect()
    }

    /// Extends a lease its worker still holds; false if another process took the run.
    pub async fn renew_lease<'c, E>(
        executor: E,
        thread_id: &str,
        lease: &Lease,
    ) -> Result<bool, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = query::<DB>(
            "UPDATE threads SET lease_expires_at = $1
             WHERE thread_id = $2 AND lease_owner = $3 AND status = 'processing'",
        )
        .bind(lease.expires_at)
        .bind(thread_id)
        .bind(lease.worker.as_str())
        .execute(executor)
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    /// Deletes a thread at `version` unless a run holds a live lease on it; the trigger of
    /// migration 0002 (SQLite) / 0003 (PostgreSQL) deletes its history in the same statement.
    pub async fn delete_thread<'c, E>(
        executor: E,
        thread_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = query::<DB>(
            "DELETE FROM threads WHERE thread_id = $1 AND version = $2
             AND NOT (status = 'processing' AND lease_expires_at >= $3)",
        )
        .bind(thread_id)
        .bind(version)
        .bind(now)
        .execute(executor)
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    /// Deletes one batch of expired threads in one statement (the delete triggers take their
    /// history and webhook deliveries with them). The subquery walks `threads_status_recent`
    /// (status, then oldest `updated_at`) and the delete finds each row by its key, only at the
    /// version the subquery read: a compare-and-set, so a thread answered meanwhile survives. On
    /// SQLite the statement runs alone in the one writer; on PostgreSQL the subquery locks each
    /// row it picks in its latest version, checking it still matches, and skips rows another
    /// transaction holds (an answer being written, another process's reaper).
    pub async fn expire_threads<'c, E>(executor: E, batch: &ExpiryBatch) -> Result<u64, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = query::<DB>(&format!(
            "DELETE FROM threads WHERE (thread_id, version) IN (
                 SELECT thread_id, version FROM threads WHERE status = $1 AND updated_at < $2
                 ORDER BY updated_at LIMIT $3 {skip})",
            skip = DB::SKIP_LOCKED
        ))
        .bind(batch.status.as_str())
        .bind(batch.updated_before)
        .bind(batch.limit)
        .execute(executor)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    /// Adds or replaces a card (as its JSON) with a new `revision`.
    pub async fn put_agent<'c, E>(
        executor: E,
        id: &str,
        card: &str,
        revision: i64,
        now: i64,
    ) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        query::<DB>(
            "INSERT INTO agents (id, card, updated_at, revision) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET card = excluded.card, updated_at = excluded.updated_at,
                 revision = excluded.revision",
        )
        .bind(id)
        .bind(card)
        .bind(now)
        .bind(revision)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// Adds `rating` to the card's running mean in one statement, as `AgentCard::add_rating`
    /// does (a rating given at registration counts as the first); answers the row as updated
    /// (`id, card`), or none without such a card. The new values are computed from the row's own,
    /// under its lock (PostgreSQL re-reads a row a concurrent update changed before applying
    /// this one; SQLite has one writer), so ratings racing on several processes all count. The
    /// mean needs no clamp: a mean of values within 0..=5 stays within it under rounding.
    pub async fn rate_agent<'c, E>(
        executor: E,
        id: &str,
        rating: f64,
        revision: i64,
        now: i64,
    ) -> Result<Option<DB::Row>, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
        for<'r> f64: Encode<'r, DB> + Type<DB>,
    {
        let mean = format!("COALESCE({}, 0.0)", DB::json_real("card", "rating"));
        let count = format!("COALESCE({}, 0)", DB::json_integer("card", "rating_count"));
        let counted = format!("(CASE WHEN {count} = 0 AND {mean} > 0 THEN 1 ELSE {count} END)");
        let new_mean = format!("(({mean} * {counted} + $2) / ({counted} + 1))");
        let new_count = format!("({counted} + 1)");
        let card = DB::json_with(
            "card",
            &[("rating", &new_mean), ("rating_count", &new_count)],
        );
        query::<DB>(&format!(
            "UPDATE agents SET card = {card}, updated_at = $3, revision = $4 WHERE id = $1
             RETURNING id, card"
        ))
        .bind(id)
        .bind(rating)
        .bind(now)
        .bind(revision)
        .fetch_optional(executor)
        .await
    }

    /// Removes a card; false if there was none.
    pub async fn delete_agent<'c, E>(executor: E, id: &str) -> Result<bool, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = query::<DB>("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(executor)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    /// Claims up to `claim.limit` due deliveries for `claim.worker` until `claim.until`, oldest
    /// due first. The outer conditions are checked again on each row as it is updated, so a row
    /// another process claimed meanwhile is not claimed twice; on PostgreSQL the subquery also
    /// skips rows another claim holds locked.
    pub async fn claim_deliveries<'c, E>(
        executor: E,
        claim: &DeliveryClaim<'_>,
    ) -> Result<Vec<DB::Row>, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let due = "state = 'pending' AND next_attempt_at <= $3 AND claim_expires_at <= $3";
        query::<DB>(&format!(
            "UPDATE webhook_deliveries SET claimed_by = $1, claim_expires_at = $2
             WHERE {due} AND delivery_id IN (
                 SELECT delivery_id FROM webhook_deliveries WHERE {due}
                 ORDER BY next_attempt_at LIMIT $4 {skip})
             RETURNING delivery_id, thread_id, version, event, url, body, attempts",
            skip = DB::SKIP_LOCKED
        ))
        .bind(claim.worker.as_str())
        .bind(claim.until)
        .bind(claim.now)
        .bind(claim.limit)
        .fetch_all(executor)
        .await
    }

    /// Claimed rows as deliveries.
    pub fn claimed(claimed: &[DB::Row]) -> Result<Vec<Delivery>, StoreError> {
        claimed.iter().map(rows::delivery).collect()
    }

    /// Records an attempt on a delivery `write.worker` still holds (false, and nothing written,
    /// if it does not): the delivery's state, count and next time, its body if not yet kept, the
    /// claim released; and the attempt's own row. Two statements: run it in a transaction.
    pub async fn record_attempt(
        conn: &mut DB::Connection,
        write: &AttemptWrite<'_>,
    ) -> Result<bool, sqlx::Error> {
        let attempt = write.attempt;
        let updated = query::<DB>(
            "UPDATE webhook_deliveries SET state = $1, attempts = $2, next_attempt_at = $3,
                 body = COALESCE(body, $4), claimed_by = NULL, claim_expires_at = 0,
                 updated_at = $5
             WHERE delivery_id = $6 AND claimed_by = $7",
        )
        .bind(attempt.outcome.delivery_state().as_str())
        .bind(attempt.attempt)
        .bind(attempt.next_attempt_at.unwrap_or(attempt.finished_at))
        .bind(write.body)
        .bind(attempt.finished_at)
        .bind(attempt.delivery_id.as_str())
        .bind(write.worker.as_str())
        .execute(&mut *conn)
        .await?;
        if DB::rows_affected(&updated) == 0 {
            return Ok(false);
        }
        query::<DB>(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, finished_at,
                 status_code, error, outcome, next_attempt_at, writer)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(attempt.delivery_id.as_str())
        .bind(attempt.attempt)
        .bind(attempt.started_at)
        .bind(attempt.finished_at)
        .bind(attempt.status_code)
        .bind(attempt.error.as_deref())
        .bind(attempt.outcome.as_str())
        .bind(attempt.next_attempt_at)
        .bind(write.worker.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(true)
    }

    /// The thread's deliveries, oldest checkpoint first, each with its attempts (one snapshot).
    pub async fn deliveries(&self, thread_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut tx = self.pool.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let deliveries = query::<DB>(
            "SELECT delivery_id, thread_id, version, event, url, state, next_attempt_at, created_at
             FROM webhook_deliveries WHERE thread_id = $1 ORDER BY version, created_at",
        )
        .bind(thread_id)
        .fetch_all(&mut *tx)
        .await?;
        let attempts = query::<DB>(
            "SELECT a.delivery_id, d.thread_id, d.version, d.event, a.attempt, a.started_at,
                    a.finished_at, a.status_code, a.error, a.outcome, a.next_attempt_at
             FROM webhook_attempts a JOIN webhook_deliveries d ON d.delivery_id = a.delivery_id
             WHERE d.thread_id = $1 ORDER BY a.delivery_id, a.attempt",
        )
        .bind(thread_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut attempts = attempts
            .iter()
            .map(rows::attempt)
            .collect::<Result<Vec<_>, _>>()?;
        deliveries
            .iter()
            .map(|row| {
                let mut record = rows::delivery_record(row)?;
                record.attempts = attempts
                    .extract_if(.., |a| a.delivery_id == record.delivery_id)
                    .collect();
                Ok(record)
            })
            .collect()
    }

    /// The latest checkpoint of a thread.
    pub async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row =
            query::<DB>("SELECT version, step, next_node, state FROM threads WHERE thread_id = $1")
                .bind(thread_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| rows::checkpoint(thread_id, &row)).transpose()
    }

    /// The thread's kept checkpoints, newest first.
    pub async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let found = query::<DB>(
            "SELECT version, step, node, next_node, status, writer, created_at FROM checkpoints
             WHERE thread_id = $1 ORDER BY version DESC",
        )
        .bind(thread_id)
        .fetch_all(&self.pool)
        .await?;
        found.iter().map(rows::history_entry).collect()
    }

    /// A past checkpoint, rebuilt from the head and the undos after it, all read in one
    /// snapshot so the head and the history agree.
    pub async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let mut tx = self.pool.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let Some(head) = query::<DB>("SELECT version, state FROM threads WHERE thread_id = $1")
            .bind(thread_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let head_version: i64 = head.try_get("version")?;
        let Some(target) = query::<DB>(
            "SELECT step, next_node FROM checkpoints WHERE thread_id = $1 AND version = $2",
        )
        .bind(thread_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let undos = query::<DB>(
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

    /// Bytes stored for a thread (head, history and turn log).
    pub async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        let length = DB::BYTE_LENGTH;
        let row = query::<DB>(&format!(
            "SELECT CAST(
                 (SELECT COALESCE(SUM({length}(state) + COALESCE({length}(undo), 0)
                                      + COALESCE({length}(closed_turns), 0)), 0)
                  FROM threads WHERE thread_id = $1)
               + (SELECT COALESCE(SUM({length}(body) + 24), 0)
                  FROM turns WHERE thread_id = $1)
               + (SELECT COALESCE(SUM(COALESCE({length}(undo), 0) + {length}(node)
                                      + {length}(next_node) + 40), 0)
                  FROM checkpoints WHERE thread_id = $1) AS BIGINT) AS bytes"
        ))
        .bind(thread_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0))
    }

    /// The logged turns at `positions`, oldest first: a range of the primary key.
    pub async fn turns(
        &self,
        thread_id: &str,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError> {
        let found = query::<DB>(
            "SELECT turn, body FROM turns WHERE thread_id = $1 AND turn >= $2 AND turn < $3
             ORDER BY turn",
        )
        .bind(thread_id)
        .bind(i64::try_from(positions.start).unwrap_or(i64::MAX))
        .bind(i64::try_from(positions.end).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(|row| rows::logged_turn(thread_id, row))
            .collect()
    }

    /// The position of the logged turn `message_id` opened (the partial index `turns_opened_by`).
    pub async fn turn_opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        let found = query::<DB>(
            "SELECT turn FROM turns WHERE thread_id = $1 AND opened_by = $2 ORDER BY turn LIMIT 1",
        )
        .bind(thread_id)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        found
            .map(|row| Ok(usize::try_from(row.try_get::<i64, _>("turn")?).unwrap_or(0)))
            .transpose()
    }

    /// A page of threads, newest first, walked on the index `threads_recent` (or
    /// `threads_status_recent` with a status): the row-value comparison is a range of that index.
    pub async fn list_threads(&self, q: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError> {
        let found = list_query::<DB>(q).fetch_all(&self.pool).await?;
        found.iter().map(rows::thread_summary).collect()
    }

    /// Threads with a run in progress whose lease expired before `now` (or that have none).
    pub async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let found = query::<DB>(
            "SELECT thread_id FROM threads WHERE status = 'processing' AND lease_expires_at < $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(found
            .iter()
            .map(|r| r.try_get("thread_id"))
            .collect::<Result<_, _>>()?)
    }

    /// How many threads have each status: one grouped query, answered from an index leading
    /// with `status` without reading a row.
    pub async fn threads_by_status(&self) -> Result<Vec<(ThreadStatus, u64)>, StoreError> {
        let found = query::<DB>(THREADS_BY_STATUS).fetch_all(&self.pool).await?;
        found.iter().map(rows::status_count).collect()
    }

    /// Up to `limit` stored cards as id and JSON, by id, after `after` (a range of the
    /// primary key).
    pub async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CardRow>, StoreError> {
        let found =
            query::<DB>("SELECT id, card, revision FROM agents WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        found.iter().map(rows::card_row).collect()
    }

    /// The stored cards among `ids` (primary-key lookups, `IN_LIST` ids a query), in no order.
    pub async fn agent_rows_of(&self, ids: &[String]) -> Result<Vec<CardRow>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_LIST) {
            let binds: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT id, card, revision FROM agents WHERE id IN ({})",
                binds.join(", ")
            );
            let mut statement = query::<DB>(&sql);
            for id in chunk {
                statement = statement.bind(id.clone());
            }
            for row in statement.fetch_all(&self.pool).await? {
                out.push(rows::card_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Up to `limit` stored cards' ids with their revisions, by id, after `after`.
    pub async fn agent_revisions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let found =
            query::<DB>("SELECT id, revision FROM agents WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
        found
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("revision")?)))
            .collect()
    }

    /// The directory snapshot's head, if one was written.
    pub async fn snapshot_head(&self) -> Result<Option<SnapshotHead>, StoreError> {
        let found = query::<DB>(
            "SELECT snapshot_id, format, parts, written_at FROM directory_snapshot WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        found
            .map(|row| {
                Ok(SnapshotHead {
                    snapshot_id: row.try_get("snapshot_id")?,
                    format: row.try_get("format")?,
                    parts: row.try_get("parts")?,
                    written_at: row.try_get("written_at")?,
                })
            })
            .transpose()
    }

    /// One part of a snapshot (`None` once pruned).
    pub async fn snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>
    where
        for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    {
        let found = query::<DB>(
            "SELECT bytes FROM directory_snapshot_parts WHERE snapshot_id = $1 AND part = $2",
        )
        .bind(snapshot_id)
        .bind(part)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.map(|row| row.try_get("bytes")).transpose()?)
    }

    /// Writes one part of a snapshot not yet published.
    pub async fn put_snapshot_part<'c, E>(
        executor: E,
        snapshot_id: i64,
        part: i64,
        bytes: Vec<u8>,
    ) -> Result<(), sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
        for<'r> Vec<u8>: Encode<'r, DB> + Type<DB>,
    {
        query::<DB>(
            "INSERT INTO directory_snapshot_parts (snapshot_id, part, bytes) VALUES ($1, $2, $3)",
        )
        .bind(snapshot_id)
        .bind(part)
        .bind(bytes)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// Makes a written snapshot the head, unless a newer one already is; false then.
    pub async fn publish_snapshot<'c, E>(
        executor: E,
        head: &SnapshotHead,
    ) -> Result<bool, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = query::<DB>(
            "INSERT INTO directory_snapshot (id, snapshot_id, format, parts, written_at)
             VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET snapshot_id = excluded.snapshot_id,
                 format = excluded.format, parts = excluded.parts,
                 written_at = excluded.written_at
             WHERE directory_snapshot.snapshot_id < excluded.snapshot_id",
        )
        .bind(head.snapshot_id)
        .bind(head.format)
        .bind(head.parts)
        .bind(head.written_at)
        .execute(executor)
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    /// Deletes the parts of snapshots older than the head (superseded, or abandoned by a
    /// writer that lost the race to publish); returns how many went.
    pub async fn prune_snapshot_parts<'c, E>(executor: E) -> Result<u64, sqlx::Error>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = query::<DB>(
            "DELETE FROM directory_snapshot_parts
             WHERE snapshot_id < (SELECT snapshot_id FROM directory_snapshot WHERE id = 1)",
        )
        .execute(executor)
        .await?;
        Ok(DB::rows_affected(&done))
    }

    /// One stored agent card (a primary-key lookup).
    pub async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError> {
        let found = query::<DB>("SELECT id, card FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        found.as_ref().map(rows::agent).transpose()
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        query::<DB>("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
