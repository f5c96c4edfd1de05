//! Group commit, shared by SQLite's writer and PostgreSQL's writers.
//!
//! Callers queue their writes; a writer task takes everything queued (up to `MAX_GROUP`) and
//! commits it as one transaction, then answers each caller with its own outcome. Checkpoints go
//! in as one multi-row upsert.
//!
//! A caller may queue a thread's next checkpoint before the last one has committed (the engine
//! runs a node while its predecessor's checkpoint commits). A thread's writes are therefore
//! kept in order: they all go to one writer (by a hash of the thread id, when there are several),
//! and a group takes at most one write of a thread, keeping its later ones for the next group,
//! so that one group is one statement and the next is already waiting when it commits.
//! `Rounds` still sorts a group that holds a thread twice (the k-th write of a thread in round
//! k), and orders each round by thread id, so concurrent groups (several PostgreSQL writers,
//! several processes) lock threads' rows in one order and cannot deadlock on each other.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Postgres, Sqlite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::sql::{CheckpointRow, Sql};
use super::{Chain, StoreError};
use crate::state::ThreadStatus;

/// Most writes one commit carries.
pub(crate) const MAX_GROUP: usize = 256;

/// Writes waiting for a writer; callers wait when it is full.
const QUEUE_DEPTH: usize = 4096;

/// A write queued for a writer task, answered once its transaction has committed.
struct PendingWrite<Op, Out> {
    op: Op,
    reply: oneshot::Sender<Result<Out, StoreError>>,
}

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

    /// The thread whose checkpoint `op` is, if it is one: a thread's checkpoints stay in the
    /// order they were queued (one writer, one per group). Other writes keep no such order.
    fn thread(op: &Self::Op) -> Option<&str>;

    /// The chain of queued writes `op` belongs to, if any (`Chain`).
    fn chain(op: &Self::Op) -> Option<Chain>;

    /// Whether a checkpoint's answer says it lost its compare-and-set (`None`: not a checkpoint).
    fn lost(out: &Self::Out) -> Option<bool>;

    /// The answer of a checkpoint refused unwritten, because a write before it in its chain lost.
    fn refused() -> Self::Out;

    /// Commits `group` in one transaction (rolled back, or the connection replaced, on failure).
    fn commit(
        &mut self,
        group: &[Self::Op],
    ) -> impl Future<Output = Result<Vec<Self::Out>, GroupFailure>> + Send;

    /// Whether a group may hold several writes of one thread, which the writer folds into one
    /// (`Folded`); if not, a group takes one write of a thread and the next group the next.
    const FOLDS: bool = false;

    /// Whether the writer lets other tasks run before gathering its next group. The callers it
    /// just answered are runnable but have not run yet: given the turn, they go on to their next
    /// write and queue it, so the next group is bigger and commits fewer times.
    const YIELDS: bool = false;

    /// Told after each group, committed or not (metrics).
    fn committed(&self, _size: usize, _took: Duration) {}
}

/// The callers' end of the writers' queues, and the writer tasks themselves: dropping it stops
/// them.
pub(crate) struct WriteQueue<Op, Out> {
    /// One queue per writer.
    senders: Vec<mpsc::Sender<PendingWrite<Op, Out>>>,
    /// `GroupWriter::thread`: which writer a checkpoint goes to.
    thread: fn(&Op) -> Option<&str>,
    writers: Vec<JoinHandle<()>>,
}

impl<Op: Send + 'static, Out: Send + 'static> WriteQueue<Op, Out> {
    /// Starts one task per writer, each with its own queue.
    pub fn start<W>(writers: impl IntoIterator<Item = W>) -> Self
    where
        W: GroupWriter<Op = Op, Out = Out>,
    {
        let (senders, writers) = writers
            .into_iter()
            .map(|writer| {
                let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
                (sender, tokio::spawn(write_loop(writer, receiver)))
            })
            .unzip();
        WriteQueue {
            senders,
            thread: W::thread,
            writers,
        }
    }

    /// Queues a write and waits until its transaction has committed.
    pub async fn submit(&self, op: Op) -> Result<Out, StoreError> {
        self.enqueue(op).await?.committed().await
    }

    /// Queues a write (waiting only while its queue is full) and returns without waiting for
    /// its commit. A caller's checkpoints of one thread are committed in the order it queued
    /// them.
    pub async fn enqueue(&self, op: Op) -> Result<Queued<Out>, StoreError> {
        let writer = match (self.thread)(&op) {
            Some(thread) if self.senders.len() > 1 => {
                let mut hasher = DefaultHasher::new();
                thread.hash(&mut hasher);
                (hasher.finish() % self.senders.len() as u64) as usize
            }
            _ => 0,
        };
        let (reply, outcome) = oneshot::channel();
        self.senders[writer]
            .send(PendingWrite { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Queued { outcome })
    }
}

/// A queued write, answered once the group it went into has committed.
pub(crate) struct Queued<Out> {
    outcome: oneshot::Receiver<Result<Out, StoreError>>,
}

impl<Out> Queued<Out> {
    /// Waits for the write's group to commit, and answers what the write did.
    pub async fn committed(self) -> Result<Out, StoreError> {
        self.outcome.await.map_err(|_| StoreError::Closed)?
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

/// One writer: takes a group, commits it, answers each caller, until its queue closes.
async fn write_loop<W: GroupWriter>(
    mut writer: W,
    mut queue: mpsc::Receiver<PendingWrite<W::Op, W::Out>>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // Checkpoints of threads already in the group, for the next one, in the order queued.
    let mut held: VecDeque<PendingWrite<W::Op, W::Out>> = VecDeque::new();
    let mut lost = LostChains::default();
    loop {
        if W::YIELDS {
            tokio::task::yield_now().await;
        }
        if held.is_empty() {
            if queue.recv_many(&mut group, MAX_GROUP).await == 0 {
                return;
            }
        } else {
            // What was held back goes first; whatever else is queued joins it without waiting.
            group.extend(held.drain(..));
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(write) => group.push(write),
                    Err(_) => break,
                }
            }
        }
        let mut threads: HashSet<String> = HashSet::new();
        let mut ops = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        for write in group.drain(..) {
            if W::chain(&write.op).is_some_and(|chain| lost.contains(chain)) {
                let _ = write.reply.send(Ok(W::refused()));
                continue;
            }
            if !W::FOLDS
                && let Some(thread) = W::thread(&write.op)
                && !threads.insert(thread.to_owned())
            {
                held.push_back(write);
                continue;
            }
            ops.push(write.op);
            replies.push(write.reply);
        }
        if ops.is_empty() {
            continue;
        }
        let chains: Vec<Option<Chain>> = ops.iter().map(W::chain).collect();
        let started = Instant::now();
        let committed = writer.commit(&ops).await;
        writer.committed(ops.len(), started.elapsed());
        match committed {
            Ok(outcomes) => {
                for ((reply, outcome), chain) in replies.into_iter().zip(outcomes).zip(chains) {
                    if let Some(chain) = chain
                        && W::lost(&outcome) == Some(true)
                    {
                        lost.insert(chain);
                    }
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(failure) => {
                let error = failure.shared();
                tracing::error!(error = %error(), writes = replies.len(), "group commit failed");
                for (reply, chain) in replies.into_iter().zip(chains) {
                    // Written or not, what follows it in its chain is not.
                    if let Some(chain) = chain {
                        lost.insert(chain);
                    }
                    let _ = reply.send(Err(error()));
                }
            }
        }
    }
}

/// Chains with a lost write, most recent last: a chain's later writes are queued within a few
/// commits of its loss (its run stops at its next wait), so the last few thousand are enough.
#[derive(Default)]
struct LostChains {
    set: HashSet<Chain>,
    order: VecDeque<Chain>,
}

impl LostChains {
    /// Chains remembered.
    const KEPT: usize = 4096;

    fn contains(&self, chain: Chain) -> bool {
        self.set.contains(&chain)
    }

    fn insert(&mut self, chain: Chain) {
        if self.set.insert(chain) {
            self.order.push_back(chain);
            if self.order.len() > Self::KEPT
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
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
        // A chain whose write lost in one round writes nothing in the later ones.
        let mut lost: HashSet<Chain> = HashSet::new();
        for round in &self.rounds {
            let rows: Vec<&CheckpointRow> = round
                .iter()
                .map(|(_, row)| *row)
                .filter(|row| !row.chain.is_some_and(|chain| lost.contains(&chain)))
                .collect();
            let winners = if rows.is_empty() {
                HashSet::new()
            } else {
                DB::upsert(conn, &rows, retention, now).await?
            };
            for (i, row) in round {
                let in_round = !row.chain.is_some_and(|chain| lost.contains(&chain));
                won[*i] = in_round && winners.contains(&row.thread_id);
            }
            for (i, row) in round {
                if let Some(chain) = row.chain
                    && !won[*i]
                {
                    lost.insert(chain);
                }
            }
        }
        Ok(())
    }
}

/// A group's checkpoints with each thread's consecutive writes folded into one: the last is
/// written as the thread's head, from the version before the first (the compare-and-set covers
/// them all), and the ones before it go to the history only.
pub(crate) struct Folded<'g> {
    heads: Vec<Head<'g>>,
    passed: Vec<&'g CheckpointRow>,
}

/// A thread's last write in a group, and where its writes are in the group.
struct Head<'g> {
    row: &'g CheckpointRow,
    /// The version the thread must be at: the one before its first write in the group.
    expected: i64,
    writes: Vec<usize>,
}

impl<'g> Folded<'g> {
    /// Folds `group`; `None` when a thread's writes cannot be: their versions are not
    /// consecutive, they are not of one chain, or one before the last logs turns or pauses or
    /// ends the run (what the history's triggers treat specially). A thread whose first write
    /// creates it is expected at version 0: created by its last.
    pub fn of(group: &'g [CheckpointRow]) -> Option<Self> {
        let mut heads: Vec<Head<'g>> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        let mut passed = Vec::new();
        for (i, row) in group.iter().enumerate() {
            let Some(&h) = at.get(row.thread_id.as_str()) else {
                at.insert(&row.thread_id, heads.len());
                heads.push(Head {
                    row,
                    expected: row.version - 1,
                    writes: vec![i],
                });
                continue;
            };
            let head = &mut heads[h];
            let before = head.row;
            let foldable = row.version == before.version + 1
                && row.chain == before.chain
                && before.closed_turns.is_none()
                && before.turns_from.is_none()
                && before.status == ThreadStatus::Processing;
            if !foldable {
                return None;
            }
            passed.push(before);
            head.row = row;
            head.writes.push(i);
        }
        heads.sort_by(|a, b| a.row.thread_id.cmp(&b.row.thread_id));
        Some(Folded { heads, passed })
    }

    /// Whether any thread had several writes (else the plain upsert does the same).
    pub fn folds(&self) -> bool {
        !self.passed.is_empty()
    }

    /// Each thread's last write with the version it must find, ordered by thread id.
    pub fn heads(&self) -> Vec<(&'g CheckpointRow, i64)> {
        self.heads.iter().map(|h| (h.row, h.expected)).collect()
    }

    /// The writes before each thread's last, for the history only.
    pub fn passed(&self) -> &[&'g CheckpointRow] {
        &self.passed
    }

    /// Sets `won[i]` for every write of the threads whose head write won.
    pub fn mark(&self, winners: &HashSet<String>, won: &mut [bool]) {
        for head in &self.heads {
            let head_won = winners.contains(&head.row.thread_id);
            for &i in &head.writes {
                won[i] = head_won;
            }
        }
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
            chain: None,
        }
    }

    /// Records each group it commits (writes named `thread:n`); a write of thread `lose` loses.
    struct Recorder {
        groups: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    }

    impl GroupWriter for Recorder {
        type Op = String;
        type Out = String;

        fn thread(op: &String) -> Option<&str> {
            op.split_once(':').map(|(thread, _)| thread)
        }

        fn chain(_: &String) -> Option<Chain> {
            None
        }

        fn lost(_: &String) -> Option<bool> {
            None
        }

        fn refused() -> String {
            "refused".to_owned()
        }

        async fn commit(&mut self, group: &[String]) -> Result<Vec<String>, GroupFailure> {
            if let Ok(mut groups) = self.groups.lock() {
                groups.push(group.to_vec());
            }
            Ok(group.to_vec())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_holds_one_write_of_a_thread_and_keeps_the_rest_in_order_for_the_next() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = WriteQueue::start([Recorder {
            groups: groups.clone(),
        }]);
        // All queued before the writer first runs (one thread of runtime, no await between).
        let mut queued = Vec::new();
        for op in ["a:1", "a:2", "b:1", "a:3", "b:2", "lease", "c:1"] {
            queued.push(queue.enqueue(op.to_owned()).await.expect("queued"));
        }
        let mut answered = Vec::new();
        for write in queued {
            answered.push(write.committed().await.expect("committed"));
        }
        assert_eq!(
            answered,
            ["a:1", "a:2", "b:1", "a:3", "b:2", "lease", "c:1"],
            "each write gets its own answer"
        );
        let groups = groups.lock().expect("not poisoned").clone();
        assert_eq!(
            groups,
            [
                vec!["a:1", "b:1", "lease", "c:1"],
                vec!["a:2", "b:2"],
                vec!["a:3"],
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn several_writers_each_take_every_write_of_a_thread() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = WriteQueue::start((0..3).map(|_| Recorder {
            groups: groups.clone(),
        }));
        let mut queued = Vec::new();
        for n in 1..=4 {
            for thread in ["a", "b", "c", "d", "e"] {
                queued.push(
                    queue
                        .enqueue(format!("{thread}:{n}"))
                        .await
                        .expect("queued"),
                );
            }
        }
        for write in queued {
            write.committed().await.expect("committed");
        }
        let groups = groups.lock().expect("not poisoned").clone();
        for thread in ["a", "b", "c", "d", "e"] {
            let seen: Vec<&String> = groups
                .iter()
                .flatten()
                .filter(|op| op.starts_with(&format!("{thread}:")))
                .collect();
            let wanted: Vec<String> = (1..=4).map(|n| format!("{thread}:{n}")).collect();
            assert_eq!(
                seen,
                wanted.iter().collect::<Vec<_>>(),
                "in order, once each"
            );
            let with_thread = groups
                .iter()
                .filter(|group| group.iter().any(|op| op.starts_with(&format!("{thread}:"))))
                .count();
            assert_eq!(with_thread, 4, "one write of {thread} per group");
        }
    }

    #[test]
    fn a_threads_consecutive_writes_fold_into_its_last_from_the_version_before_its_first() {
        let group = [
            row("b", 4),
            row("a", 2),
            row("b", 5),
            row("b", 6),
            row("c", 9),
        ];
        let folded = Folded::of(&group).expect("foldable");
        assert!(folded.folds());
        let heads: Vec<(&str, i64, i64)> = folded
            .heads()
            .iter()
            .map(|(r, expected)| (r.thread_id.as_str(), r.version, *expected))
            .collect();
        assert_eq!(heads, [("a", 2, 1), ("b", 6, 3), ("c", 9, 8)]);
        let passed: Vec<i64> = folded.passed().iter().map(|r| r.version).collect();
        assert_eq!(passed, [4, 5]);
        let winners: HashSet<String> = ["b".to_owned()].into();
        let mut won = [false; 5];
        folded.mark(&winners, &mut won);
        assert_eq!(won, [true, false, true, true, false]);

        let once = [row("a", 2), row("b", 7)];
        assert!(!Folded::of(&once).expect("foldable").folds());
    }

    #[test]
    fn writes_the_history_treats_specially_are_not_folded() {
        let gap = [row("a", 2), row("a", 4)];
        assert!(Folded::of(&gap).is_none(), "versions not consecutive");
        let created = [row("a", 1), row("a", 2)];
        let folded = Folded::of(&created).expect("a created thread folds");
        assert_eq!(
            folded.heads()[0].1,
            0,
            "expected at version 0: created by its last"
        );
        let mut closing = row("a", 2);
        closing.closed_turns = Some("[]".to_owned());
        assert!(Folded::of(&[closing, row("a", 3)]).is_none(), "logs turns");
        let mut paused = row("a", 2);
        paused.status = ThreadStatus::PendingUserInput;
        assert!(Folded::of(&[paused, row("a", 3)]).is_none(), "pauses");
        let mut last_closes = row("a", 3);
        last_closes.closed_turns = Some("[]".to_owned());
        assert!(
            Folded::of(&[row("a", 2), last_closes]).is_some(),
            "the last write is written whole, as any head"
        );
    }

    /// A write of the judge's tests: whether it loses its compare-and-set is set beforehand.
    #[derive(Debug, Clone)]
    struct Judged {
        name: &'static str,
        thread: &'static str,
        chain: Option<Chain>,
        loses: bool,
    }

    /// Records what it writes; each write wins or loses as it says.
    struct Judge {
        written: Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl GroupWriter for Judge {
        type Op = Judged;
        type Out = bool;

        fn thread(op: &Judged) -> Option<&str> {
            Some(op.thread)
        }

        fn chain(op: &Judged) -> Option<Chain> {
            op.chain
        }

        fn lost(won: &bool) -> Option<bool> {
            Some(!won)
        }

        fn refused() -> bool {
            false
        }

        async fn commit(&mut self, group: &[Judged]) -> Result<Vec<bool>, GroupFailure> {
            if let Ok(mut written) = self.written.lock() {
                written.extend(group.iter().map(|op| op.name));
            }
            Ok(group.iter().map(|op| !op.loses).collect())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn after_a_chains_write_loses_its_later_writes_lose_unwritten() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = WriteQueue::start([Judge {
            written: written.clone(),
        }]);
        // Two runs answer one thread at once (chains a and b): a's first write wins, b's loses;
        // b's next writes follow a version a's run wrote too, and must not be written.
        let (a, b) = (Some(Chain::start()), Some(Chain::start()));
        let writes = [
            ("a1", a, false),
            ("b1", b, true),
            ("a2", a, false),
            ("b2", b, false),
            ("b3", b, false),
            ("lone", None, false),
        ];
        let mut queued = Vec::new();
        for (name, chain, loses) in writes {
            let op = Judged {
                name,
                thread: "t",
                chain,
                loses,
            };
            queued.push(queue.enqueue(op).await.expect("queued"));
        }
        let mut answers = Vec::new();
        for write in queued {
            answers.push(write.committed().await.expect("answered"));
        }
        assert_eq!(answers, [true, false, true, false, false, true]);
        let written = written.lock().expect("not poisoned").clone();
        assert_eq!(
            written,
            ["a1", "b1", "a2", "lone"],
            "b2 and b3 never written"
        );
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
