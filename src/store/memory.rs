//! In-memory store, for tests and benchmarks: same compare-and-set rules, nothing survives exit.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Checkpoint, Store, StoreError};
use crate::directory::card::AgentCard;
use crate::state::ThreadStatus;

/// Checkpoints and cards in process memory.
#[derive(Default)]
pub struct MemoryStore {
    threads: Mutex<HashMap<String, Checkpoint>>,
    agents: Mutex<HashMap<String, AgentCard>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Database("memory store lock poisoned".into())
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut threads = self.threads.lock().map_err(poisoned)?;
        let expected = checkpoint.version - 1;
        let current = threads.get(&checkpoint.thread_id).map_or(0, |c| c.version);
        if current != expected {
            return Err(StoreError::Conflict {
                thread_id: checkpoint.thread_id.clone(),
                expected,
            });
        }
        threads.insert(checkpoint.thread_id.clone(), checkpoint.clone());
        Ok(())
    }

    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .threads
            .lock()
            .map_err(poisoned)?
            .get(thread_id)
            .cloned())
    }

    async fn unfinished_threads(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .threads
            .lock()
            .map_err(poisoned)?
            .values()
            .filter(|c| c.state.status == ThreadStatus::Processing)
            .map(|c| c.thread_id.clone())
            .collect())
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

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
