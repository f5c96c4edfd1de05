//! The one background task per process that delivers webhooks from the store's outbox.
//!
//! It claims due deliveries (a claim with an expiry, so a process that dies mid-attempt leaves
//! them to another, or to itself after a restart), POSTs each, records the attempt and publishes
//! it for the thread's event streams. It wakes when this process (or, through the bus, another)
//! writes a checkpoint that pauses or ends a run, when a retry falls due, and every
//! [`POLL`] at least. Runs never wait for it: the outbox row is all a run writes.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::retry::{Failure, RetryPolicy};
use super::signature::Signer;
use super::{WebhookError, WebhookSettings};
use crate::agents::http::outbound_client;
use crate::agents::policy::{UrlPolicy, UrlRefused};
use crate::agents::resolver::GuardedResolver;
use crate::api::chat::ProcessResponse;
use crate::engine::Engine;
use crate::engine::events::EventBus;
use crate::engine::view::ThreadView;
use crate::state::WorkerId;
use crate::store::{
    AttemptOutcome, AttemptWrite, Delivery, DeliveryClaim, Store, WebhookAttempt, WebhookEvent,
    now_ms,
};

/// Longest sleep between two looks at the outbox (other processes' retries, missed wake-ups).
const POLL: Duration = Duration::from_millis(500);

/// Shortest time between two looks woken by checkpoints: every paused or finished run wakes the
/// loop, and a look is a write (the claim), which at thousands of runs a second would take the
/// writer's time from the runs themselves. Deliveries wait this much longer at most.
const WAKE_GAP: Duration = Duration::from_millis(100);

/// Deliveries in flight at once in one process.
const MAX_IN_FLIGHT: usize = 32;

/// How long a claim outlives the attempt's own timeout: time to record the attempt.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// Header names, as receivers read them.
const SIGNATURE: &str = "x-baton-signature";
const EVENT: &str = "x-baton-event";
const DELIVERY: &str = "x-baton-delivery";
const TIMESTAMP: &str = "x-baton-timestamp";
const ATTEMPT: &str = "x-baton-attempt";
/// The checkpoint version delivered: deliveries may arrive out of order (a retry overtaken by
/// the next checkpoint's), and the higher version is the newer state.
const VERSION: &str = "x-baton-version";

/// Delivers the outbox of one store; see the module.
pub struct Deliverer {
    store: Arc<dyn Store>,
    events: EventBus,
    client: reqwest::Client,
    /// The agents' outbound URL policy, checked again at every attempt (it may have changed
    /// since the URL was accepted).
    policy: UrlPolicy,
    signer: Option<Signer>,
    retry: RetryPolicy,
    /// Most of a receiver's answer ever read (`--webhook-max-response-bytes`): only a failure's,
    /// kept with the attempt to say why; a success's body is never read.
    max_response_bytes: usize,
    worker: WorkerId,
}

/// What one attempt's POST came to.
enum Sent {
    /// The receiver answered with this status; for a failure status, the start of what it said
    /// (at most `--webhook-max-response-bytes`).
    Status { code: u16, said: Option<String> },
    /// No answer: why, and whether trying again could help.
    NoAnswer { error: String, failure: Failure },
}

impl Deliverer {
    /// A deliverer for the engine's store, posting as the engine's process.
    pub fn new(engine: &Engine, settings: &WebhookSettings) -> Result<Self, WebhookError> {
        let policy = engine.services().agents.http().policy().clone();
        // Names resolve as the agents' do, blocked addresses refused.
        let resolver = GuardedResolver::system(policy.outbound_allow().clone());
        let client = outbound_client(&policy, resolver)
            .connect_timeout(settings.retry.timeout.min(Duration::from_secs(5)))
            // Not followed at all: a redirect is the receiver's final answer.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Deliverer {
            store: engine.store().clone(),
            events: engine.events().clone(),
            client,
            policy,
            signer: settings.secret.as_ref().map(Signer::new),
            retry: settings.retry,
            max_response_bytes: settings.max_response_bytes,
            worker: engine.services().worker.clone(),
        })
    }

    /// Starts the delivery loop; the caller owns the handle and aborts it to stop the loop,
    /// which stops the attempts in flight with it (an attempt cut short is made again once its
    /// claim expires).
    pub fn spawn(self) -> JoinHandle<()> {
        if self.signer.is_none() {
            tracing::warn!(
                "no --webhook-secret (BATON_WEBHOOK_SECRET): webhooks are sent without X-Baton-Signature"
            );
        }
        tokio::spawn(Arc::new(self).run())
    }

    async fn run(self: Arc<Self>) {
        let mut wake = self.events.subscribe();
        // Owned by this loop: dropped, and so aborted, with it.
        let mut in_flight: JoinSet<Option<Instant>> = JoinSet::new();
        let mut next_look = Instant::now();
        let mut last_look = Instant::now();
        loop {
            let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
            if room > 0 && Instant::now() >= next_look {
                last_look = Instant::now();
                next_look = last_look + POLL;
                match self.claim(room).await {
                    Ok(claimed) => {
                        if claimed.len() == room {
                            // There may be more due: look again as soon as there is room.
                            next_look = Instant::now();
                        }
                        for delivery in claimed {
                            in_flight.spawn(self.clone().deliver(delivery));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the webhook outbox"),
                }
            }
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(Some(retry_at)) = done {
                        next_look = next_look.min(retry_at);
                    }
                }
                event = wake.recv() => match event {
                    Ok(event) if event.is_checkpoint() && WebhookEvent::of_status(event.status).is_some() => {
                        next_look = next_look.min(last_look + WAKE_GAP);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        next_look = next_look.min(last_look + WAKE_GAP);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep_until(next_look), if in_flight.len() < MAX_IN_FLIGHT => {}
            }
        }
    }

    /// Claims up to `limit` due deliveries for this process.
    async fn claim(&self, limit: usize) -> Result<Vec<Delivery>, crate::store::StoreError> {
        let now = now_ms();
        let hold = self.retry.timeout + CLAIM_MARGIN;
        self.store
            .claim_deliveries(&DeliveryClaim {
                worker: &self.worker,
                now,
                until: now.saturating_add(millis(hold)),
                limit: i64::try_from(limit).unwrap_or(i64::MAX),
            })
            .await
    }

    /// Makes one attempt on a claimed delivery and records it; returns when a retry is due.
    async fn deliver(self: Arc<Self>, delivery: Delivery) -> Option<Instant> {
        let number = delivery.attempts + 1;
        let started_at = now_ms();
        let body = match &delivery.body {
            Some(body) => Some(body.clone()),
            None => match self.render(&delivery).await {
                Ok(body) => body,
                Err(e) => {
                    // The claim expires and the delivery is tried again.
                    tracing::warn!(delivery = %delivery.delivery_id, error = %e, "cannot read the checkpoint a webhook delivers");
                    return None;
                }
            },
        };
        let sent = match &body {
            Some(body) => self.post(&delivery, number, body).await,
            None => Sent::NoAnswer {
                error: format!(
                    "checkpoint {} of the thread is no longer kept (--checkpoint-retention)",
                    delivery.version
                ),
                failure: Failure::Final,
            },
        };
        let finished_at = now_ms();
        let (status_code, error, failure) = match sent {
            Sent::Status { code, .. } if (200..300).contains(&code) => (Some(code), None, None),
            Sent::Status { code, said } => (
                Some(code),
                said.map(|said| format!("the receiver answered {code}: {said}")),
                Some(Failure::of_status(code)),
            ),
            Sent::NoAnswer { error, failure } => (None, Some(error), Some(failure)),
        };
        let (outcome, retry_in) = match failure {
            None => (AttemptOutcome::Delivered, None),
            Some(failure) if self.retry.retries(number, failure) => {
                (AttemptOutcome::Retry, Some(self.retry.delay(number)))
            }
            Some(_) => (AttemptOutcome::Failed, None),
        };
        let attempt = WebhookAttempt {
            delivery_id: delivery.delivery_id.clone(),
            thread_id: delivery.thread_id.clone(),
            version: delivery.version,
            event: delivery.event,
            attempt: number,
            started_at,
            finished_at,
            status_code: status_code.map(i64::from),
            error,
            outcome,
            next_attempt_at: retry_in.map(|wait| finished_at.saturating_add(millis(wait))),
        };
        let write = AttemptWrite {
            attempt: &attempt,
            body: body.as_deref(),
            worker: &self.worker,
        };
        match self.store.record_attempt(&write).await {
            Ok(true) => {
                tracing::info!(
                    thread_id = %attempt.thread_id,
                    delivery = %attempt.delivery_id,
                    event = attempt.event.as_str(),
                    attempt = attempt.attempt,
                    status = attempt.status_code,
                    error = attempt.error.as_deref(),
                    outcome = attempt.outcome.as_str(),
                    "webhook attempt"
                );
                self.events.publish_attempt(attempt);
            }
            Ok(false) => {
                tracing::warn!(delivery = %attempt.delivery_id, "webhook delivery no longer held after the attempt: its claim expired (another attempt will be made) or its thread was deleted (--thread-ttl, DELETE)")
            }
            Err(e) => {
                tracing::warn!(delivery = %attempt.delivery_id, error = %e, "cannot record a webhook attempt; it will be made again")
            }
        }
        retry_in.map(|wait| Instant::now() + wait)
    }

    /// The body of a delivery: the `ProcessResponse` of its checkpoint, as `GET
    /// /api/chat/status/{id}` and `POST /api/chat` give it; `None` when the history no longer
    /// keeps that checkpoint.
    async fn render(
        &self,
        delivery: &Delivery,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let Some(checkpoint) = self
            .store
            .checkpoint_at(&delivery.thread_id, delivery.version)
            .await?
        else {
            return Ok(None);
        };
        let response = ProcessResponse::from(ThreadView::of(&checkpoint));
        serde_json::to_string(&response)
            .map(Some)
            .map_err(crate::store::StoreError::Encode)
    }

    /// POSTs the body with its headers, within the attempt's timeout.
    async fn post(&self, delivery: &Delivery, number: i64, body: &str) -> Sent {
        if let Err(refused) = self.policy.check(&delivery.url) {
            return Sent::NoAnswer {
                error: refused.to_string(),
                failure: Failure::Final,
            };
        }
        let timestamp = (now_ms() / 1000).to_string();
        let mut request = self
            .client
            .post(&delivery.url)
            .timeout(self.retry.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(EVENT, delivery.event.as_str())
            .header(DELIVERY, delivery.delivery_id.as_str())
            .header(TIMESTAMP, timestamp)
            .header(ATTEMPT, number.to_string())
            .header(VERSION, delivery.version.to_string());
        if let Some(signer) = &self.signer {
            request = request.header(SIGNATURE, signer.sign(body.as_bytes()));
        }
        let error = match request.body(body.to_owned()).send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                let said = if response.status().is_success() {
                    None
                } else {
                    self.excerpt(response).await
                };
                return Sent::Status { code, said };
            }
            Err(error) => error,
        };
        if let Some(refused) = UrlRefused::found_in(&error) {
            // The receiver's name resolves to a blocked address: no later attempt can pass.
            return Sent::NoAnswer {
                error: refused.to_string(),
                failure: Failure::Final,
            };
        }
        if error.is_timeout() {
            Sent::NoAnswer {
                error: format!("no answer within {} ms", self.retry.timeout.as_millis()),
                failure: Failure::Transient,
            }
        } else if error.is_builder() {
            Sent::NoAnswer {
                error: format!("the request could not be made: {}", chain(&error)),
                failure: Failure::Final,
            }
        } else {
            Sent::NoAnswer {
                error: chain(&error),
                failure: Failure::Transient,
            }
        }
    }

    /// The start of a failed attempt's answer, at most `max_response_bytes` of it (the rest is
    /// never read), as text; `None` if it is empty or breaks off before the first byte.
    async fn excerpt(&self, mut response: reqwest::Response) -> Option<String> {
        let mut read = Vec::new();
        while read.len() < self.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.max_response_bytes - read.len();
                    read.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&read);
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }
}

/// An error with its causes, `: `-separated (reqwest's own text leaves out why a connection
/// failed).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
