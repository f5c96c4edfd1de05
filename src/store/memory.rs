//! In-memory store, for tests and benchmarks: same compare-and-set and lease rules, history kept
//! as whole checkpoints; nothing survives exit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Checkpoint, CheckpointWrite, HistoryEntry, Lease, Store, StoreError, now_ms};
use crate::card::AgentCard;
use crate::state::ThreadStatus;

struct Thread {
    head: Checkpoint,
    lease: Option<Lease>,
    history: VecDeque<(HistoryEntry, Checkpoint)>,
}

/// Checkpoints and cards in process memory.
pub struct MemoryStore {
    threads: Mutex<HashMap<String, Thread>>,
    agents: Mutex<HashMap<String, AgentCard>>,
    retention: i64,
}

impl MemoryStore {
    /// An empty store keeping `retention` checkpoints per thread (0: all).
    pub fn new(retention: i64) -> Self {
        MemoryStore {
            threads: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
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
        let entry = HistoryEntry {
            version: checkpoint.version,
            step: checkpoint.step,
            node: write.node,
            next: checkpoint.next,
            status: checkpoint.state.status,
            worker: write.worker.clone(),
            created_at: now_ms(),
        };
        let thread = threads
            .entry(checkpoint.thread_id.clone())
            .or_insert_with(|| Thread {
                head: checkpoint.clone(),
                lease: None,
                history: VecDeque::new(),
            });
        thread.head = checkpoint.clone();
        thread.lease = write.lease.cloned();
        thread.history.push_front((entry, checkpoint.clone()));
        if self.retention > 0 {
            thread
                .history
                .truncate(usize::try_from(self.retention).unwrap_or(usize::MAX));
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

    async fn agents(&self) -> Result<Vec<AgentCard>, StoreError> {
        let mut cards: Vec<AgentCard> = self
            .agents
            .lock()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect();
        cards.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(cards)
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
}
