//! In-memory store, for tests and benchmarks: same compare-and-set and lease rules, history kept
//! as whole checkpoints; nothing survives exit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    AttemptWrite, CardRow, Checkpoint, CheckpointWrite, Delivery, DeliveryClaim, DeliveryRecord,
    DeliveryState, HistoryEntry, Lease, Store, StoreError, ThreadQuery, ThreadSummary,
    WebhookEvent, now_ms, summary_of,
};
use crate::card::AgentCard;
use crate::state::{Node, ThreadStatus, WorkerId};

struct Thread {
    head: Checkpoint,
    lease: Option<Lease>,
    created_at: i64,
    updated_at: i64,
    history: VecDeque<(HistoryEntry, Checkpoint)>,
}

/// A webhook delivery in memory, with its claim.
struct Queued {
    record: DeliveryRecord,
    thread_id: String,
    body: Option<String>,
    claimed_by: Option<WorkerId>,
    claim_expires_at: i64,
}

/// Checkpoints and cards in process memory.
pub struct MemoryStore {
    threads: Mutex<HashMap<String, Thread>>,
    agents: Mutex<HashMap<String, AgentCard>>,
    /// The webhook outbox, oldest first; locked after `threads` when both are held.
    outbox: Mutex<Vec<Queued>>,
    retention: i64,
}

impl MemoryStore {
    /// An empty store keeping `retention` checkpoints per thread (0: all).
    pub fn new(retention: i64) -> Self {
        MemoryStore {
            threads: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            outbox: Mutex::new(Vec::new()),
            retention,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(super::StoreOptions::default().retention)
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Poisoned
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        let checkpoint = write.checkpoint;
        let mut threads = self.threads.lock().map_err(poisoned)?;
        let expected = checkpoint.version - 1;
        let current = threads
            .get(&checkpoint.thread_id)
            .map_or(0, |t| t.head.version);
        if current != expected {
            return Err(StoreError::Conflict {
                thread_id: checkpoint.thread_id.clone(),
                expected,
            });
        }
        let now = now_ms();
        let entry = HistoryEntry {
            version: checkpoint.version,
            step: checkpoint.step,
            node: write.node,
            next: checkpoint.next,
            status: checkpoint.state.status,
            worker: write.worker.clone(),
            created_at: now,
            forked_from: None,
        };
        let thread = threads
            .entry(checkpoint.thread_id.clone())
            .or_insert_with(|| Thread {
                head: checkpoint.clone(),
                lease: None,
                created_at: now,
                updated_at: now,
                history: VecDeque::new(),
            });
        thread.head = checkpoint.clone();
        thread.lease = write.lease.cloned();
        thread.updated_at = now;
        thread.history.push_front((entry, checkpoint.clone()));
        if self.retention > 0 {
            thread
                .history
                .truncate(usize::try_from(self.retention).unwrap_or(usize::MAX));
        }
        // As the SQL backends' trigger does, under the same lock as the checkpoint.
        if let Some(queued) = enqueued(write) {
            self.outbox.lock().map_err(poisoned)?.push(queued);
        }
        Ok(())
    }

    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .threads
            .lock()
            .map_err(poisoned)?
            .get(thread_id)
            .map(|t| t.head.clone()))
    }

    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(threads
            .get(thread_id)
            .map(|t| t.history.iter().map(|(e, _)| e.clone()).collect())
            .unwrap_or_default())
    }

    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(threads.get(thread_id).and_then(|t| {
            t.history
                .iter()
                .find(|(e, _)| e.version == version)
                .map(|(_, c)| c.clone())
        }))
    }

    async fn list_threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        let mut found: Vec<&Thread> = threads
            .values()
            .filter(|t| query.status.is_none_or(|s| t.head.state.status == s))
            .filter(|t| {
                query.after.as_ref().is_none_or(|after| {
                    (t.updated_at, &t.head.thread_id) < (after.updated_at, &after.thread_id)
                })
            })
            .collect();
        found.sort_by_key(|t| std::cmp::Reverse((t.updated_at, t.head.thread_id.clone())));
        Ok(found
            .into_iter()
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .map(|t| {
                let (turns, prompt, question) = summary_of(&t.head.state);
                ThreadSummary {
                    thread_id: t.head.thread_id.clone(),
                    status: t.head.state.status,
                    version: t.head.version,
                    created_at: t.created_at,
                    updated_at: t.updated_at,
                    turns,
                    prompt: prompt.to_owned(),
                    question_for_user: question.map(str::to_owned),
                }
            })
            .collect())
    }

    async fn delete_thread(
        &self,
        thread_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut threads = self.threads.lock().map_err(poisoned)?;
        let deletable = threads.get(thread_id).is_some_and(|t| {
            let running = t.head.state.status == ThreadStatus::Processing
                && t.lease.as_ref().is_some_and(|l| l.expires_at >= now);
            t.head.version == version && !running
        });
        if deletable {
            threads.remove(thread_id);
        }
        Ok(deletable)
    }

    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(threads.get(thread_id).map_or(0, |t| {
            t.history
                .iter()
                .map(|(_, c)| serde_json::to_string(&c.state).map_or(0, |s| s.len() as u64))
                .sum()
        }))
    }

    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .threads
            .lock()
            .map_err(poisoned)?
            .values()
            .filter(|t| t.head.state.status == ThreadStatus::Processing)
            .filter(|t| t.lease.as_ref().is_none_or(|l| l.expires_at < now))
            .map(|t| t.head.thread_id.clone())
            .collect())
    }

    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let mut threads = self.threads.lock().map_err(poisoned)?;
        match threads.get_mut(thread_id) {
            Some(t) if t.lease.as_ref().is_some_and(|l| l.worker == lease.worker) => {
                t.lease = Some(lease.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn put_agent(&self, card: &AgentCard) -> Result<(), StoreError> {
        self.agents
            .lock()
            .map_err(poisoned)?
            .insert(card.id.clone(), card.clone());
        Ok(())
    }

    async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CardRow>, StoreError> {
        let agents = self.agents.lock().map_err(poisoned)?;
        let mut rows = agents
            .values()
            .filter(|card| after.is_none_or(|a| card.id.as_str() > a))
            .map(|card| {
                Ok(CardRow {
                    id: card.id.clone(),
                    json: serde_json::to_string(card).map_err(StoreError::Encode)?,
                })
            })
            .collect::<Result<Vec<CardRow>, StoreError>>()?;
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows.truncate(limit);
        Ok(rows)
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError> {
        Ok(self.agents.lock().map_err(poisoned)?.get(id).cloned())
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.agents.lock().map_err(poisoned)?.remove(id).is_some())
    }

    async fn threads_by_status(&self) -> Result<Vec<(ThreadStatus, u64)>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(ThreadStatus::ALL
            .into_iter()
            .map(|status| {
                let n = threads
                    .values()
                    .filter(|t| t.head.state.status == status)
                    .count();
                (status, n as u64)
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        claim: &DeliveryClaim<'_>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut outbox = self.outbox.lock().map_err(poisoned)?;
        let mut due: Vec<&mut Queued> = outbox
            .iter_mut()
            .filter(|q| q.record.state == DeliveryState::Pending)
            .filter(|q| q.record.next_attempt_at.is_some_and(|at| at <= claim.now))
            .filter(|q| q.claim_expires_at <= claim.now)
            .collect();
        due.sort_by_key(|q| q.record.next_attempt_at);
        Ok(due
            .into_iter()
            .take(usize::try_from(claim.limit).unwrap_or(0))
            .map(|q| {
                q.claimed_by = Some(claim.worker.clone());
                q.claim_expires_at = claim.until;
                Delivery {
                    delivery_id: q.record.delivery_id.clone(),
                    thread_id: q.thread_id.clone(),
                    version: q.record.version,
                    event: q.record.event,
                    url: q.record.url.clone(),
                    body: q.body.clone(),
                    attempts: i64::try_from(q.record.attempts.len()).unwrap_or(i64::MAX),
                }
            })
            .collect())
    }

    async fn record_attempt(&self, write: &AttemptWrite<'_>) -> Result<bool, StoreError> {
        let attempt = write.attempt;
        let mut outbox = self.outbox.lock().map_err(poisoned)?;
        let Some(queued) = outbox.iter_mut().find(|q| {
            q.record.delivery_id == attempt.delivery_id
                && q.claimed_by.as_ref() == Some(write.worker)
        }) else {
            return Ok(false);
        };
        queued.record.state = attempt.outcome.delivery_state();
        queued.record.next_attempt_at = attempt.next_attempt_at;
        queued.record.attempts.push(attempt.clone());
        if queued.body.is_none() {
            queued.body = write.body.map(str::to_owned);
        }
        queued.claimed_by = None;
        queued.claim_expires_at = 0;
        Ok(true)
    }

    async fn deliveries(&self, thread_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let outbox = self.outbox.lock().map_err(poisoned)?;
        let mut found: Vec<DeliveryRecord> = outbox
            .iter()
            .filter(|q| q.thread_id == thread_id)
            .map(|q| q.record.clone())
            .collect();
        found.sort_by_key(|r| (r.version, r.created_at));
        Ok(found)
    }
}

/// The delivery a checkpoint enqueues: one that pauses for input or ends the run of a thread
/// with a webhook (the SQL backends' trigger says the same in SQL).
fn enqueued(write: &CheckpointWrite<'_>) -> Option<Queued> {
    let checkpoint = write.checkpoint;
    let state = &checkpoint.state;
    let settled = match state.status {
        ThreadStatus::PendingUserInput => checkpoint.next == Node::WaitForUserInput,
        ThreadStatus::Completed | ThreadStatus::Error | ThreadStatus::Cancelled => {
            checkpoint.next == Node::End
        }
        ThreadStatus::Processing => false,
    };
    let event = WebhookEvent::of_status(state.status).filter(|_| settled)?;
    let url = state.webhook.as_ref()?;
    let now = now_ms();
    Some(Queued {
        record: DeliveryRecord {
            delivery_id: uuid::Uuid::now_v7().simple().to_string(),
            version: checkpoint.version,
            event,
            url: url.as_str().to_owned(),
            state: DeliveryState::Pending,
            next_attempt_at: Some(now),
            created_at: now,
            attempts: Vec::new(),
        },
        thread_id: checkpoint.thread_id.clone(),
        body: None,
        claimed_by: None,
        claim_expires_at: 0,
    })
}
