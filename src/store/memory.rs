//! In-memory store, for tests and benchmarks: same compare-and-set and lease rules, history
//! kept as the SQL stores keep it (the head whole, each earlier version as its undo), so a test
//! over `memory://` exercises the same deltas and a benchmark does not measure the allocator
//! holding every state of every thread, and a turn log per thread; nothing survives exit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;

use super::revision::new_revision;
use super::{
    AttemptWrite, CardRow, Checkpoint, CheckpointWrite, Delivery, DeliveryClaim, DeliveryRecord,
    DeliveryState, ExpiryBatch, HistoryEntry, Lease, LoggedTurn, RatedCard, SnapshotHead, Store,
    StoreError, ThreadQuery, ThreadSummary, WebhookEvent, delta, now_ms, rebuild, summary_of,
};
use crate::card::AgentCard;
use crate::state::{Node, ThreadStatus, Turn, WorkerId};

struct Thread {
    head: Checkpoint,
    lease: Option<Lease>,
    created_at: i64,
    updated_at: i64,
    /// Newest first, each with the undo that turns its state into its predecessor's.
    history: VecDeque<(HistoryEntry, Option<String>)>,
    /// The turn log, by position.
    turns: BTreeMap<usize, Turn>,
}

/// A webhook delivery in memory, with its claim.
struct Queued {
    record: DeliveryRecord,
    thread_id: String,
    body: Option<String>,
    claimed_by: Option<WorkerId>,
    claim_expires_at: i64,
}

/// Snapshot parts by (snapshot id, part).
type SnapshotParts = BTreeMap<(i64, i64), Vec<u8>>;

/// Checkpoints and cards in process memory.
pub struct MemoryStore {
    threads: Mutex<HashMap<String, Thread>>,
    /// Each card with the revision its last write set.
    agents: Mutex<HashMap<String, (AgentCard, i64)>>,
    /// The directory snapshot: published head, and every snapshot's parts by (id, part).
    snapshots: Mutex<(Option<SnapshotHead>, SnapshotParts)>,
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
            snapshots: Mutex::new((None, BTreeMap::new())),
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

/// The bytes of a value's JSON, as the SQL backends would store it.
fn json_len(value: &impl serde::Serialize) -> u64 {
    serde_json::to_string(value).map_or(0, |s| s.len() as u64)
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
        // A fork's log starts with its origin's turns before the fork point, as the SQL
        // backends' trigger copies them.
        let copied: Vec<(usize, Turn)> = match (checkpoint.version, write.turns_from) {
            (1, Some(origin)) => threads.get(origin).map_or_else(Vec::new, |o| {
                o.turns
                    .range(..write.first_closed())
                    .map(|(n, t)| (*n, t.clone()))
                    .collect()
            }),
            _ => Vec::new(),
        };
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
        let undo = write
            .previous
            .map(|previous| delta::undo(previous, &checkpoint.state).to_string());
        let thread = threads
            .entry(checkpoint.thread_id.clone())
            .or_insert_with(|| Thread {
                head: checkpoint.clone(),
                lease: None,
                created_at: now,
                updated_at: now,
                history: VecDeque::new(),
                turns: BTreeMap::new(),
            });
        thread.turns.extend(copied);
        for (n, turn) in (write.first_closed()..).zip(write.closed) {
            thread.turns.entry(n).or_insert_with(|| turn.clone());
        }
        thread.head.clone_from(checkpoint);
        thread.lease = write.lease.cloned();
        thread.updated_at = now;
        thread.history.push_front((entry, undo));
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
        let Some(thread) = threads.get(thread_id) else {
            return Ok(None);
        };
        let Some((target, _)) = thread.history.iter().find(|(e, _)| e.version == version) else {
            return Ok(None);
        };
        let head = serde_json::to_string(&thread.head.state).map_err(StoreError::Encode)?;
        let undos = thread
            .history
            .iter()
            .take_while(|(e, _)| e.version > version)
            .map(|(_, undo)| undo.clone());
        Ok(Some(Checkpoint {
            thread_id: thread_id.to_owned(),
            version,
            step: target.step,
            next: target.next,
            state: rebuild(thread_id, &head, undos)?,
        }))
    }

    async fn list_threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        let mut found: Vec<&Thread> = threads
            .values()
            .filter(|t| query.status.is_none_or(|s| t.head.state.status == s))
            .filter(|t| {
                query
                    .owner
                    .as_ref()
                    .is_none_or(|o| t.head.state.owner.as_ref() == Some(o))
            })
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

    async fn expire_threads(&self, batch: &ExpiryBatch) -> Result<u64, StoreError> {
        let mut threads = self.threads.lock().map_err(poisoned)?;
        let mut expired: Vec<(i64, String)> = threads
            .iter()
            .filter(|(_, t)| {
                t.head.state.status == batch.status && t.updated_at < batch.updated_before
            })
            .map(|(id, t)| (t.updated_at, id.clone()))
            .collect();
        expired.sort();
        expired.truncate(usize::try_from(batch.limit).unwrap_or(0));
        for (_, id) in &expired {
            threads.remove(id);
        }
        // As the SQL backends' trigger does; `outbox` is locked after `threads`.
        self.outbox
            .lock()
            .map_err(poisoned)?
            .retain(|q| !expired.iter().any(|(_, id)| *id == q.thread_id));
        Ok(u64::try_from(expired.len()).unwrap_or(u64::MAX))
    }

    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(threads.get(thread_id).map_or(0, |t| {
            let head = serde_json::to_string(&t.head.state).map_or(0, |s| s.len());
            // What the SQL stores count per history row: the undo, the two node names and 40
            // bytes of numbers.
            let history: usize = t
                .history
                .iter()
                .map(|(e, undo)| {
                    undo.as_ref().map_or(0, String::len)
                        + e.node.as_str().len()
                        + e.next.as_str().len()
                        + 40
                })
                .sum();
            let turns: u64 = t.turns.values().map(json_len).sum();
            (head + history) as u64 + turns
        }))
    }

    async fn turns(
        &self,
        thread_id: &str,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(threads.get(thread_id).map_or_else(Vec::new, |t| {
            t.turns
                .range(positions)
                .map(|(n, turn)| LoggedTurn {
                    turn: *n,
                    body: turn.clone(),
                })
                .collect()
        }))
    }

    async fn turn_opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        let threads = self.threads.lock().map_err(poisoned)?;
        Ok(threads.get(thread_id).and_then(|t| {
            t.turns
                .iter()
                .find(|(_, turn)| turn.opened_by.as_deref() == Some(message_id))
                .map(|(n, _)| *n)
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

    async fn put_agent(&self, card: &AgentCard) -> Result<i64, StoreError> {
        let revision = new_revision();
        self.agents
            .lock()
            .map_err(poisoned)?
            .insert(card.id.clone(), (card.clone(), revision));
        Ok(revision)
    }

    async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CardRow>, StoreError> {
        let agents = self.agents.lock().map_err(poisoned)?;
        let mut rows = agents
            .values()
            .filter(|(card, _)| after.is_none_or(|a| card.id.as_str() > a))
            .map(|(card, revision)| {
                Ok(CardRow {
                    id: card.id.clone(),
                    json: serde_json::to_string(card).map_err(StoreError::Encode)?,
                    revision: Some(*revision),
                })
            })
            .collect::<Result<Vec<CardRow>, StoreError>>()?;
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows.truncate(limit);
        Ok(rows)
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError> {
        Ok(self
            .agents
            .lock()
            .map_err(poisoned)?
            .get(id)
            .map(|(card, _)| card.clone()))
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.agents.lock().map_err(poisoned)?.remove(id).is_some())
    }

    async fn rate_agent(&self, id: &str, rating: f64) -> Result<Option<RatedCard>, StoreError> {
        // Read and written under the one lock: a rating cannot be lost between the two.
        let mut agents = self.agents.lock().map_err(poisoned)?;
        Ok(agents.get_mut(id).map(|(card, revision)| {
            card.add_rating(rating);
            *revision = new_revision();
            RatedCard {
                card: card.clone(),
                revision: *revision,
            }
        }))
    }

    async fn agent_revisions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let agents = self.agents.lock().map_err(poisoned)?;
        let mut out: Vec<(String, Option<i64>)> = agents
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
            .map(|(id, (_, revision))| (id.clone(), Some(*revision)))
            .collect();
        out.sort_unstable();
        out.truncate(limit);
        Ok(out)
    }

    async fn agent_rows_of(&self, ids: &[String]) -> Result<Vec<CardRow>, StoreError> {
        let agents = self.agents.lock().map_err(poisoned)?;
        ids.iter()
            .filter_map(|id| agents.get(id))
            .map(|(card, revision)| {
                Ok(CardRow {
                    id: card.id.clone(),
                    json: serde_json::to_string(card).map_err(StoreError::Encode)?,
                    revision: Some(*revision),
                })
            })
            .collect()
    }

    async fn snapshot_head(&self) -> Result<Option<SnapshotHead>, StoreError> {
        Ok(self.snapshots.lock().map_err(poisoned)?.0)
    }

    async fn snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let snapshots = self.snapshots.lock().map_err(poisoned)?;
        Ok(snapshots.1.get(&(snapshot_id, part)).cloned())
    }

    async fn put_snapshot_part(
        &self,
        snapshot_id: i64,
        part: i64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.lock().map_err(poisoned)?;
        snapshots.1.insert((snapshot_id, part), bytes);
        Ok(())
    }

    async fn publish_snapshot(&self, head: &SnapshotHead) -> Result<bool, StoreError> {
        let mut snapshots = self.snapshots.lock().map_err(poisoned)?;
        if snapshots
            .0
            .is_some_and(|current| current.snapshot_id >= head.snapshot_id)
        {
            return Ok(false);
        }
        snapshots.0 = Some(*head);
        Ok(true)
    }

    async fn prune_snapshot_parts(&self) -> Result<u64, StoreError> {
        let mut snapshots = self.snapshots.lock().map_err(poisoned)?;
        let Some(head) = snapshots.0 else {
            return Ok(0);
        };
        let before = snapshots.1.len();
        snapshots.1.retain(|(id, _), _| *id >= head.snapshot_id);
        Ok((before - snapshots.1.len()) as u64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ThreadState;
    use crate::store::Origin;

    fn json(state: &ThreadState) -> serde_json::Value {
        serde_json::to_value(state).expect("state serializes")
    }

    /// Three versions of one thread, each changing what a run changes (status, prompt, answers),
    /// written as the engine writes them (with the state each replaces).
    async fn three_versions(store: &MemoryStore) -> Vec<Checkpoint> {
        let worker = WorkerId::new("test");
        let mut written: Vec<Checkpoint> = Vec::new();
        for version in 1..=3_i64 {
            let mut state = ThreadState::new_turn("t".into(), format!("prompt {version}"), 5);
            state.final_response = (version == 3).then(|| "done".to_owned());
            if version == 3 {
                state.status = ThreadStatus::Completed;
            }
            let checkpoint = Checkpoint {
                thread_id: "t".into(),
                version,
                step: version * 10,
                next: if version == 3 {
                    Node::End
                } else {
                    Node::ParsePrompt
                },
                state,
            };
            let previous = written.last().map(|c| &c.state);
            store
                .put_checkpoint(&CheckpointWrite {
                    checkpoint: &checkpoint,
                    node: Origin::Start,
                    previous,
                    worker: &worker,
                    lease: None,
                    closed: &[],
                    turns_from: None,
                    chain: None,
                })
                .await
                .expect("write");
            written.push(checkpoint);
        }
        written
    }

    #[tokio::test]
    async fn past_checkpoints_are_rebuilt_from_the_head_and_the_undos() {
        let store = MemoryStore::new(0);
        let written = three_versions(&store).await;
        for expected in &written {
            let found = store
                .checkpoint_at("t", expected.version)
                .await
                .expect("read")
                .expect("kept");
            assert_eq!(found.step, expected.step);
            assert_eq!(found.next, expected.next);
            assert_eq!(
                json(&found.state),
                json(&expected.state),
                "version {}",
                expected.version
            );
        }
        assert!(store.checkpoint_at("t", 4).await.expect("read").is_none());
        let versions: Vec<i64> = store
            .history("t")
            .await
            .expect("history")
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, [3, 2, 1]);
    }

    #[tokio::test]
    async fn retention_drops_the_oldest_versions_and_keeps_the_rest_readable() {
        let store = MemoryStore::new(2);
        let written = three_versions(&store).await;
        assert!(store.checkpoint_at("t", 1).await.expect("read").is_none());
        let second = store
            .checkpoint_at("t", 2)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(json(&second.state), json(&written[1].state));
    }
}
