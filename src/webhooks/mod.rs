//! Webhooks: Baton POSTs a thread's `ProcessResponse` to the URL its start request named when the
//! thread pauses for input and when it finishes (completed, failed, cancelled).
//!
//! The store enqueues each delivery in the same write as the checkpoint (`store/outbox.rs`), so
//! a crash loses none; [`Deliverer`], one task per process owned by `Application`, delivers them
//! with a signature, retries with backoff, and a record of every attempt. A run never waits
//! for a delivery, and a delivery that fails never touches its thread.

pub mod deliverer;
pub mod retry;
pub mod signature;

pub use deliverer::Deliverer;
pub use retry::RetryPolicy;
pub use signature::WebhookSecret;

/// What the deliverer is told by the settings.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// Signs every delivery; without one, deliveries go unsigned (said once at start-up).
    pub secret: Option<WebhookSecret>,
    pub retry: RetryPolicy,
    /// Most bytes of a receiver's answer read (only a failure's, kept with the attempt).
    pub max_response_bytes: usize,
}

/// Why the deliverer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}
