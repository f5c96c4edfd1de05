//! The engine: an explicit state machine over the nodes, with a checkpoint after every node.
//!
//! A run holds its thread's state in memory only while nodes execute; between runs (waiting for
//! an answer, finished) the thread exists only in the store. Every write is a compare-and-set on
//! the thread's version, which is how racing requests are refused (409) without any in-process
//! lock, and how a run notices that another run took its thread.

pub mod events;
pub mod view;

use std::sync::Arc;

use async_trait::async_trait;

use crate::nodes::{self, Progress, Services};
use crate::state::{Node, ThreadState, ThreadStatus};
use crate::store::{Checkpoint, Store, StoreError};
use events::{EventBus, ThreadEvent};
use view::ThreadView;

/// Why a request on a thread was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown thread {0}")]
    NotFound(String),
    #[error("thread {thread_id} is {status}, not waiting for an answer")]
    NotWaiting {
        thread_id: String,
        status: &'static str,
    },
    #[error("thread {thread_id} is {status}; answer its question or wait for it to finish first")]
    Busy {
        thread_id: String,
        status: &'static str,
    },
    #[error("question {question_id} is not the pending question of thread {thread_id}")]
    UnknownQuestion {
        thread_id: String,
        question_id: String,
    },
    #[error(
        "thread {0} was changed by another request at the same time; fetch its status and retry"
    )]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("run of thread {0} stopped unexpectedly")]
    Aborted(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { thread_id, .. } => EngineError::Conflict(thread_id),
            other => EngineError::Store(other),
        }
    }
}

/// A new conversation, or a new turn of a finished one.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub thread_id: Option<String>,
    pub prompt: String,
    pub max_results: usize,
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
}

impl Engine {
    /// An engine over a store, with the nodes' services.
    pub fn new(store: Arc<dyn Store>, services: Services) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                services,
                events: EventBus::default(),
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
        let checkpoint = match existing {
            None => Checkpoint {
                thread_id: thread_id.clone(),
                version: 1,
                step: 0,
                next: Node::ParsePrompt,
                state: ThreadState::new_turn(
                    thread_id,
                    request.prompt,
                    request.max_results,
                    Vec::new(),
                ),
            },
            Some(previous) if previous.state.status.is_finished() => {
                let mut history = previous.state.history.clone();
                history.push(previous.state.as_turn());
                Checkpoint {
                    thread_id: thread_id.clone(),
                    version: previous.version + 1,
                    step: previous.step,
                    next: Node::ParsePrompt,
                    state: ThreadState::new_turn(
                        thread_id,
                        request.prompt,
                        request.max_results,
                        history,
                    ),
                }
            }
            Some(previous) => {
                return Err(EngineError::Busy {
                    thread_id,
                    status: previous.state.status.as_str(),
                });
            }
        };
        self.inner.store.put_checkpoint(&checkpoint).await?;
        self.inner.publish(&checkpoint, "start", None);
        self.run_to_pause(checkpoint).await
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
                status: checkpoint.state.status.as_str(),
            });
        }
        let pending = checkpoint
            .state
            .pending_question
            .as_ref()
            .map(|q| q.id.as_str());
        if let Some(asked) = question_id
            && pending != Some(asked)
        {
            return Err(EngineError::UnknownQuestion {
                thread_id: thread_id.to_owned(),
                question_id: asked.to_owned(),
            });
        }
        let next =
            nodes::wait_for_user_input::run(&mut checkpoint.state, answer).map_err(|_| {
                EngineError::NotWaiting {
                    thread_id: thread_id.to_owned(),
                    status: "without a question",
                }
            })?;
        checkpoint.version += 1;
        checkpoint.step += 1;
        checkpoint.next = next;
        // The compare-and-set here is what makes exactly one of several racing answers win.
        self.inner.store.put_checkpoint(&checkpoint).await?;
        self.inner
            .publish(&checkpoint, Node::WaitForUserInput.as_str(), None);
        self.run_to_pause(checkpoint).await
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

    /// Resumes, in the background, every run that was cut short (a crash, a kill): each goes on
    /// from its last checkpoint. Returns how many were resumed.
    pub async fn resume_unfinished(&self) -> Result<usize, EngineError> {
        let ids = self.inner.store.unfinished_threads().await?;
        let mut resumed = 0;
        for id in ids {
            let Some(checkpoint) = self.inner.store.get_checkpoint(&id).await? else {
                continue;
            };
            tracing::info!(thread_id = %id, next = checkpoint.next.as_str(), "resuming interrupted run");
            let inner = self.inner.clone();
            tokio::spawn(async move {
                if let Err(e) = inner.drive(checkpoint).await {
                    tracing::warn!(thread_id = %id, error = %e, "resumed run stopped");
                }
            });
            resumed += 1;
        }
        Ok(resumed)
    }

    /// Runs the thread in its own task, so a client that goes away does not cut the run short.
    async fn run_to_pause(&self, checkpoint: Checkpoint) -> Result<ThreadView, EngineError> {
        let thread_id = checkpoint.thread_id.clone();
        let inner = self.inner.clone();
        let run = tokio::spawn(async move { inner.drive(checkpoint).await });
        match run.await {
            Ok(result) => result.map(|cp| ThreadView::of(&cp)),
            Err(_) => Err(EngineError::Aborted(thread_id)),
        }
    }
}

impl Inner {
    fn publish(&self, checkpoint: &Checkpoint, node: &'static str, detail: Option<String>) {
        self.events.publish(ThreadEvent {
            thread_id: checkpoint.thread_id.clone(),
            node,
            status: checkpoint.state.status,
            next: checkpoint.next.as_str(),
            step: checkpoint.step,
            version: checkpoint.version,
            detail,
        });
    }

    /// Executes nodes until the thread pauses or ends, checkpointing after each.
    async fn drive(&self, mut checkpoint: Checkpoint) -> Result<Checkpoint, EngineError> {
        let started = std::time::Instant::now();
        let first_step = checkpoint.step;
        loop {
            let node = checkpoint.next;
            if matches!(node, Node::End | Node::WaitForUserInput) {
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
            };
            let outcome =
                nodes::run(node, &self.services, &mut checkpoint.state, &mut progress).await;
            checkpoint.version = progress.version;
            let state = &mut checkpoint.state;
            let next = match outcome {
                Ok(next) => next,
                Err(nodes::NodeError::Checkpoint(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::error!(thread_id = %checkpoint.thread_id, node = node.as_str(), error = %e, "node failed");
                    state.status = ThreadStatus::Error;
                    state.error = Some(format!("{} failed: {e}", node.as_str()));
                    Node::End
                }
            };
            match next {
                Node::WaitForUserInput => state.status = ThreadStatus::PendingUserInput,
                Node::End if state.status == ThreadStatus::Processing => {
                    state.status = ThreadStatus::Completed
                }
                _ => {}
            }
            checkpoint.next = next;
            checkpoint.version += 1;
            checkpoint.step += 1;
            self.store.put_checkpoint(&checkpoint).await?;
            tracing::debug!(thread_id = %checkpoint.thread_id, node = node.as_str(), next = next.as_str(), "checkpoint");
            self.publish(&checkpoint, node.as_str(), None);
        }
    }
}

/// Checkpoints partial progress of `execute_batch` (next node stays `execute_batch`).
struct CheckpointProgress<'a> {
    inner: &'a Inner,
    version: i64,
    step: i64,
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
        self.inner.store.put_checkpoint(&checkpoint).await?;
        self.version = checkpoint.version;
        let done = state.results.len();
        self.inner.publish(
            &checkpoint,
            Node::ExecuteBatch.as_str(),
            Some(format!("{done} task result(s) saved")),
        );
        Ok(())
    }
}
