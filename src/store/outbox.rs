//! The webhook outbox: deliveries the database enqueues itself, in the same statement as the
//! checkpoint that paused or ended a run (a trigger on `threads`, migrations `*_webhooks.sql`),
//! so a crash between the checkpoint and the POST loses nothing; and each attempt's record.
//!
//! A delivery is claimed by one process at a time (a claim with an expiry, taken with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several processes on one database deliver each
//! checkpoint once.

use serde::{Deserialize, Serialize};

use crate::state::{ThreadStatus, WorkerId};

/// What a delivery tells its receiver: the thread paused for input or finished one way.
/// Sent as `X-Baton-Event`; the trigger writes the same names, read back with serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl WebhookEvent {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Paused => "paused",
            WebhookEvent::Completed => "completed",
            WebhookEvent::Failed => "failed",
            WebhookEvent::Cancelled => "cancelled",
        }
    }

    /// The event a checkpoint with this status is delivered as (`None`: not delivered).
    pub fn of_status(status: ThreadStatus) -> Option<Self> {
        match status {
            ThreadStatus::PendingUserInput => Some(WebhookEvent::Paused),
            ThreadStatus::Completed => Some(WebhookEvent::Completed),
            ThreadStatus::Error => Some(WebhookEvent::Failed),
            ThreadStatus::Cancelled => Some(WebhookEvent::Cancelled),
            ThreadStatus::Processing => None,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; due at `next_attempt_at`.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Given up: a final answer (4xx but 429), a refused URL, or the attempts ran out.
    Failed,
}

impl DeliveryState {
    /// The column name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed in a way worth trying again; `next_attempt_at` says when.
    Retry,
    /// It failed for good (and with it the delivery).
    Failed,
}

impl AttemptOutcome {
    /// The column name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Failed => "failed",
        }
    }

    /// The state the delivery is in after an attempt with this outcome.
    pub fn delivery_state(self) -> DeliveryState {
        match self {
            AttemptOutcome::Delivered => DeliveryState::Delivered,
            AttemptOutcome::Retry => DeliveryState::Pending,
            AttemptOutcome::Failed => DeliveryState::Failed,
        }
    }
}

/// A due delivery one process has claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Unique, and the same for every attempt (`X-Baton-Delivery`), so a receiver can drop
    /// repeats.
    pub delivery_id: String,
    pub thread_id: String,
    /// The checkpoint whose response is delivered.
    pub version: i64,
    pub event: WebhookEvent,
    /// The thread's webhook when the checkpoint was written.
    pub url: String,
    /// The body, once an attempt has rendered it (so every retry sends the same bytes).
    pub body: Option<String>,
    /// Attempts made so far.
    pub attempts: i64,
}

/// Asks for up to `limit` due deliveries, each claimed for `worker` until `until`.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryClaim<'a> {
    pub worker: &'a WorkerId,
    /// Milliseconds since the Unix epoch: due means `next_attempt_at <= now`.
    pub now: i64,
    /// The claim's expiry: after it another process may take the delivery (its claimant died).
    pub until: i64,
    pub limit: i64,
}

/// One attempt, as recorded and as shown (`GET /api/threads/{id}/webhooks`, SSE `webhook`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookAttempt {
    pub delivery_id: String,
    pub thread_id: String,
    pub version: i64,
    pub event: WebhookEvent,
    /// Counting from 1.
    pub attempt: i64,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    pub finished_at: i64,
    /// The receiver's status code, when it answered.
    pub status_code: Option<i64>,
    /// Why it failed, when it did without a status (connection, timeout, refused URL).
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    /// When the next attempt is due (outcome `retry` only).
    pub next_attempt_at: Option<i64>,
}

/// An attempt to record, with what the delivery keeps from it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptWrite<'a> {
    pub attempt: &'a WebhookAttempt,
    /// The body sent (kept on the delivery by the first attempt).
    pub body: Option<&'a str>,
    /// The claimant; a delivery claimed by another process since is left alone.
    pub worker: &'a WorkerId,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub version: i64,
    pub event: WebhookEvent,
    pub url: String,
    pub state: DeliveryState,
    /// When the next attempt is due (state `pending` only).
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub attempts: Vec<WebhookAttempt>,
}
