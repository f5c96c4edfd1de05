//! Following one thread's timeline: what was missed, replayed from the checkpoint history, then
//! what happens, as it happens, whichever process runs the thread.
//!
//! Live events come from this process's bus, which on a shared database also carries the other
//! processes' checkpoints (`Engine::spawn_remote_events`); a slow poll of the store catches what
//! a missed notification or a lagging subscription skipped. Either way each checkpoint is read
//! back from the store and turned into events by [`timeline::events_of`], so a version's events
//! are the same whether they are seen live or replayed, and none is told twice.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::{Interval, MissedTickBehavior};

use super::events::ThreadEvent;
use super::timeline::{self, ResumePoint, TimelineEvent};
use super::{Engine, EngineError};
use crate::agents::progress::AgentProgress;
use crate::store::{Checkpoint, HistoryEntry, WebhookAttempt};

/// How often a follower asks the store for checkpoints no notification announced.
const POLL: Duration = Duration::from_secs(1);

/// What a follower hands on.
#[derive(Debug, Clone)]
pub enum Followed {
    /// The thread as it stands, where no replay starts (a new follower without a resume point,
    /// or one whose resume point is outside the kept history): the events before it are not told.
    Snapshot(Box<Checkpoint>),
    /// Something that happened, derived from a checkpoint.
    Event(TimelineEvent),
    /// An agent's word on its work in progress (live only: not checkpointed, not replayable);
    /// `version` is the thread's last checkpoint when it was said.
    Progress { version: i64, note: AgentProgress },
    /// An attempt to deliver one of the thread's webhooks, made by this process (live only: the
    /// attempts are kept in the outbox, not in the checkpoints).
    Webhook(WebhookAttempt),
}

/// One thread's timeline, replayed and then live. Dropping it drops its subscription: nothing
/// runs for it in the background.
pub struct ThreadFollower {
    engine: Engine,
    thread_id: String,
    bus: broadcast::Receiver<ThreadEvent>,
    attempts: broadcast::Receiver<WebhookAttempt>,
    /// Every event of every version up to this one has been handed on (or skipped as seen).
    seen: i64,
    /// The checkpoint at `seen`, which the next version's events are derived against.
    previous: Option<Checkpoint>,
    queue: VecDeque<Followed>,
    poll: Interval,
}

impl ThreadFollower {
    /// Starts following `thread_id`: from where a client stopped (`from`, the events after it
    /// replayed from the history), or, without one, from a snapshot of the thread as it stands.
    /// An unknown thread is `EngineError::NotFound`.
    pub async fn open(
        engine: &Engine,
        thread_id: &str,
        from: Option<ResumePoint>,
    ) -> Result<Self, EngineError> {
        // Subscribed before the head is read: a checkpoint committed in between is announced
        // to this receiver, so nothing falls between the replay and the live events.
        let bus = engine.events().subscribe();
        let attempts = engine.events().subscribe_attempts();
        let head = engine.checkpoint(thread_id).await?;
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut follower = ThreadFollower {
            engine: engine.clone(),
            thread_id: thread_id.to_owned(),
            bus,
            attempts,
            seen: head.version,
            previous: None,
            queue: VecDeque::new(),
            poll,
        };
        let replay_from = from.filter(|point| point.version <= head.version);
        match replay_from {
            Some(point) => follower.replay(point, head).await?,
            None => follower.snapshot(head),
        }
        Ok(follower)
    }

    /// Like [`open`](Self::open), but a thread that does not exist yet is waited for (announced
    /// on the bus, or found by the same slow poll of the store) rather than refused: a client
    /// that names the thread of a start request it sends at the same time follows that run from
    /// its first checkpoint. Waits as long as the caller does; nothing runs for it in the
    /// background.
    pub async fn open_once_started(
        engine: &Engine,
        thread_id: &str,
        from: Option<ResumePoint>,
    ) -> Result<Self, EngineError> {
        // Subscribed before the first look: a first checkpoint committed in between is announced.
        let mut bus = engine.events().subscribe();
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            match Self::open(engine, thread_id, from).await {
                Err(EngineError::NotFound(_)) => {}
                opened => return opened,
            }
            // Until something says the thread may exist now.
            loop {
                tokio::select! {
                    event = bus.recv() => match event {
                        Ok(event) if event.thread_id == thread_id => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(EngineError::NotFound(thread_id.to_owned()));
                        }
                    },
                    _ = poll.tick() => break,
                }
            }
        }
    }

    /// The next thing to hand on; waits for it. `None` once the thread is gone or the engine
    /// stops.
    pub async fn next(&mut self) -> Option<Followed> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            let caught_up = tokio::select! {
                event = self.bus.recv() => match event {
                    Ok(event) if event.thread_id != self.thread_id => continue,
                    Ok(ThreadEvent { progress: Some(note), version, .. }) => {
                        self.queue.push_back(Followed::Progress { version, note });
                        continue;
                    }
                    Ok(event) if event.version <= self.seen => continue,
                    Ok(event) => self.catch_up(event.version, None).await,
                    // Events were dropped for this slow reader: the store has them all.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_to_head().await,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                attempt = self.attempts.recv() => match attempt {
                    Ok(attempt) if attempt.thread_id == self.thread_id => {
                        self.queue.push_back(Followed::Webhook(attempt));
                        continue;
                    }
                    // Live only, as agents' progress: missed attempts are in the outbox.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.poll.tick() => self.catch_up_to_head().await,
            };
            match caught_up {
                Ok(()) => {}
                Err(EngineError::NotFound(_)) => return None,
                // The store will be asked again at the next event or poll.
                Err(e) => {
                    tracing::warn!(thread_id = %self.thread_id, error = %e, "cannot read the thread's checkpoints to follow it")
                }
            }
        }
    }

    /// Queues the thread as it stands and follows on from it.
    fn snapshot(&mut self, head: Checkpoint) {
        self.seen = head.version;
        self.previous = Some(head.clone());
        self.queue.push_back(Followed::Snapshot(Box::new(head)));
    }

    /// Queues the events after `point`, up to `head`, from the history.
    async fn replay(&mut self, point: ResumePoint, head: Checkpoint) -> Result<(), EngineError> {
        // The version whose events the client may have seen only in part is derived again.
        let before = match point.after_index {
            Some(_) => point.version - 1,
            None => point.version,
        };
        let previous = match before {
            0 => None,
            version => match self
                .engine
                .store()
                .checkpoint_at(&self.thread_id, version)
                .await?
            {
                Some(checkpoint) => Some(checkpoint),
                // No longer kept: its successors' events cannot be derived.
                None => {
                    self.snapshot(head);
                    return Ok(());
                }
            },
        };
        self.seen = before;
        self.previous = previous;
        self.catch_up(head.version, Some(point)).await
    }

    /// Catches up to the thread's latest checkpoint.
    async fn catch_up_to_head(&mut self) -> Result<(), EngineError> {
        let head = self.engine.checkpoint(&self.thread_id).await?;
        self.catch_up(head.version, None).await
    }

    /// Queues the events of every version after `seen` up to `target`, but those `skip` says
    /// the client has seen. A version no longer kept in the history (pruned while this follower
    /// lagged) ends the catch-up with a snapshot of the head.
    async fn catch_up(
        &mut self,
        target: i64,
        skip: Option<ResumePoint>,
    ) -> Result<(), EngineError> {
        if target <= self.seen {
            return Ok(());
        }
        let store = self.engine.store();
        let history: Vec<HistoryEntry> = store.history(&self.thread_id).await?;
        if history.is_empty() {
            return Err(EngineError::NotFound(self.thread_id.clone()));
        }
        for version in self.seen + 1..=target {
            let entry = history.iter().find(|e| e.version == version);
            let current = match entry {
                Some(_) => store.checkpoint_at(&self.thread_id, version).await?,
                None => None,
            };
            let (Some(entry), Some(current)) = (entry, current) else {
                let head = self.engine.checkpoint(&self.thread_id).await?;
                self.snapshot(head);
                return Ok(());
            };
            let events = timeline::events_of(entry.node, self.previous.as_ref(), &current);
            self.queue.extend(
                events
                    .into_iter()
                    .filter(|e| skip.is_none_or(|point| !point.has_seen(e.id)))
                    .map(Followed::Event),
            );
            self.seen = version;
            self.previous = Some(current);
        }
        Ok(())
    }
}
