//! Group commit (`store/group.rs`) on every backend and PostgreSQL's writers in particular: many
//! threads raced at once still get exactly one winner per version, a group holding two writes of
//! one thread writes both (folded into one head write) and loses both when the thread has moved
//! on meanwhile, every grouped checkpoint is announced to another process, and a
//! writer that loses its connection fails that group's callers and carries on with a new one.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use baton::state::ThreadStatus;
use baton::store::{Notice, Store, StoreError, StoreOptions};
use futures_util::future::join_all;
use sqlx::{Connection, Executor};

use crate::helpers::{ServerProcess, TestPostgres, answer_at, chat_at, eventually, get, thread_of};
use crate::store::{backends, checkpoint, put};

/// A pool of one session on the test database (so `pg_backend_pid()` is always this session).
async fn one_session(pg: &TestPostgres) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url)
        .await
        .expect("a session")
}

/// Writes version `version` of `thread` from `racers` writers at once; how many won.
async fn race(store: &Arc<dyn Store>, thread: &str, version: i64, racers: usize) -> usize {
    let previous =
        (version > 1).then(|| checkpoint(thread, version - 1, ThreadStatus::Processing).state);
    let writes = (0..racers).map(|racer| {
        let (store, previous) = (store.clone(), previous.clone());
        let mut cp = checkpoint(thread, version, ThreadStatus::Processing);
        cp.state.prompt = format!("racer {racer}");
        async move { put(store.as_ref(), &cp, previous.as_ref(), None).await }
    });
    let mut wins = 0;
    for outcome in join_all(writes).await {
        match outcome {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("{thread} v{version}: {e}"),
        }
    }
    wins
}

#[tokio::test]
async fn many_threads_raced_at_once_get_one_winner_per_version() {
    // Four PostgreSQL writers, so groups commit side by side and race each other too.
    let options = StoreOptions {
        pg_writers: 4,
        ..StoreOptions::default()
    };
    for (name, store) in backends(options).await.stores {
        let threads: Vec<String> = (0..24).map(|i| format!("many-{i}")).collect();
        let runs = threads.iter().map(|thread| {
            let store = store.clone();
            async move {
                let mut wins = Vec::new();
                wins.push(race(&store, thread, 1, 3).await);
                for version in 2..=4 {
                    wins.push(race(&store, thread, version, 4).await);
                }
                wins
            }
        });
        for (thread, wins) in threads.iter().zip(join_all(runs).await) {
            assert_eq!(wins, [1, 1, 1, 1], "{name}: {thread}, wins per version");
            let head = store.get_checkpoint(thread).await.expect(name);
            assert_eq!(head.map(|cp| cp.version), Some(4), "{name}: {thread}");
            let kept: Vec<i64> = store
                .history(thread)
                .await
                .expect(name)
                .iter()
                .map(|e| e.version)
                .collect();
            assert_eq!(
                kept,
                [4, 3, 2, 1],
                "{name}: {thread}, one entry per version"
            );
        }
    }
}

/// A PostgreSQL store with a single checkpoint writer, so what one group holds is up to the test.
async fn one_writer_store(pg: &TestPostgres) -> std::sync::Arc<dyn baton::store::Store> {
    let options = StoreOptions {
        pg_writers: 1,
        ..StoreOptions::default()
    };
    baton::store::connect(&pg.url, &options)
        .await
        .expect("postgres")
}

#[tokio::test]
async fn a_group_with_two_writes_of_one_thread_writes_both_in_order() {
    let pg = TestPostgres::create().await;
    let store = one_writer_store(&pg).await;
    let [v1, v2, v3] = [1, 2, 3].map(|v| checkpoint("twice", v, ThreadStatus::Processing));
    put(store.as_ref(), &v1, None, None).await.expect("v1");
    // Hold the blocker's row, so the one writer waits inside its next group...
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.expect("admin");
    let blocked = block_the_writer(&pg, &store, &mut admin).await;
    // ...queue versions 2 and 3 of one thread behind it (polled in this order, each queued at
    // its first poll), then let the writer go: its next group holds both.
    let (second, third, ()) = tokio::join!(
        biased;
        put(store.as_ref(), &v2, Some(&v1.state), None),
        put(store.as_ref(), &v3, Some(&v2.state), None),
        async {
            admin.execute("COMMIT").await.expect("lock released");
        },
    );
    second.expect("v2 written in the group, to the history only");
    third.expect("v3 written in the group, as the head from v1");
    blocked.await.expect("joined").expect("blocker v2");
    let kept: Vec<i64> = store
        .history("twice")
        .await
        .expect("history")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(kept, [3, 2, 1]);
    let head = store.get_checkpoint("twice").await.expect("read");
    assert_eq!(head, Some(v3));
}

/// Locks the `blocker` thread's row (written at version 1) from `admin` and waits until the one
/// writer of `store` is stuck on it, writing `blocker` version 2; the returned task ends once
/// the lock is released.
async fn block_the_writer(
    pg: &TestPostgres,
    store: &Arc<dyn Store>,
    admin: &mut sqlx::PgConnection,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let [blocker_v1, blocker_v2] =
        [1, 2].map(|v| checkpoint("blocker", v, ThreadStatus::Processing));
    put(store.as_ref(), &blocker_v1, None, None)
        .await
        .expect("blocker v1");
    admin.execute("BEGIN").await.expect("begin");
    admin
        .execute("SELECT 1 FROM threads WHERE thread_id = 'blocker' FOR UPDATE")
        .await
        .expect("row locked");
    let blocked = tokio::spawn({
        let store = store.clone();
        async move { put(store.as_ref(), &blocker_v2, Some(&blocker_v1.state), None).await }
    });
    let watcher = one_session(pg).await;
    eventually(
        "the writer waiting on the row lock",
        Duration::from_secs(10),
        || {
            let watcher = watcher.clone();
            async move {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&watcher)
                .await
                .expect("activity");
                (waiting > 0).then_some(())
            }
        },
    )
    .await;
    blocked
}

#[tokio::test]
async fn a_folded_group_whose_thread_moved_on_loses_every_write_and_records_none() {
    let pg = TestPostgres::create().await;
    let store = one_writer_store(&pg).await;
    let other = one_writer_store(&pg).await;
    let [v1, v2, v3] = [1, 2, 3].map(|v| checkpoint("moved", v, ThreadStatus::Processing));
    put(store.as_ref(), &v1, None, None).await.expect("v1");
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.expect("admin");
    let blocked = block_the_writer(&pg, &store, &mut admin).await;
    // Versions 2 and 3 queue behind the blocked group, into one group (folded: one head write
    // from version 1)...
    let mut theirs = checkpoint("moved", 2, ThreadStatus::Processing);
    theirs.state.prompt = "another process's version 2".to_owned();
    let (second, third, ()) = tokio::join!(
        biased;
        put(store.as_ref(), &v2, Some(&v1.state), None),
        put(store.as_ref(), &v3, Some(&v2.state), None),
        async {
            // ...while another process writes its own version 2 first.
            put(other.as_ref(), &theirs, Some(&v1.state), None)
                .await
                .expect("the other process's v2");
            admin.execute("COMMIT").await.expect("lock released");
        },
    );
    blocked.await.expect("joined").expect("blocker v2");
    for (version, outcome) in [(2, second), (3, third)] {
        assert!(
            matches!(outcome, Err(StoreError::Conflict { .. })),
            "v{version} lost its compare-and-set: {outcome:?}"
        );
    }
    let kept: Vec<(i64, String)> = sqlx::query_as(
        "SELECT version, writer FROM checkpoints WHERE thread_id = 'moved' ORDER BY version",
    )
    .fetch_all(&mut admin)
    .await
    .expect("history");
    assert_eq!(
        kept.len(),
        2,
        "v1 and the other's v2, nothing of the folded group: {kept:?}"
    );
    let head = store.get_checkpoint("moved").await.expect("read");
    assert_eq!(head, Some(theirs));
}

/// A server on a new SQLite file and one on a new PostgreSQL database (the file's directory and
/// the database live as long as the first two values).
async fn sqlite_and_postgres_servers() -> (tempfile::TempDir, TestPostgres, [ServerProcess; 2]) {
    let (dir, db) = crate::helpers::temp_db();
    let pg = TestPostgres::create().await;
    let servers = [
        ServerProcess::start(&db, &[]),
        ServerProcess::start_url(&pg.url, &[]),
    ];
    (dir, pg, servers)
}

/// The thread's history holds versions 1 to its last, each once: nothing lost, nothing doubled.
async fn assert_history_has_every_version_once(base: &str, thread: &str, round: usize) {
    let (_, history) = get(base, &format!("/api/threads/{thread}/history")).await;
    let mut versions: Vec<i64> = history
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["version"].as_i64())
        .collect();
    versions.sort_unstable();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(
        versions, expected,
        "round {round}: one version each, none lost"
    );
}

#[tokio::test]
async fn racing_answers_to_one_question_complete_once_and_refuse_the_rest() {
    // An answer's checkpoint is queued and its run goes on while it commits: the losers' runs
    // must stop at their first wait, answer 409, and leave nothing of theirs behind.
    let (_dir, _pg, servers) = sqlite_and_postgres_servers().await;
    for server in servers {
        let base = server.base.as_str();
        for round in 0..3 {
            let (code, asked) = chat_at(base, "Help me analyze data but I need guidance").await;
            assert_eq!(code, 200, "{asked}");
            let thread = thread_of(&asked);
            let answers = [
                "sales data",
                "web traffic",
                "survey results",
                "stock prices",
            ];
            let outcomes = join_all(
                answers
                    .iter()
                    .map(|answer| answer_at(base, &thread, answer)),
            )
            .await;
            let won: Vec<&(u16, serde_json::Value)> =
                outcomes.iter().filter(|(code, _)| *code == 200).collect();
            assert_eq!(won.len(), 1, "round {round}: one answer wins: {outcomes:?}");
            assert_eq!(won[0].1["status"], "completed", "{}", won[0].1);
            for (code, body) in &outcomes {
                assert!(matches!(code, 200 | 409), "round {round}: {code} {body}");
            }
            assert_history_has_every_version_once(base, &thread, round).await;
            let (_, status) = get(base, &format!("/api/chat/status/{thread}")).await;
            assert_eq!(status["status"], "completed");
            assert_eq!(
                status["final_response"], won[0].1["final_response"],
                "the winner's run is the thread's"
            );
        }
    }
}

#[tokio::test]
async fn racing_first_prompts_on_one_new_thread_id_lose_nothing() {
    // A new thread's first checkpoint is queued and its run goes on while it commits: of several
    // first prompts naming one new thread, each either becomes a turn of it (the first creates
    // it, a later one may find it finished and start a new turn) or is refused with 409; nothing
    // half-written is left behind.
    let (_dir, _pg, servers) = sqlite_and_postgres_servers().await;
    for server in servers {
        let base = server.base.as_str();
        for round in 0..3 {
            let thread = format!("raced-{round}");
            let prompts = ["What's the weather in Paris", "Convert 100 USD to EUR"];
            let outcomes = join_all(prompts.iter().cycle().take(4).map(|prompt| {
                crate::helpers::post(
                    base,
                    "/api/chat",
                    serde_json::json!({"prompt": prompt, "thread_id": thread}),
                )
            }))
            .await;
            let mut turns = 0;
            for (code, body) in &outcomes {
                match code {
                    200 => {
                        assert_eq!(body["status"], "completed", "{body}");
                        turns += 1;
                    }
                    409 => {}
                    other => panic!("round {round}: {other} {body}"),
                }
            }
            assert!(
                turns >= 1,
                "round {round}: the thread was created: {outcomes:?}"
            );
            let (code, status) = get(base, &format!("/api/chat/status/{thread}")).await;
            assert_eq!(code, 200, "{status}");
            assert_eq!(status["status"], "completed", "{status}");
            let (_, logged) = get(base, &format!("/api/threads/{thread}/turns")).await;
            assert_eq!(
                logged["earlier_turns"].as_u64(),
                Some(turns - 1),
                "round {round}: one turn per prompt answered 200: {logged}"
            );
            assert_history_has_every_version_once(base, &thread, round).await;
        }
    }
}

#[tokio::test]
async fn every_grouped_checkpoint_is_announced_to_another_process() {
    let pg = TestPostgres::create().await;
    let listener = baton::store::connect(&pg.url, &StoreOptions::default())
        .await
        .expect("postgres");
    let mut notices = listener
        .watch()
        .await
        .expect("listen")
        .expect("PostgreSQL announces");
    let writer = ServerProcess::start_url(&pg.url, &["--pg-writers", "3"]);
    let base = writer.base.as_str();
    let asked =
        join_all((0..16).map(|_| chat_at(base, "Help me analyze data but I need guidance"))).await;
    let threads: Vec<String> = asked.iter().map(|(_, r)| thread_of(r)).collect();
    let answered = join_all(
        threads
            .iter()
            .map(|t| answer_at(base, t, "I want to analyze sales data")),
    )
    .await;
    for (code, done) in &answered {
        assert_eq!(*code, 200, "{done}");
        assert_eq!(done["status"], "completed", "{done}");
    }
    let mut expected: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for thread in &threads {
        let (_, history) = get(base, &format!("/api/threads/{thread}/history")).await;
        let versions = history
            .as_array()
            .expect("history")
            .iter()
            .filter_map(|e| e["version"].as_i64())
            .collect();
        expected.insert(thread.clone(), versions);
    }
    let mut announced: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let wanted: usize = expected.values().map(BTreeSet::len).sum();
    let mut seen = 0;
    while seen < wanted {
        let notice = tokio::time::timeout(Duration::from_secs(10), notices.recv())
            .await
            .unwrap_or_else(|_| panic!("{seen} of {wanted} checkpoints announced: {announced:?}"))
            .expect("listening");
        if let Notice::Checkpoint(event) = notice
            && expected.contains_key(&event.thread_id)
        {
            announced
                .entry(event.thread_id)
                .or_default()
                .push(event.version);
            seen += 1;
        }
    }
    for (thread, versions) in &expected {
        let told = announced.get(thread).cloned().unwrap_or_default();
        let mut in_order = told.clone();
        in_order.sort_unstable();
        assert_eq!(told, in_order, "{thread}: announced in commit order");
        assert_eq!(
            told,
            versions.iter().copied().collect::<Vec<_>>(),
            "{thread}: each committed version once"
        );
    }
}

#[tokio::test]
async fn a_lost_connection_fails_its_group_and_the_writer_reconnects() {
    let pg = TestPostgres::create().await;
    let store = one_writer_store(&pg).await;
    let [v1, v2] = [1, 2].map(|v| checkpoint("lost", v, ThreadStatus::Processing));
    put(store.as_ref(), &v1, None, None).await.expect("v1");

    // Every other session of the database ends, the writer's included.
    let admin = one_session(&pg).await;
    let others =
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let ended: Vec<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) {others}"
    )))
    .fetch_all(&admin)
    .await
    .expect("terminated");
    assert!(!ended.is_empty(), "the writer had a session");
    eventually("the sessions gone", Duration::from_secs(10), || {
        let admin = admin.clone();
        let count = format!("SELECT count(*) {others}");
        async move {
            let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                .fetch_one(&admin)
                .await
                .expect("count");
            (left == 0).then_some(())
        }
    })
    .await;

    let lost = put(store.as_ref(), &v2, Some(&v1.state), None).await;
    let Err(error) = lost else {
        panic!("a write on a dead connection succeeded");
    };
    assert!(
        matches!(error, StoreError::ConnectionLost(_)),
        "a clear error: {error}"
    );
    assert!(error.to_string().contains("connection lost"), "{error}");
    assert!(error.source().is_some(), "keeps the driver's error");

    put(store.as_ref(), &v2, Some(&v1.state), None)
        .await
        .expect("the writer goes on with a new connection");
    let head = store.get_checkpoint("lost").await.expect("read");
    assert_eq!(head, Some(v2));
}

#[tokio::test]
async fn a_big_group_is_recorded_and_announced_per_statement() {
    use baton::state::{Node, WebhookUrl};
    use baton::store::{Lease, now_ms};

    let pg = TestPostgres::create().await;
    let options = StoreOptions {
        pg_writers: 1,
        retention: 2,
        ..StoreOptions::default()
    };
    let store = baton::store::connect(&pg.url, &options)
        .await
        .expect("postgres");
    let mut raw = sqlx::postgres::PgListener::connect(&pg.url)
        .await
        .expect("listener");
    raw.listen("baton_events").await.expect("listen");

    // Long ids, so one statement's announcements need several notifications.
    let threads: Vec<String> = (0..300)
        .map(|i| format!("{}-{i:03}", "g".repeat(110)))
        .collect();
    let at = |thread: &str, version: i64| {
        let mut cp = checkpoint(thread, version, ThreadStatus::Processing);
        if version == 3 {
            cp.state.status = ThreadStatus::Completed;
            cp.next = Node::End;
            cp.state.webhook = Some(WebhookUrl::checked(format!("http://127.0.0.1:9/{thread}")));
        }
        cp
    };
    for version in 1..=3 {
        let writes = threads.iter().map(|thread| {
            let store = store.clone();
            let (cp, previous) = (
                at(thread, version),
                (version > 1).then(|| at(thread, version - 1)),
            );
            async move {
                put(
                    store.as_ref(),
                    &cp,
                    previous.as_ref().map(|p| &p.state),
                    None,
                )
                .await
            }
        });
        for (thread, written) in threads.iter().zip(join_all(writes).await) {
            written.unwrap_or_else(|e| panic!("{thread} v{version}: {e}"));
        }
    }
    // A lease renewal changes a row without a new version: no history, no announcement.
    let lease = Lease {
        worker: baton::state::WorkerId::new("test-writer"),
        expires_at: now_ms() + 60_000,
    };
    let runner = checkpoint("runner", 1, ThreadStatus::Processing);
    put(store.as_ref(), &runner, None, Some(&lease))
        .await
        .expect("runner v1");
    assert!(store.renew_lease("runner", &lease).await.expect("renewal"));
    let kept = store.history("runner").await.expect("history");
    assert_eq!(kept.len(), 1, "a renewal is no checkpoint: {kept:?}");

    let wanted = threads.len() * 3 + 1;
    let mut announced: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let (mut seen, mut notifications) = (0, 0);
    while seen < wanted {
        let notification = tokio::time::timeout(Duration::from_secs(10), raw.recv())
            .await
            .unwrap_or_else(|_| panic!("{seen} of {wanted} checkpoints announced"))
            .expect("listening");
        let payload = notification.payload();
        assert!(
            payload.len() < 8000,
            "under PostgreSQL's limit: {}",
            payload.len()
        );
        let events: Vec<serde_json::Value> =
            serde_json::from_str(payload).expect("a JSON array of checkpoints");
        notifications += 1;
        for event in events {
            let thread = event["thread_id"].as_str().expect("thread").to_owned();
            announced
                .entry(thread)
                .or_default()
                .push(event["version"].as_i64().expect("version"));
            seen += 1;
        }
    }
    assert!(
        notifications < wanted / 10,
        "{notifications} notifications for {wanted} checkpoints"
    );
    assert_eq!(announced.get("runner").map(Vec::as_slice), Some(&[1][..]));
    for thread in &threads {
        assert_eq!(
            announced.get(thread).map(Vec::as_slice),
            Some(&[1, 2, 3][..]),
            "{thread}"
        );
        let kept: Vec<i64> = store
            .history(thread)
            .await
            .expect("history")
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(kept, [3, 2], "{thread}: retention 2 pruned version 1");
        let deliveries = store.deliveries(thread).await.expect("deliveries");
        let enqueued: Vec<(i64, &str)> = deliveries
            .iter()
            .map(|d| (d.version, d.url.as_str()))
            .collect();
        let url = format!("http://127.0.0.1:9/{thread}");
        assert_eq!(
            enqueued,
            [(3, url.as_str())],
            "{thread}: the completed checkpoint's webhook"
        );
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), raw.recv()).await;
    assert!(quiet.is_err(), "nothing more announced: {quiet:?}");
}
