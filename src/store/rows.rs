//! Decoding rows into the store's types, shared by the SQL backends (the column names are the
//! same in both databases).

use serde::de::DeserializeOwned;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::outbox::{Delivery, DeliveryRecord, DeliveryState, WebhookAttempt};
use super::{
    CardRow, Checkpoint, CheckpointWrite, HistoryEntry, LoggedTurn, StoreError, ThreadSummary,
    rebuild,
};
use crate::card::AgentCard;
use crate::state::{ThreadState, ThreadStatus, WorkerId};

/// Parses a name stored in a column (`next_node`, `node`, `status`) as the type it names.
fn parse<T: DeserializeOwned>(column: &str, name: String) -> Result<T, StoreError> {
    let what = format!("{column} {name:?}");
    serde_json::from_value(serde_json::Value::String(name))
        .map_err(|e| StoreError::corrupt(what, e))
}

/// A `(status, count)` row of the threads counted by status.
pub(crate) fn status_count<R>(row: &R) -> Result<(ThreadStatus, u64), StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let count: i64 = row.try_get("count")?;
    Ok((
        parse("status", row.try_get("status")?)?,
        u64::try_from(count).unwrap_or(0),
    ))
}

/// The lost compare-and-set of a write.
pub(crate) fn conflict(write: &CheckpointWrite<'_>) -> StoreError {
    StoreError::Conflict {
        thread_id: write.checkpoint.thread_id.clone(),
        expected: write.checkpoint.version - 1,
    }
}

/// A head row (`version, step, next_node, state`) as a checkpoint.
pub(crate) fn checkpoint<R>(thread_id: &str, row: &R) -> Result<Checkpoint, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: String = row.try_get("state")?;
    Ok(Checkpoint {
        thread_id: thread_id.to_owned(),
        version: row.try_get("version")?,
        step: row.try_get("step")?,
        next: parse("next_node", row.try_get("next_node")?)?,
        state: serde_json::from_str::<ThreadState>(&state)
            .map_err(|e| StoreError::corrupt(format!("thread {thread_id}"), e))?,
    })
}

/// A `checkpoints` row as a history entry.
pub(crate) fn history_entry<R>(row: &R) -> Result<HistoryEntry, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(HistoryEntry {
        version: row.try_get("version")?,
        step: row.try_get("step")?,
        node: parse("node", row.try_get("node")?)?,
        next: parse("next_node", row.try_get("next_node")?)?,
        status: parse("status", row.try_get("status")?)?,
        // The column keeps its first name, `writer`.
        worker: WorkerId::new(row.try_get::<String, _>("writer")?),
        created_at: row.try_get("created_at")?,
        forked_from: None,
    })
}

/// A `threads` row of the list query as a list item.
pub(crate) fn thread_summary<R>(row: &R) -> Result<ThreadSummary, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ThreadSummary {
        thread_id: row.try_get("thread_id")?,
        status: parse("status", row.try_get("status")?)?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        turns: row.try_get("turns")?,
        prompt: row.try_get("prompt")?,
        question_for_user: row.try_get("question")?,
    })
}

/// A past checkpoint from the head's state row, the target version's `checkpoints` row
/// (`step, next_node`) and the undo rows after it, newest first.
pub(crate) fn past_checkpoint<R>(
    thread_id: &str,
    version: i64,
    head: &R,
    target: &R,
    undos: &[R],
) -> Result<Checkpoint, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let undos = undos
        .iter()
        .map(|r| r.try_get::<Option<String>, _>("undo"))
        .collect::<Result<Vec<_>, _>>()?;
    let head_state: String = head.try_get("state")?;
    Ok(Checkpoint {
        thread_id: thread_id.to_owned(),
        version,
        step: target.try_get("step")?,
        next: parse("next_node", target.try_get("next_node")?)?,
        state: rebuild(thread_id, &head_state, undos)?,
    })
}

/// A `turns` row (`turn, body`) as the logged turn.
pub(crate) fn logged_turn<R>(thread_id: &str, row: &R) -> Result<LoggedTurn, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let turn: i64 = row.try_get("turn")?;
    let body: String = row.try_get("body")?;
    Ok(LoggedTurn {
        turn: usize::try_from(turn).unwrap_or(0),
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::corrupt(format!("thread {thread_id} turn {turn}"), e))?,
    })
}

/// An `agents` row (`id, card, revision`) unparsed.
pub(crate) fn card_row<R>(row: &R) -> Result<CardRow, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(CardRow {
        id: row.try_get("id")?,
        json: row.try_get("card")?,
        revision: row.try_get("revision")?,
    })
}

/// An `agents` row (`id, card`) as its card.
pub(crate) fn agent<R>(row: &R) -> Result<AgentCard, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let card: String = row.try_get("card")?;
    serde_json::from_str(&card).map_err(|e| StoreError::corrupt(format!("agent {id}"), e))
}

/// A claimed `webhook_deliveries` row (`delivery_id, thread_id, version, event, url, body,
/// attempts`).
pub(crate) fn delivery<R>(row: &R) -> Result<Delivery, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Delivery {
        delivery_id: row.try_get("delivery_id")?,
        thread_id: row.try_get("thread_id")?,
        version: row.try_get("version")?,
        event: parse("event", row.try_get("event")?)?,
        url: row.try_get("url")?,
        body: row.try_get("body")?,
        attempts: row.try_get("attempts")?,
    })
}

/// A listed `webhook_deliveries` row, its attempts still to be added.
pub(crate) fn delivery_record<R>(row: &R) -> Result<DeliveryRecord, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: DeliveryState = parse("state", row.try_get("state")?)?;
    Ok(DeliveryRecord {
        delivery_id: row.try_get("delivery_id")?,
        version: row.try_get("version")?,
        event: parse("event", row.try_get("event")?)?,
        url: row.try_get("url")?,
        state,
        next_attempt_at: match state {
            DeliveryState::Pending => Some(row.try_get("next_attempt_at")?),
            DeliveryState::Delivered | DeliveryState::Failed => None,
        },
        created_at: row.try_get("created_at")?,
        attempts: Vec::new(),
    })
}

/// A `webhook_attempts` row joined with its delivery's thread, version and event.
pub(crate) fn attempt<R>(row: &R) -> Result<WebhookAttempt, StoreError>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(WebhookAttempt {
        delivery_id: row.try_get("delivery_id")?,
        thread_id: row.try_get("thread_id")?,
        version: row.try_get("version")?,
        event: parse("event", row.try_get("event")?)?,
        attempt: row.try_get("attempt")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        status_code: row.try_get("status_code")?,
        error: row.try_get("error")?,
        outcome: parse("outcome", row.try_get("outcome")?)?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}
