//! The engine: an explicit state machine over the nodes, with a checkpoint after every node.
//!
//! A run holds its thread's state in memory only while nodes execute; between runs (waiting for
//! an answer, finished) the thread exists only in the store. Every write is a compare-and-set on
//! the thread's version, which is how racing requests are refused (409) without any in-process
//! lock, and how a run notices that another run took its thread.

pub mod events;
pub mod follow;
mod runs;
pub mod timeline;
mod unconfirmed;
pub mod view;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::Instrument;

use crate::access::Access;
use crate::agents::progress::AgentProgress;
use crate::agents::{AgentClient, AgentDispatcher, AgentError, OpenTask};
use crate::card::AgentCard;
use crate::directory::AgentDirectory;
use crate::metrics::{Asker, TurnOutcome, TurnTrigger};
use crate::nodes::{self, Progress, Services};
use crate::planner::CONTEXT_TURNS;
use crate::state::{Node, ThreadState, ThreadStatus, Turn, WebhookUrl};
use crate::store::{
    Chain, Checkpoint, CheckpointWrite, HistoryEntry, Lease, LoggedTurn, Notice, Origin, Store,
    StoreError, ThreadQuery, ThreadSummary, now_ms,
};
use events::{EventBus, ThreadEvent};
use unconfirmed::{QueuedWrite, Unconfirmed};
use view::ThreadView;

/// Why a request on a thread was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown thread {0}")]
    NotFound(String),
    #[error("thread {thread_id} is {status}, not waiting for an answer")]
    NotWaiting {
        thread_id: String,
        status: ThreadStatus,
    },
    #[error("thread {thread_id} is {status}; answer its question or wait for it to finish first")]
    Busy {
        thread_id: String,
        status: ThreadStatus,
    },
    /// The thread waits for an answer but holds no question (only a damaged state does that).
    #[error("thread {0} has no pending question to answer")]
    NoQuestion(String),
    #[error("question {question_id} is not the pending question of thread {thread_id}")]
    UnknownQuestion {
        thread_id: String,
        question_id: String,
    },
    #[error(
        "thread {0} was changed by another request at the same time; fetch its status and retry"
    )]
    Conflict(String),
    /// A delete of a thread whose run is in progress (and holds a live lease).
    #[error(
        "thread {0} is running (processing); cancel it or wait for it to finish before deleting it"
    )]
    Running(String),
    /// A fork asked for a thread id that is taken.
    #[error("thread {0} already exists; fork under another thread_id")]
    Exists(String),
    #[error("thread {thread_id} has no kept checkpoint at version {version}")]
    UnknownVersion { thread_id: String, version: i64 },
    #[error(transparent)]
    Store(StoreError),
    /// The task running the thread panicked or was cancelled; the thread resumes from its last
    /// checkpoint when its lease expires.
    #[error("run of thread {thread_id} stopped unexpectedly")]
    Aborted {
        thread_id: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { thread_id, .. } => EngineError::Conflict(thread_id),
            other => EngineError::Store(other),
        }
    }
}

/// Which runs in progress [`Engine::take_over_expired_runs`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Start-up: on a store no other process shares, every run in progress was this process's
    /// before a restart, so each is taken at once without waiting for its lease; on a shared
    /// store, only expired ones.
    AtStartup,
    /// The lease watch: only runs whose lease expired (their process died or hangs).
    Expired,
}

/// A new conversation, or a new turn of a finished one.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub thread_id: Option<String>,
    pub prompt: String,
    pub max_results: usize,
    /// The A2A `messageId` that asks for the turn, when Baton is called as an agent: a caller
    /// that sends it again (after its own crash) is given this turn rather than a second one.
    pub opened_by: Option<String>,
    /// Where to POST the thread's response when it pauses or finishes (checked by the API); a
    /// new turn without one keeps the thread's, one with a URL replaces it.
    pub webhook: Option<WebhookUrl>,
    /// Who asks: a new thread belongs to its owner; a new turn of a thread this access may not
    /// see is refused as if the thread did not exist.
    pub access: Access,
}

/// A fork: a new thread from `from`'s checkpoint at `version`.
#[derive(Debug, Clone)]
pub struct ForkRequest {
    pub from: String,
    pub version: i64,
    /// The new thread's id; a fresh one when `None`.
    pub thread_id: Option<String>,
    /// Who asks: only one who may see `from` may fork it, and the fork is theirs.
    pub access: Access,
}

/// The orchestration engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    services: Services,
    events: EventBus,
    lease: Duration,
    /// The runs executing here, for `cancel` to stop.
    runs: runs::Runs,
}

/// How many times `cancel` re-reads a thread whose run wrote between its read and its write.
const CANCEL_ATTEMPTS: usize = 5;

/// How many times `delete` re-reads a thread that moved on between its read and its delete.
const DELETE_ATTEMPTS: usize = 5;

/// Longest wait for an agent to take a `CancelTask` (never longer than an agent call).
const CANCEL_TASK_TIMEOUT: Duration = Duration::from_secs(3);

impl Engine {
    /// An engine over a store, with the nodes' services. A run holds a lease of `lease` on its
    /// thread, renewed while it works; another process may take the run over once it expires.
    pub fn new(store: Arc<dyn Store>, services: Services, lease: Duration) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                services,
                events: EventBus::default(),
                lease: lease.max(Duration::from_millis(100)),
                runs: runs::Runs::default(),
            }),
        }
    }

    /// The live events of every thread this process runs.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// The store the engine checkpoints to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The services nodes use (directory, planner, agents).
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// A fresh thread id (UUID v7: time-ordered, so ids sort by creation).
    pub fn new_thread_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// Starts a thread (or a new turn of a finished one) and runs it until it completes, fails or
    /// asks the user something.
    pub async fn start(&self, request: StartRequest) -> Result<ThreadView, EngineError> {
        // A fresh id cannot name an existing thread: skip the read (the insert would conflict).
        let (thread_id, existing) = match request.thread_id {
            Some(id) => {
                let existing = self.inner.store.get_checkpoint(&id).await?;
                (id, existing)
            }
            None => (Self::new_thread_id(), None),
        };
        if let Some(previous) = &existing
            && !request.access.may_see(previous.state.owner.as_ref())
        {
            return Err(EngineError::NotFound(thread_id));
        }
        let previous_state = existing.as_ref().map(|p| p.state.clone());
        let webhook = request.webhook.or_else(|| {
            previous_state
                .as_ref()
                .and_then(|previous| previous.webhook.clone())
        });
        let mut checkpoint = match existing {
            None => Checkpoint {
                thread_id: thread_id.clone(),
                version: 1,
                step: 0,
                next: Node::ParsePrompt,
                state: ThreadState {
                    owner: request.access.owner().cloned(),
                    ..ThreadState::new_turn(thread_id, request.prompt, request.max_results)
                },
            },
            // The finished turn is closed here, when the next one starts, rather than when it
            // finished: until then it is the head's current turn (what the thread shows), and
            // this write is the one that drops it from the head, so the same statement appends
            // it to the turn log. A fork stays one for its whole life.
            Some(previous) if previous.state.status.is_finished() => Checkpoint {
                thread_id,
                version: previous.version + 1,
                step: previous.step,
                next: Node::ParsePrompt,
                state: previous
                    .state
                    .next_turn(request.prompt, request.max_results),
            },
            Some(previous) => {
                return Err(EngineError::Busy {
                    thread_id,
                    status: previous.state.status,
                });
            }
        };
        checkpoint.state.opened_by = request.opened_by;
        checkpoint.state.webhook = webhook;
        self.write_and_run(
            checkpoint,
            Origin::Start,
            previous_state.as_ref(),
            TurnTrigger::Prompt,
        )
        .await
    }

    /// The thread's head, if `access` may see it; `NotFound` both when it does not exist and
    /// when it belongs to someone else, so a caller cannot tell the two apart.
    pub async fn visible(
        &self,
        thread_id: &str,
        access: &Access,
    ) -> Result<Checkpoint, EngineError> {
        match self.inner.store.get_checkpoint(thread_id).await? {
            Some(head) if access.may_see(head.state.owner.as_ref()) => Ok(head),
            _ => Err(EngineError::NotFound(thread_id.to_owned())),
        }
    }

    /// `visible` for a caller about to act on the thread, which reads it itself: nothing is read
    /// for an open access (authentication off), which may act on any thread.
    pub async fn check_visible(&self, thread_id: &str, access: &Access) -> Result<(), EngineError> {
        if *access == Access::Open {
            return Ok(());
        }
        self.visible(thread_id, access).await.map(drop)
    }

    /// Records the user's answer to the pending question and runs the thread on.
    pub async fn answer(
        &self,
        thread_id: &str,
        answer: &str,
        question_id: Option<&str>,
    ) -> Result<ThreadView, EngineError> {
        let mut checkpoint = self
            .inner
            .store
            .get_checkpoint(thread_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(thread_id.to_owned()))?;
        let waiting = checkpoint.state.status == ThreadStatus::PendingUserInput
            && checkpoint.next == Node::WaitForUserInput;
        if !waiting {
            return Err(EngineError::NotWaiting {
                thread_id: thread_id.to_owned(),
                status: checkpoint.state.status,
            });
        }
        if let Some(asked) = question_id
            && !checkpoint
                .state
                .pending_questions
                .iter()
                .any(|q| q.id == asked)
        {
            return Err(EngineError::UnknownQuestion {
                thread_id: thread_id.to_owned(),
                question_id: asked.to_owned(),
            });
        }
        let previous = checkpoint.state.clone();
        let next = nodes::wait_for_user_input::run(&mut checkpoint.state, question_id, answer)
            .map_err(|_| EngineError::NoQuestion(thread_id.to_owned()))?;
        checkpoint.version += 1;
        checkpoint.step += 1;
        checkpoint.next = next;
        // The compare-and-set of this write is what makes exactly one of several racing answers
        // win; a losing answer's run stops at its first wait, before any agent is called.
        self.write_and_run(
            checkpoint,
            Origin::Node(Node::WaitForUserInput),
            Some(&previous),
            TurnTrigger::Answer,
        )
        .await
    }

    /// Writes the checkpoint a turn's run starts from, then runs the thread to its next pause.
    /// A write that closes turns into the turn log (a new turn of an existing thread) must
    /// commit before the run starts, since the planner's context is read from the log; any
    /// other (a new thread's first, an answer's) is queued, and the run goes on while it
    /// commits: if it loses its compare-and-set, the run stops at its first wait with that
    /// conflict.
    async fn write_and_run(
        &self,
        mut checkpoint: Checkpoint,
        node: Origin,
        previous: Option<&ThreadState>,
        trigger: TurnTrigger,
    ) -> Result<ThreadView, EngineError> {
        if !checkpoint.state.unlogged_turns.is_empty() {
            self.inner.write(&mut checkpoint, node, previous).await?;
            return self.run_to_pause(checkpoint, trigger, None).await;
        }
        let first = self
            .inner
            .queue_write(
                &checkpoint,
                node,
                previous,
                None,
                TurnLogAppend::default(),
                Some(Chain::start()),
            )
            .await?;
        self.run_to_pause(checkpoint, trigger, Some(first)).await
    }

    /// Stops the thread's run: a thread `processing` or `pending_user_input` is written
    /// `cancelled` (a compare-and-set, so the run, here or on another process, cannot write after
    /// it), its run on this process is stopped at once (its agent calls dropped), and every
    /// agent-side task it has open is sent a `CancelTask`. A thread already `completed`, `error`
    /// or `cancelled` is answered as it is: a cancel is idempotent, and one that arrives just
    /// after the run finished is not an error. A cancelled thread takes a new prompt like a
    /// finished one.
    pub async fn cancel(&self, thread_id: &str) -> Result<ThreadView, EngineError> {
        for _ in 0..CANCEL_ATTEMPTS {
            let mut checkpoint = self.checkpoint(thread_id).await?;
            if checkpoint.state.status.is_finished() {
                return Ok(ThreadView::of(&checkpoint));
            }
            let previous = checkpoint.state.clone();
            checkpoint.state.status = ThreadStatus::Cancelled;
            checkpoint.state.pending_questions.clear();
            checkpoint.state.remote_tasks.clear();
            checkpoint.state.intents.clear();
            checkpoint.version += 1;
            checkpoint.step += 1;
            checkpoint.next = Node::End;
            match self
                .inner
                .write(&mut checkpoint, Origin::Cancel, Some(&previous))
                .await
            {
                Ok(()) => {}
                // The run wrote meanwhile: look again.
                Err(EngineError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            // Before the stop, which drops the run's calls and with them what they poll.
            let open = self.open_tasks(&previous);
            let stopped = self.inner.runs.stop(thread_id, checkpoint.version);
            tracing::info!(
                thread_id,
                was = previous.status.as_str(),
                runs_stopped = stopped,
                open_tasks = open.len(),
                "thread cancelled"
            );
            // Calls still inside a blocking send: only the context Baton chose names their task.
            let unnamed = unnamed_calls(&previous, &open);
            let to_cancel = open.into_iter().map(ToCancel::Task).chain(unnamed);
            self.inner
                .cancel_open_tasks(thread_id, to_cancel.collect())
                .await;
            return Ok(ThreadView::of(&checkpoint));
        }
        Err(EngineError::Conflict(thread_id.to_owned()))
    }

    /// Every agent-side task the thread has open: those waiting for the user's answer, calls
    /// written ahead whose task the agent named, and those this process is polling. The one place
    /// that knows, so a new source is one more line.
    fn open_tasks(&self, state: &ThreadState) -> Vec<OpenTask> {
        let waiting = state
            .remote_tasks
            .values()
            .map(|r| (&r.agent_id, &r.task_id));
        let written_ahead = state.intents.values().map(|i| (&i.agent_id, &i.task_id));
        let mut open: Vec<OpenTask> = Vec::new();
        let known = waiting
            .chain(written_ahead)
            .filter_map(|(agent_id, task_id)| {
                Some(OpenTask {
                    card: state.agents.get(agent_id)?.as_ref().clone(),
                    task_id: task_id.clone()?,
                })
            });
        for task in known.chain(self.inner.services.agents.tasks_in_flight(&state.thread_id)) {
            if !open
                .iter()
                .any(|o| o.task_id == task.task_id && o.card.id == task.card.id)
            {
                open.push(task);
            }
        }
        open
    }

    /// The thread as of its latest checkpoint.
    pub async fn status(&self, thread_id: &str) -> Result<ThreadView, EngineError> {
        let checkpoint = self.checkpoint(thread_id).await?;
        Ok(ThreadView::of(&checkpoint))
    }

    /// The latest checkpoint itself (state, next node, step, version).
    pub async fn checkpoint(&self, thread_id: &str) -> Result<Checkpoint, EngineError> {
        self.inner
            .store
            .get_checkpoint(thread_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(thread_id.to_owned()))
    }

    /// A past checkpoint of a thread, rebuilt from its history.
    pub async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Checkpoint, EngineError> {
        self.inner
            .store
            .checkpoint_at(thread_id, version)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("{thread_id} version {version}")))
    }

    /// The earlier turns of the thread `state` is a checkpoint of, at `positions` (from 0,
    /// oldest first): from the store's turn log, and, for a state an older Baton wrote, from
    /// the turns it still carries. Positions at or past the state's current turn are not
    /// earlier turns and are left out.
    pub async fn earlier_turns(
        &self,
        state: &ThreadState,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, EngineError> {
        Ok(self.inner.earlier_turns(state, positions).await?)
    }

    /// The turn of the thread `state` is a checkpoint of that the A2A message `message_id`
    /// opened, if one did: the current turn, an unlogged one, or one the turn log finds by its
    /// index.
    pub async fn turn_opened_by(
        &self,
        state: &ThreadState,
        message_id: &str,
    ) -> Result<Option<usize>, EngineError> {
        if state.opened_by.as_deref() == Some(message_id) {
            return Ok(Some(state.turn_index()));
        }
        if let Some(n) = state
            .unlogged_turns
            .iter()
            .position(|t| t.opened_by.as_deref() == Some(message_id))
        {
            return Ok(Some(state.earlier_turns + n));
        }
        Ok(self
            .inner
            .store
            .turn_opened_by(&state.thread_id, message_id)
            .await?
            .filter(|n| *n < state.earlier_turns))
    }

    /// A page of the thread list, newest first (by latest checkpoint).
    pub async fn threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, EngineError> {
        Ok(self.inner.store.list_threads(query).await?)
    }

    /// The thread's kept checkpoints, newest first; a fork's first one names where it came from.
    pub async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, EngineError> {
        let mut history = self.inner.store.history(thread_id).await?;
        if history.is_empty() {
            return Err(EngineError::NotFound(thread_id.to_owned()));
        }
        if let Some(entry) = history.iter_mut().find(|e| e.node == Origin::Fork) {
            // The fork point never changes over the fork's life, so the head's is the one.
            entry.forked_from = self.checkpoint(thread_id).await?.state.forked_from;
        }
        Ok(history)
    }

    /// Deletes a thread with its whole history. A thread whose run is in progress (`processing`
    /// with a live lease) is refused with `Running`: cancel it first. A thread waiting for the
    /// user, finished, or whose run died (its lease expired) is deleted; the agent-side tasks it
    /// had open are sent a `CancelTask`, as a cancel does, since nothing will answer them now.
    /// The delete is a compare-and-set on the version read: a run or an answer that writes
    /// meanwhile is looked at again, and one that writes after the delete loses its write.
    pub async fn delete(&self, thread_id: &str) -> Result<(), EngineError> {
        for _ in 0..DELETE_ATTEMPTS {
            let head = self.checkpoint(thread_id).await?;
            if self
                .inner
                .store
                .delete_thread(thread_id, head.version, now_ms())
                .await?
            {
                let open = self.open_tasks(&head.state);
                let unnamed = unnamed_calls(&head.state, &open);
                tracing::info!(
                    thread_id,
                    version = head.version,
                    open_tasks = open.len(),
                    "thread deleted"
                );
                let to_cancel = open.into_iter().map(ToCancel::Task).chain(unnamed);
                self.inner
                    .cancel_open_tasks(thread_id, to_cancel.collect())
                    .await;
                return Ok(());
            }
            // Refused at the version just read: only a live run refuses that.
            match self.inner.store.get_checkpoint(thread_id).await? {
                Some(now) if now.version == head.version => {
                    return Err(EngineError::Running(thread_id.to_owned()));
                }
                // It moved on (or is gone): look again.
                _ => continue,
            }
        }
        Err(EngineError::Conflict(thread_id.to_owned()))
    }

    /// A new thread whose state is `from`'s at checkpoint `version`; the original is untouched
    /// and both go on independently. The fork's first checkpoint (version 1, node `fork`)
    /// names its origin. A fork of a checkpoint taken while the run was processing resumes as a
    /// run of its own from there, as a takeover does, and this returns once it pauses or ends;
    /// a fork of a waiting checkpoint waits for its own answer, a finished one for a new prompt.
    /// See [`ThreadState::forked`] for what becomes of the agent-side tasks.
    pub async fn fork(&self, request: ForkRequest) -> Result<ThreadView, EngineError> {
        self.visible(&request.from, &request.access).await?;
        let origin = self
            .inner
            .store
            .checkpoint_at(&request.from, request.version)
            .await?
            .ok_or_else(|| EngineError::UnknownVersion {
                thread_id: request.from.clone(),
                version: request.version,
            })?;
        let thread_id = request.thread_id.unwrap_or_else(Self::new_thread_id);
        if self.inner.store.get_checkpoint(&thread_id).await?.is_some() {
            return Err(EngineError::Exists(thread_id));
        }
        let mut checkpoint = Checkpoint {
            thread_id: thread_id.clone(),
            version: 1,
            step: origin.step,
            next: origin.next,
            state: origin.state.forked(
                thread_id.clone(),
                request.version,
                request.access.owner().cloned(),
            ),
        };
        match self
            .inner
            .write_logging(&mut checkpoint, Origin::Fork, None, Some(&request.from))
            .await
        {
            Ok(()) => {}
            // Version 1 conflicts only with a thread of that id, created since the check.
            Err(EngineError::Conflict(_)) => return Err(EngineError::Exists(thread_id)),
            Err(e) => return Err(e),
        }
        tracing::info!(thread_id, from = %request.from, version = request.version, next = checkpoint.next.as_str(), "thread forked");
        if checkpoint.state.status == ThreadStatus::Processing {
            return self.run_to_pause(checkpoint, TurnTrigger::Fork, None).await;
        }
        Ok(ThreadView::of(&checkpoint))
    }

    /// Takes over, in the background, every run whose lease has expired because its process
    /// died (at start-up on a store no other process shares, every run in progress: see
    /// [`Takeover`]). Each run goes on from its last checkpoint; agents that already answered
    /// are not called again. Returns how many runs were taken.
    pub async fn take_over_expired_runs(&self, which: Takeover) -> Result<usize, EngineError> {
        let now = match which {
            Takeover::AtStartup if !self.inner.store.is_shared() => i64::MAX,
            Takeover::AtStartup | Takeover::Expired => now_ms(),
        };
        let mut taken = 0;
        for id in self.inner.store.expired_runs(now).await? {
            let Some(mut checkpoint) = self.inner.store.get_checkpoint(&id).await? else {
                continue;
            };
            if checkpoint.state.status != ThreadStatus::Processing {
                continue;
            }
            let previous = checkpoint.state.clone();
            checkpoint.version += 1;
            // The version bump fences the old owner: its next write loses.
            match self
                .inner
                .write(&mut checkpoint, Origin::Takeover, Some(&previous))
                .await
            {
                Ok(()) => {}
                Err(EngineError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            tracing::info!(thread_id = %id, next = checkpoint.next.as_str(), "took over an interrupted run");
            let inner = self.inner.clone();
            let span = run_span(&checkpoint, TurnTrigger::Takeover);
            tokio::spawn(
                async move {
                    match inner.run(checkpoint, TurnTrigger::Takeover, None).await {
                        // Another process moved the run on (a lost lease is logged where it is
                        // seen).
                        Ok(_) | Err(EngineError::Conflict(_)) => {}
                        Err(e) => tracing::warn!(error = %e, "taken-over run stopped"),
                    }
                }
                .instrument(span),
            );
            taken += 1;
        }
        Ok(taken)
    }

    /// Looks for expired leases every quarter of the lease time, for as long as the engine lives.
    pub fn spawn_lease_watch(&self) -> tokio::task::JoinHandle<()> {
        let engine = Arc::downgrade(&self.inner);
        let period = self.inner.lease / 4;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                if let Err(e) = (Engine { inner })
                    .take_over_expired_runs(Takeover::Expired)
                    .await
                {
                    tracing::warn!(error = %e, "lease watch failed");
                }
            }
        })
    }

    /// Follows what other processes sharing the store do: republishes their checkpoints on this
    /// process's event bus, stops the runs here of threads they cancelled, and has `agents`
    /// reload the cards they add, change or remove.
    pub async fn spawn_remote_events(
        &self,
        agents: Arc<AgentDirectory>,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, EngineError> {
        let Some(mut remote) = self.inner.store.watch().await? else {
            return Ok(None);
        };
        let engine = Arc::downgrade(&self.inner);
        Ok(Some(tokio::spawn(async move {
            while let Some(notice) = remote.recv().await {
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                match notice {
                    Notice::Checkpoint(event) => {
                        // Our own checkpoints were published when they were written.
                        if event.worker != inner.services.worker {
                            // Another process cancelled a thread whose run may be here: stop it
                            // now rather than at its next lease renewal.
                            if event.status == ThreadStatus::Cancelled {
                                let open = inner.services.agents.tasks_in_flight(&event.thread_id);
                                if inner.runs.stop(&event.thread_id, event.version) > 0
                                    && !open.is_empty()
                                {
                                    // Bounded by the cancel timeout.
                                    let (inner, thread_id) =
                                        (inner.clone(), event.thread_id.clone());
                                    tokio::spawn(async move {
                                        let open = open.into_iter().map(ToCancel::Task).collect();
                                        inner.cancel_open_tasks(&thread_id, open).await;
                                    });
                                }
                            }
                            inner.events.publish(event.into());
                        }
                    }
                    Notice::Agent(id) => {
                        if let Err(e) = agents.reload(&id).await {
                            tracing::warn!(agent = id, error = %e, "cannot reload a card another process changed");
                        }
                    }
                }
            }
        })))
    }

    /// Runs the thread in its own task, so a client that goes away does not cut the run short.
    /// The run's span is a child of the caller's (the HTTP request's), so its lines carry both.
    async fn run_to_pause(
        &self,
        checkpoint: Checkpoint,
        trigger: TurnTrigger,
        first: Option<QueuedWrite>,
    ) -> Result<ThreadView, EngineError> {
        let thread_id = checkpoint.thread_id.clone();
        let inner = self.inner.clone();
        let span = run_span(&checkpoint, trigger);
        let run = tokio::spawn(
            async move { inner.run(checkpoint, trigger, first).await }.instrument(span),
        );
        match run.await {
            Ok(result) => result.map(|cp| ThreadView::of(&cp)),
            Err(source) => Err(EngineError::Aborted { thread_id, source }),
        }
    }
}

/// The span of one turn's run: every line logged while it runs (its nodes and agent calls
/// included) carries the thread id.
fn run_span(checkpoint: &Checkpoint, trigger: TurnTrigger) -> tracing::Span {
    tracing::info_span!(
        "run",
        thread_id = %checkpoint.thread_id,
        version = checkpoint.version,
        trigger = trigger.as_str()
    )
}

impl Inner {
    /// One turn's run (`drive`), counted in the metrics: started, and how it stopped after how
    /// long. A run that ends without settling the thread (lost lease, store failure) is
    /// `interrupted`.
    async fn run(
        &self,
        checkpoint: Checkpoint,
        trigger: TurnTrigger,
        first: Option<QueuedWrite>,
    ) -> Result<Checkpoint, EngineError> {
        let metrics = &self.services.metrics;
        metrics.turn_started(trigger);
        let started = Instant::now();
        let result = self.drive(checkpoint, first).await;
        let outcome = match &result {
            Ok(head) => TurnOutcome::of(head.state.status),
            Err(_) => TurnOutcome::Interrupted,
        };
        metrics.turn_finished(outcome, started.elapsed());
        result
    }

    /// Sends `CancelTask` for each task, all at once, each within [`CANCEL_TASK_TIMEOUT`]. A
    /// failure is logged and nothing more: the thread is cancelled whatever the agents say.
    async fn cancel_open_tasks(&self, thread_id: &str, open: Vec<ToCancel>) {
        let timeout = CANCEL_TASK_TIMEOUT.min(self.services.calls.timeout);
        let agents = &self.services.agents;
        let sends = open.into_iter().map(|item| async move {
            let agent = &item.card().id;
            match tokio::time::timeout(timeout, item.send(agents)).await {
                Ok(Ok(())) => {
                    tracing::debug!(thread_id, agent, cancelled = %item, "agent task cancelled")
                }
                Ok(Err(e)) => {
                    tracing::warn!(thread_id, agent, cancelled = %item, error = %e, "agent did not cancel its task")
                }
                Err(_) => {
                    tracing::warn!(thread_id, agent, cancelled = %item, timeout_ms = timeout.as_millis() as u64, "agent did not answer the cancel in time")
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }

    fn lease(&self) -> Lease {
        Lease {
            worker: self.services.worker.clone(),
            expires_at: now_ms()
                .saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Writes a checkpoint (holding the lease while the thread is processing, releasing it
    /// otherwise) and publishes it as an event. Earlier turns the state has not logged yet (the
    /// turn a new turn closed, or those of a state an older Baton wrote) are moved out of it
    /// into the turn log by the same write, so `checkpoint` is left as it was stored.
    async fn write(
        &self,
        checkpoint: &mut Checkpoint,
        node: Origin,
        previous: Option<&ThreadState>,
    ) -> Result<(), EngineError> {
        self.write_logging(checkpoint, node, previous, None).await
    }

    /// `write`, for a fork's first checkpoint naming the thread it was forked from
    /// (`turns_from`), whose earlier turns the fork's turn log starts with.
    async fn write_logging(
        &self,
        checkpoint: &mut Checkpoint,
        node: Origin,
        previous: Option<&ThreadState>,
        turns_from: Option<&str>,
    ) -> Result<(), EngineError> {
        let closed = checkpoint.state.take_unlogged_turns();
        let log = TurnLogAppend {
            closed: &closed,
            turns_from,
        };
        Ok(self
            .write_with_detail(checkpoint, node, previous, None, log)
            .await?)
    }

    /// `write` with a line for the event; the store's error comes back as is, so
    /// `CheckpointProgress` hands it on unchanged.
    async fn write_with_detail(
        &self,
        checkpoint: &Checkpoint,
        node: Origin,
        previous: Option<&ThreadState>,
        detail: Option<String>,
        log: TurnLogAppend<'_>,
    ) -> Result<(), StoreError> {
        let mut unconfirmed = self.unconfirmed(Chain::start());
        unconfirmed.push(
            self.queue_write(checkpoint, node, previous, detail, log, None)
                .await?,
        );
        unconfirmed.confirm_all().await
    }

    /// A run's list of queued writes of `chain`, empty.
    fn unconfirmed(&self, chain: Chain) -> Unconfirmed<'_> {
        Unconfirmed::new(&self.events, &self.services.metrics, chain)
    }

    /// `write_with_detail` without waiting for the commit: the write is queued behind the run's
    /// earlier ones, for the run's `Unconfirmed`, which publishes its event once it has committed.
    async fn queue_write(
        &self,
        checkpoint: &Checkpoint,
        node: Origin,
        previous: Option<&ThreadState>,
        detail: Option<String>,
        log: TurnLogAppend<'_>,
        chain: Option<Chain>,
    ) -> Result<QueuedWrite, StoreError> {
        let lease = (checkpoint.state.status == ThreadStatus::Processing).then(|| self.lease());
        let queued = Instant::now();
        let pending = self
            .store
            .queue_checkpoint(&CheckpointWrite {
                checkpoint,
                node,
                previous,
                worker: &self.services.worker,
                lease: lease.as_ref(),
                closed: log.closed,
                turns_from: log.turns_from,
                chain,
            })
            .await?;
        let event = ThreadEvent {
            thread_id: checkpoint.thread_id.clone(),
            node,
            status: checkpoint.state.status,
            next: checkpoint.next,
            step: checkpoint.step,
            version: checkpoint.version,
            detail,
            progress: None,
        };
        Ok(QueuedWrite {
            pending,
            event,
            queued,
            chain,
        })
    }

    /// Executes nodes until the thread pauses or ends, checkpointing after each. While a node
    /// runs, its lease is renewed; if another process has taken the run, the node is dropped
    /// (its agent calls with it) and the run ends without writing.
    ///
    /// A node's checkpoint is queued, not waited for, when the next node only computes: that
    /// node runs while the write commits (see `unconfirmed.rs`). The run waits for its queued
    /// writes before a node with effects outside Baton and before it pauses or ends, so what it
    /// answers, and what an agent is asked after, is durable.
    ///
    /// `first` is the checkpoint the run starts from when its caller queued it rather than
    /// waited for it (an answer's).
    async fn drive(
        &self,
        mut checkpoint: Checkpoint,
        first: Option<QueuedWrite>,
    ) -> Result<Checkpoint, EngineError> {
        let started = Instant::now();
        let chain = first
            .as_ref()
            .and_then(|first| first.chain)
            .unwrap_or_else(Chain::start);
        let mut unconfirmed = self.unconfirmed(chain);
        if let Some(first) = first {
            unconfirmed.push(first);
        }
        let earlier = self.planner_context(&checkpoint.state).await?;
        let first_step = checkpoint.step;
        let mut run = self.runs.enter(&checkpoint.thread_id, checkpoint.version);
        loop {
            if run.is_stopped() {
                // The cancel's own write is committed; what is still queued lost to it or
                // commits before it.
                let _ = unconfirmed.confirm_all().await;
                return self.cancelled(&checkpoint.thread_id).await;
            }
            let node = checkpoint.next;
            let stops = matches!(node, Node::End | Node::WaitForUserInput);
            // What the run answers, and what an agent is asked on top of, must be durable.
            if (stops || node.has_outside_effects())
                && let Err(e) = unconfirmed.confirm_all().await
            {
                return self.after_failed_write(&checkpoint.thread_id, e).await;
            }
            if stops {
                tracing::info!(
                    thread_id = %checkpoint.thread_id,
                    status = checkpoint.state.status.as_str(),
                    nodes = checkpoint.step - first_step,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "run stopped"
                );
                return Ok(checkpoint);
            }
            let mut progress = CheckpointProgress {
                inner: self,
                version: checkpoint.version,
                step: checkpoint.step,
                previous: checkpoint.state.clone(),
            };
            let asked_before: Vec<String> = checkpoint
                .state
                .pending_questions
                .iter()
                .map(|q| q.id.clone())
                .collect();
            let node_started = Instant::now();
            let node_span = tracing::info_span!("node", node = node.as_str());
            let work = nodes::run(
                node,
                &self.services,
                &mut checkpoint.state,
                &earlier,
                &mut progress,
            )
            .instrument(node_span);
            let (outcome, confirmed) = tokio::select! {
                done = unconfirmed.alongside(work) => done,
                in_flight = self.hold_lease(&checkpoint.thread_id) => {
                    let _ = unconfirmed.confirm_all().await;
                    // Another process cancelled the thread (and its notification did not stop
                    // the run first), or took the run over.
                    if let Some(head) = self.cancelled_head(&checkpoint.thread_id).await {
                        let in_flight = in_flight.into_iter().map(ToCancel::Task).collect();
                        self.cancel_open_tasks(&checkpoint.thread_id, in_flight).await;
                        return Ok(head);
                    }
                    tracing::warn!(thread_id = %checkpoint.thread_id, node = node.as_str(), "lease lost; another process took the run, stopping it here");
                    return Err(EngineError::Conflict(checkpoint.thread_id));
                }
                () = run.stopped() => {
                    tracing::info!(thread_id = %checkpoint.thread_id, node = node.as_str(), "run cancelled; its node is dropped");
                    let _ = unconfirmed.confirm_all().await;
                    return self.cancelled(&checkpoint.thread_id).await;
                }
            };
            if let Err(e) = confirmed {
                // An earlier checkpoint of this run was not written: what the node did on top
                // of it cannot be written either.
                return self.after_failed_write(&checkpoint.thread_id, e).await;
            }
            self.services
                .metrics
                .node(node.as_str(), node_started.elapsed());
            for asked in checkpoint
                .state
                .pending_questions
                .iter()
                .filter(|q| !asked_before.contains(&q.id))
            {
                self.services.metrics.question_asked(Asker::of(&asked.kind));
            }
            checkpoint.version = progress.version;
            let previous = progress.previous;
            let next = match outcome {
                Ok(next) => next,
                Err(nodes::NodeError::Checkpoint(e)) => {
                    return self.after_failed_write(&checkpoint.thread_id, e).await;
                }
                Err(e) => {
                    tracing::error!(thread_id = %checkpoint.thread_id, node = node.as_str(), error = %e, "node failed");
                    checkpoint.state.status = ThreadStatus::Error;
                    checkpoint.state.error = Some(format!("{} failed: {e}", node.as_str()));
                    Node::End
                }
            };
            settle_status(&mut checkpoint.state, next);
            checkpoint.next = next;
            checkpoint.version += 1;
            checkpoint.step += 1;
            let detail = fallback_detail(&previous, &checkpoint.state);
            let closed = checkpoint.state.take_unlogged_turns();
            let log = TurnLogAppend {
                closed: &closed,
                turns_from: None,
            };
            match self
                .queue_write(
                    &checkpoint,
                    Origin::Node(node),
                    Some(&previous),
                    detail,
                    log,
                    Some(unconfirmed.chain()),
                )
                .await
            {
                Ok(queued) => unconfirmed.push(queued),
                Err(e) => {
                    let _ = unconfirmed.confirm_all().await;
                    return self.after_failed_write(&checkpoint.thread_id, e).await;
                }
            }
            tracing::debug!(thread_id = %checkpoint.thread_id, node = node.as_str(), next = next.as_str(), "checkpoint queued");
        }
    }

    /// See `Engine::earlier_turns`.
    async fn earlier_turns(
        &self,
        state: &ThreadState,
        positions: Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError> {
        let end = positions.end.min(state.turn_index());
        let logged_end = end.min(state.earlier_turns);
        let mut found = if positions.start < logged_end {
            self.store
                .turns(&state.thread_id, positions.start..logged_end)
                .await?
        } else {
            Vec::new()
        };
        let unlogged = (positions.start.max(state.earlier_turns)..end).filter_map(|n| {
            state
                .unlogged_turns
                .get(n - state.earlier_turns)
                .map(|turn| LoggedTurn {
                    turn: n,
                    body: turn.clone(),
                })
        });
        found.extend(unlogged);
        Ok(found)
    }

    /// What the planner is shown of the thread's past: its last [`CONTEXT_TURNS`] earlier turns,
    /// read once when a run starts (one range of the turn log, whatever the thread's length).
    async fn planner_context(&self, state: &ThreadState) -> Result<Vec<Turn>, StoreError> {
        let total = state.turn_index();
        if total == 0 {
            return Ok(Vec::new());
        }
        let recent = self
            .earlier_turns(state, total.saturating_sub(CONTEXT_TURNS)..total)
            .await?;
        Ok(recent.into_iter().map(|t| t.body).collect())
    }

    /// The head of a thread whose run was told to stop: the cancel wrote it before telling.
    async fn cancelled(&self, thread_id: &str) -> Result<Checkpoint, EngineError> {
        self.store
            .get_checkpoint(thread_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(thread_id.to_owned()))
    }

    /// The head of the thread if it was cancelled (which is why the run lost its lease or its
    /// write), else `None`.
    async fn cancelled_head(&self, thread_id: &str) -> Option<Checkpoint> {
        match self.store.get_checkpoint(thread_id).await {
            Ok(Some(head)) if head.state.status == ThreadStatus::Cancelled => Some(head),
            _ => None,
        }
    }

    /// A run's failed write: the thread's head when it failed because the thread was cancelled
    /// (the run ends there, answering the cancelled thread), else the error.
    async fn after_failed_write(
        &self,
        thread_id: &str,
        error: StoreError,
    ) -> Result<Checkpoint, EngineError> {
        if matches!(error, StoreError::Conflict { .. })
            && let Some(head) = self.cancelled_head(thread_id).await
        {
            return Ok(head);
        }
        Err(error.into())
    }

    /// Renews the run's lease every third of its length for as long as it is polled, and returns
    /// only once the store says another process holds the run (or cancelled it), with the agent
    /// tasks the run was polling then: once the node is dropped they are no longer listed, and
    /// a cancel must still reach them. A failed renewal (the database briefly away) is not a
    /// loss: the lease may still be ours, and the next write will tell.
    async fn hold_lease(&self, thread_id: &str) -> Vec<OpenTask> {
        let period = self.lease / 3;
        // First beat one period from now (an interval's immediate first tick would still wait
        // for the timer wheel's next millisecond).
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            beat.tick().await;
            match self.store.renew_lease(thread_id, &self.lease()).await {
                Ok(true) => {}
                Ok(false) => return self.services.agents.tasks_in_flight(thread_id),
                Err(e) => tracing::warn!(thread_id, error = %e, "lease renewal failed"),
            }
        }
    }
}

/// The status a thread has after a node that chose `next`: waiting for the user, or completed
/// when it ends without having failed.
fn settle_status(state: &mut ThreadState, next: Node) {
    match next {
        Node::WaitForUserInput => state.status = ThreadStatus::PendingUserInput,
        Node::End if state.status == ThreadStatus::Processing => {
            state.status = ThreadStatus::Completed
        }
        _ => {}
    }
}

/// The planner decisions the rules planner had to make instead during the last node, for the
/// event's `detail`; `None` when there were none.
fn fallback_detail(previous: &ThreadState, state: &ThreadState) -> Option<String> {
    let new = state
        .planner
        .fallbacks
        .get(previous.planner.fallbacks.len()..)
        .filter(|new| !new.is_empty())?;
    Some(
        new.iter()
            .map(|f| {
                format!(
                    "planner fell back to rules for {}: {}",
                    f.decision.as_str(),
                    f.reason
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Checkpoints partial progress of `execute_batch` (next node stays `execute_batch`).
/// What a checkpoint write adds to the thread's turn log (see `CheckpointWrite`).
#[derive(Debug, Default, Clone, Copy)]
struct TurnLogAppend<'a> {
    closed: &'a [Turn],
    turns_from: Option<&'a str>,
}

struct CheckpointProgress<'a> {
    inner: &'a Inner,
    version: i64,
    step: i64,
    /// The state of the last write, for the history's undo.
    previous: ThreadState,
}

#[async_trait]
impl Progress for CheckpointProgress<'_> {
    async fn save(&mut self, state: &ThreadState) -> Result<(), StoreError> {
        let checkpoint = Checkpoint {
            thread_id: state.thread_id.clone(),
            version: self.version + 1,
            step: self.step,
            next: Node::ExecuteBatch,
            state: state.clone(),
        };
        let detail = format!("{} task result(s) saved", state.results.len());
        self.inner
            .write_with_detail(
                &checkpoint,
                Origin::Node(Node::ExecuteBatch),
                Some(&self.previous),
                Some(detail),
                TurnLogAppend::default(),
            )
            .await?;
        self.version = checkpoint.version;
        self.previous = checkpoint.state;
        Ok(())
    }

    fn relay(&mut self, state: &ThreadState, note: AgentProgress) {
        self.inner.events.publish(ThreadEvent {
            thread_id: state.thread_id.clone(),
            node: Origin::Node(Node::ExecuteBatch),
            status: state.status,
            next: Node::ExecuteBatch,
            step: self.step,
            version: self.version,
            detail: None,
            progress: Some(note),
        });
    }
}

/// What a cancelled thread asks its agents to cancel: a task the agent named, or, for a call
/// still inside a blocking send, whatever task runs in the context Baton chose for it.
enum ToCancel {
    Task(OpenTask),
    InContext { card: AgentCard, context_id: String },
}

impl ToCancel {
    fn card(&self) -> &AgentCard {
        match self {
            ToCancel::Task(task) => &task.card,
            ToCancel::InContext { card, .. } => card,
        }
    }

    /// Asks the agent to cancel it.
    async fn send(&self, agents: &AgentDispatcher) -> Result<(), AgentError> {
        match self {
            ToCancel::Task(task) => agents.cancel(&task.card, &task.task_id).await,
            ToCancel::InContext { card, context_id } => {
                agents.cancel_in_context(card, context_id).await
            }
        }
    }
}

impl std::fmt::Display for ToCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToCancel::Task(task) => write!(f, "task {}", task.task_id),
            ToCancel::InContext { context_id, .. } => write!(f, "the task in context {context_id}"),
        }
    }
}

/// The written-ahead calls whose agent has not named a task yet (no task id in the intent, none
/// of the agent's tasks open), each with the context Baton chose for it.
fn unnamed_calls(state: &ThreadState, open: &[OpenTask]) -> Vec<ToCancel> {
    state
        .intents
        .values()
        .filter(|intent| intent.task_id.is_none())
        .filter(|intent| !open.iter().any(|o| o.card.id == intent.agent_id))
        .filter_map(|intent| {
            Some(ToCancel::InContext {
                card: state.agents.get(&intent.agent_id)?.as_ref().clone(),
                context_id: intent.context_id.clone()?,
            })
        })
        .collect()
}
