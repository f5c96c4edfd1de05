//! Group commit, shared by SQLite's writer and PostgreSQL's writers.
//!
//! Callers queue their writes; a writer task takes everything queued (up to `MAX_GROUP`) and
//! commits it as one transaction, then answers each caller with its own outcome. Checkpoints go
//! in as one multi-row upsert per round: the k-th write of a thread in a group goes to round k,
//! so a thread written twice in one group has its second write see its first. Each round is
//! ordered by thread id, so concurrent groups (several PostgreSQL writers, several processes)
//! lock threads' rows in one order and cannot deadlock on each other.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Postgres, Sqlite};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::StoreError;
use super::sql::{CheckpointRow, Sql};

/// Most writes one commit carries.
pub(crate) const MAX_GROUP: usize = 256;

/// Writes waiting for a writer; callers wait when it is full.
const QUEUE_DEPTH: usize = 4096;

/// A write queued for a writer task, answered once its transaction has committed.
struct PendingWrite<Op, Out> {
    op: Op,
    reply: oneshot::Sender<Result<Out, StoreError>>,
}

/// The queue every writer of a backend takes its groups from.
type SharedQueue<Op, Out> = Arc<Mutex<mpsc::Receiver<PendingWrite<Op, Out>>>>;

/// Why a whole group failed; every write of the group is answered with it.
pub(crate) enum GroupFailure {
    /// Nothing of the group was written (the transaction failed and was rolled back, or no
    /// connection could be had).
    NotWritten(sqlx::Error),
    /// The connection was lost mid-group: the group may or may not have committed. The writer
    /// goes on with a new connection.
    ConnectionLost(sqlx::Error),
}

impl GroupFailure {
    /// The error each caller of the failed group gets (one shared cause).
    fn shared(self) -> impl Fn() -> StoreError {
        let (lost, cause) = match self {
            GroupFailure::NotWritten(e) => (false, Arc::new(e)),
            GroupFailure::ConnectionLost(e) => (true, Arc::new(e)),
        };
        move || {
            if lost {
                StoreError::ConnectionLost(cause.clone())
            } else {
                StoreError::GroupCommit(cause.clone())
            }
        }
    }
}

/// What a backend's writer task does with a group: commit it in one transaction, one answer per
/// write in the group's order.
pub(crate) trait GroupWriter: Send + 'static {
    /// A write as queued.
    type Op: Send + 'static;
    /// What a committed write answers.
    type Out: Send + 'static;

    /// Commits `group` in one transaction (rolled back, or the connection replaced, on failure).
    fn commit(
        &mut self,
        group: &[Self::Op],
    ) -> impl Future<Output = Result<Vec<Self::Out>, GroupFailure>> + Send;

    /// Whether the writer lets other tasks run before gathering its next group. The callers it
    /// just answered are runnable but have not run yet: given the turn, they go on to their next
    /// write and queue it, so the next group is bigger and commits fewer times.
    const YIELDS: bool = false;

    /// Told after each group, committed or not (metrics).
    fn committed(&self, _size: usize, _took: Duration) {}
}

/// The callers' end of the writers' queue, and the writer tasks themselves: dropping it stops
/// them.
pub(crate) struct WriteQueue<Op, Out> {
    sender: mpsc::Sender<PendingWrite<Op, Out>>,
    writers: Vec<JoinHandle<()>>,
}

impl<Op: Send + 'static, Out: Send + 'static> WriteQueue<Op, Out> {
    /// Starts one task per writer, all taking groups from one queue.
    pub fn start<W>(writers: impl IntoIterator<Item = W>) -> Self
    where
        W: GroupWriter<Op = Op, Out = Out>,
    {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        // Why a lock: one writer at a time takes a group, so a group holds all that is queued,
        // while the other writers commit theirs.
        let receiver: SharedQueue<Op, Out> = Arc::new(Mutex::new(receiver));
        let writers = writers
            .into_iter()
            .map(|writer| tokio::spawn(write_loop(writer, receiver.clone())))
            .collect();
        WriteQueue { sender, writers }
    }

    /// Queues a write and waits until its transaction has committed.
    pub async fn submit(&self, op: Op) -> Result<Out, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(PendingWrite { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

impl<Op, Out> Drop for WriteQueue<Op, Out> {
    fn drop(&mut self) {
        // No caller can be waiting (each holds the store), so nothing is cut short.
        for writer in &self.writers {
            writer.abort();
        }
    }
}

/// One writer: takes a group, commits it, answers each caller, until the queue closes.
async fn write_loop<W: GroupWriter>(mut writer: W, queue: SharedQueue<W::Op, W::Out>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        if W::YIELDS {
            tokio::task::yield_now().await;
        }
        let taken = queue.lock().await.recv_many(&mut group, MAX_GROUP).await;
        if taken == 0 {
            return;
        }
        let (ops, replies): (Vec<W::Op>, Vec<_>) = group.drain(..).map(|w| (w.op, w.reply)).unzip();
        let started = Instant::now();
        let committed = writer.commit(&ops).await;
        writer.committed(ops.len(), started.elapsed());
        match committed {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(failure) => {
                let error = failure.shared();
                tracing::error!(error = %error(), writes = replies.len(), "group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(error()));
                }
            }
        }
    }
}

/// A group's checkpoint writes in rounds: the k-th write of a thread goes to round k, and each
/// round is ordered by thread id.
pub(crate) struct Rounds<'g> {
    rounds: Vec<Vec<(usize, &'g CheckpointRow)>>,
}

impl<'g> Rounds<'g> {
    /// Sorts the group's checkpoints (`(index in the group, row)`) into rounds.
    pub fn of(checkpoints: impl IntoIterator<Item = (usize, &'g CheckpointRow)>) -> Self {
        let mut rounds: Vec<Vec<(usize, &CheckpointRow)>> = Vec::new();
        let mut writes_of: HashMap<&str, usize> = HashMap::new();
        for (i, row) in checkpoints {
            let seen = writes_of.entry(row.thread_id.as_str()).or_insert(0);
            if *seen == rounds.len() {
                rounds.push(Vec::new());
            }
            rounds[*seen].push((i, row));
            *seen += 1;
        }
        for round in &mut rounds {
            round.sort_by(|a, b| a.1.thread_id.cmp(&b.1.thread_id));
        }
        Rounds { rounds }
    }

    /// Statements the rounds take.
    pub fn statements(&self) -> usize {
        self.rounds.len()
    }

    /// Writes every round, one statement each, and sets `won[i]` for each checkpoint whose
    /// compare-and-set won. Inside a transaction when there is more than one round.
    pub async fn write<DB: CheckpointUpsert>(
        &self,
        conn: &mut DB::Connection,
        retention: i64,
        now: i64,
        won: &mut [bool],
    ) -> Result<(), sqlx::Error> {
        for round in &self.rounds {
            let rows: Vec<&CheckpointRow> = round.iter().map(|(_, row)| *row).collect();
            let winners = DB::upsert(conn, &rows, retention, now).await?;
            for (i, row) in round {
                won[*i] = winners.contains(&row.thread_id);
            }
        }
        Ok(())
    }
}

/// How a database writes one round of checkpoints in one statement.
pub(crate) trait CheckpointUpsert: sqlx::Database {
    /// Writes checkpoints of distinct threads; returns the threads whose compare-and-set won.
    fn upsert<'c>(
        conn: &'c mut Self::Connection,
        rows: &'c [&'c CheckpointRow],
        retention: i64,
        now: i64,
    ) -> impl Future<Output = Result<HashSet<String>, sqlx::Error>> + Send + 'c;
}

impl CheckpointUpsert for Sqlite {
    /// One row of binds per checkpoint (`VALUES`).
    fn upsert<'c>(
        conn: &'c mut Self::Connection,
        rows: &'c [&'c CheckpointRow],
        retention: i64,
        now: i64,
    ) -> impl Future<Output = Result<HashSet<String>, sqlx::Error>> + Send + 'c {
        Sql::<Sqlite>::write_checkpoints(conn, rows, retention, now)
    }
}

impl CheckpointUpsert for Postgres {
    /// One array per column (`UNNEST`): one statement shape, prepared once per connection,
    /// where `VALUES` rows made a new statement for every group size.
    fn upsert<'c>(
        conn: &'c mut Self::Connection,
        rows: &'c [&'c CheckpointRow],
        retention: i64,
        now: i64,
    ) -> impl Future<Output = Result<HashSet<String>, sqlx::Error>> + Send + 'c {
        Sql::<Postgres>::write_checkpoint_arrays(conn, rows, retention, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Node, ThreadStatus, WorkerId};
    use crate::store::Origin;

    fn row(thread: &str, version: i64) -> CheckpointRow {
        CheckpointRow {
            thread_id: thread.to_owned(),
            version,
            step: version,
            node: Origin::Start,
            next: Node::ParsePrompt,
            status: ThreadStatus::Processing,
            state: "{}".to_owned(),
            undo: None,
            worker: WorkerId::new("w"),
            lease: None,
            turns: 1,
            prompt: String::new(),
            question: None,
            closed_turns: None,
            turns_from: None,
            owner: None,
        }
    }

    #[test]
    fn a_threads_later_writes_go_to_later_rounds_each_ordered_by_thread() {
        let group = [
            row("b", 1),
            row("a", 4),
            row("b", 2),
            row("c", 9),
            row("b", 3),
        ];
        let rounds = Rounds::of(group.iter().enumerate());
        let seen: Vec<Vec<(usize, &str, i64)>> = rounds
            .rounds
            .iter()
            .map(|round| {
                round
                    .iter()
                    .map(|(i, r)| (*i, r.thread_id.as_str(), r.version))
                    .collect()
            })
            .collect();
        assert_eq!(
            seen,
            [
                vec![(1, "a", 4), (0, "b", 1), (3, "c", 9)],
                vec![(2, "b", 2)],
                vec![(4, "b", 3)],
            ]
        );
        assert_eq!(rounds.statements(), 3);
    }
}
