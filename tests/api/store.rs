//! The store contract, run against every backend (PostgreSQL on the test server, see
//! `TestPostgres`): compare-and-set on versions, races, history, leases, agent cards.

use std::sync::Arc;

use baton::agents::builtin::demo_cards;
use baton::card::AgentCard;
use baton::state::{Node, ThreadState, ThreadStatus, WorkerId};
use baton::store::memory::MemoryStore;
use baton::store::sqlite::SqliteStore;
use baton::store::{
    Checkpoint, CheckpointWrite, Lease, Origin, Store, StoreError, StoreOptions, now_ms,
};

use crate::helpers::TestPostgres;

/// A checkpoint of `thread` at `version` (step = version), its prompt naming the version.
pub(crate) fn checkpoint(thread: &str, version: i64, status: ThreadStatus) -> Checkpoint {
    let mut state = ThreadState::new_turn(thread.into(), format!("prompt v{version}"), 5);
    state.status = status;
    Checkpoint {
        thread_id: thread.into(),
        version,
        step: version,
        next: Node::ParsePrompt,
        state,
    }
}

/// Writes `cp` as the test's writer would.
pub(crate) async fn put(
    store: &dyn Store,
    cp: &Checkpoint,
    previous: Option<&ThreadState>,
    lease: Option<&Lease>,
) -> Result<(), StoreError> {
    put_with(store, cp, previous, lease, &[], None).await
}

/// Writes `cp` with everything a write can carry, as the test's writer.
async fn put_with(
    store: &dyn Store,
    cp: &Checkpoint,
    previous: Option<&ThreadState>,
    lease: Option<&Lease>,
    closed: &[baton::state::Turn],
    turns_from: Option<&str>,
) -> Result<(), StoreError> {
    store
        .put_checkpoint(&CheckpointWrite {
            checkpoint: cp,
            node: Origin::Start,
            previous,
            worker: &WorkerId::new("test-writer"),
            lease,
            closed,
            turns_from,
            chain: None,
        })
        .await
}

/// Every backend under one set of options, with what keeps them alive.
pub(crate) struct Backends {
    pub stores: Vec<(&'static str, Arc<dyn Store>)>,
    _dir: tempfile::TempDir,
    _pg: TestPostgres,
}

/// Memory, SQLite (a temp file) and PostgreSQL (a fresh database) under `options`.
pub(crate) async fn backends(options: StoreOptions) -> Backends {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.db").display().to_string();
    let sqlite = SqliteStore::open(&path, &options).await.expect("sqlite");
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(MemoryStore::new(options.retention))),
        ("sqlite", Arc::new(sqlite)),
    ];
    let pg = TestPostgres::create().await;
    stores.push((
        "postgres",
        baton::store::connect(&pg.url, &options)
            .await
            .expect("postgres"),
    ));
    Backends {
        stores,
        _dir: dir,
        _pg: pg,
    }
}

/// Writes `checkpoint(thread, version, status)` with no previous state and no lease.
async fn write(
    store: &dyn Store,
    thread: &str,
    version: i64,
    status: ThreadStatus,
) -> Result<(), StoreError> {
    put(store, &checkpoint(thread, version, status), None, None).await
}

fn is_conflict(r: Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

#[tokio::test]
async fn versions_are_compare_and_set() {
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let store = store.as_ref();
        write(store, "a", 1, ThreadStatus::Processing)
            .await
            .expect(name);
        assert!(
            is_conflict(write(store, "a", 1, ThreadStatus::Processing).await),
            "{name}: create twice"
        );
        write(store, "a", 2, ThreadStatus::Processing)
            .await
            .expect(name);
        for (thread, version, case) in
            [("a", 2, "stale"), ("a", 4, "skip"), ("ghost", 3, "missing")]
        {
            assert!(
                is_conflict(write(store, thread, version, ThreadStatus::Completed).await),
                "{name}: {case}"
            );
        }
        assert!(
            store.get_checkpoint("ghost").await.expect(name).is_none(),
            "{name}: no ghost row"
        );
        let back = store
            .get_checkpoint("a")
            .await
            .expect(name)
            .expect("stored");
        assert_eq!(back, checkpoint("a", 2, ThreadStatus::Processing), "{name}");
    }
}

#[tokio::test]
async fn concurrent_writers_of_one_version_one_wins() {
    for (name, store) in backends(StoreOptions::default()).await.stores {
        write(store.as_ref(), "race", 1, ThreadStatus::PendingUserInput)
            .await
            .expect(name);
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut cp = checkpoint("race", 2, ThreadStatus::Processing);
                    cp.state.prompt = format!("writer {i}");
                    put(store.as_ref(), &cp, None, None).await
                })
            })
            .collect();
        let mut wins = 0;
        for w in writers {
            match w.await.expect("joined") {
                Ok(()) => wins += 1,
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!(wins, 1, "{name}");
        // Many threads written at once all land (the SQLite writer groups them).
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    write(
                        store.as_ref(),
                        &format!("t{i}"),
                        1,
                        ThreadStatus::Processing,
                    )
                    .await
                })
            })
            .collect();
        for w in writers {
            w.await.expect("joined").expect(name);
        }
        assert_eq!(
            store.expired_runs(now_ms()).await.expect(name).len(),
            65,
            "{name}: 64 new + the raced one, none leased"
        );
    }
}

#[tokio::test]
async fn history_rebuilds_past_checkpoints_within_retention() {
    let options = StoreOptions {
        retention: 5,
        ..StoreOptions::default()
    };
    for (name, store) in backends(options).await.stores {
        let store = store.as_ref();
        let mut versions = Vec::new();
        let mut previous: Option<Checkpoint> = None;
        for v in 1..=8 {
            let mut cp = checkpoint("h", v, ThreadStatus::Processing);
            cp.state.earlier_turns = usize::try_from(v).expect("small");
            cp.state.final_response = (v % 2 == 0).then(|| format!("answer {v}"));
            put(store, &cp, previous.as_ref().map(|p| &p.state), None)
                .await
                .expect(name);
            versions.push(cp.clone());
            previous = Some(cp);
        }
        let history = store.history("h").await.expect(name);
        let kept: Vec<i64> = history.iter().map(|e| e.version).collect();
        assert_eq!(kept, [8, 7, 6, 5, 4], "{name}: newest first, 5 kept");
        assert_eq!(history[0].worker.as_str(), "test-writer");
        for cp in &versions[3..] {
            let back = store
                .checkpoint_at("h", cp.version)
                .await
                .expect(name)
                .expect("kept");
            assert_eq!(&back, cp, "{name}: version {}", cp.version);
        }
        assert!(
            store.checkpoint_at("h", 2).await.expect(name).is_none(),
            "{name}: pruned"
        );
        assert!(store.stored_bytes("h").await.expect(name) > 0);
    }
}

#[tokio::test]
async fn leases_expire_and_renew_only_for_their_owner() {
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let store = store.as_ref();
        let mine = Lease {
            worker: WorkerId::new("me"),
            expires_at: now_ms() + 60_000,
        };
        put(
            store,
            &checkpoint("l", 1, ThreadStatus::Processing),
            None,
            Some(&mine),
        )
        .await
        .expect(name);
        assert!(
            store.expired_runs(now_ms()).await.expect(name).is_empty(),
            "{name}: leased"
        );
        assert_eq!(
            store.expired_runs(now_ms() + 120_000).await.expect(name),
            ["l"],
            "{name}: expired later"
        );
        let theirs = Lease {
            worker: WorkerId::new("them"),
            expires_at: now_ms() + 500_000,
        };
        assert!(
            !store.renew_lease("l", &theirs).await.expect(name),
            "{name}: not theirs"
        );
        let renewed = Lease {
            worker: WorkerId::new("me"),
            expires_at: now_ms() + 300_000,
        };
        assert!(
            store.renew_lease("l", &renewed).await.expect(name),
            "{name}: mine"
        );
        assert!(
            store
                .expired_runs(now_ms() + 120_000)
                .await
                .expect(name)
                .is_empty(),
            "{name}: renewed"
        );
        // A finished run holds no lease and is never taken over.
        write(store, "l", 2, ThreadStatus::Completed)
            .await
            .expect(name);
        assert!(
            store.expired_runs(i64::MAX).await.expect(name).is_empty(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn agent_cards_are_kept() {
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let cards = demo_cards().expect("cards");
        for card in &cards {
            store.put_agent(card).await.expect(name);
        }
        let mut changed = cards[0].clone();
        changed.rating = 1.5;
        store.put_agent(&changed).await.expect(name);
        let rows = store.agent_rows(None, 1000).await.expect(name);
        let stored: Vec<AgentCard> = rows
            .iter()
            .map(|r| serde_json::from_str(&r.json).expect(name))
            .collect();
        assert_eq!(stored.len(), cards.len(), "{name}");
        assert!(stored.contains(&changed), "{name}");
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert!(
            ids.is_sorted() && ids.len() == cards.len(),
            "{name}: {ids:?}"
        );
        let first = store.agent_rows(None, 3).await.expect(name);
        let rest = store
            .agent_rows(Some(&first[2].id), 1000)
            .await
            .expect(name);
        assert_eq!([first, rest].concat(), rows, "{name}: batches after an id");
        let row = rows.iter().find(|r| r.id == changed.id).expect(name);
        let parsed: AgentCard = serde_json::from_str(&row.json).expect(name);
        assert_eq!(parsed, changed, "{name}");
        assert_eq!(
            store.agent(&changed.id).await.expect(name),
            Some(changed.clone()),
            "{name}"
        );
        assert_eq!(store.agent("nobody").await.expect(name), None, "{name}");
        assert!(store.delete_agent(&changed.id).await.expect(name), "{name}");
        assert!(
            !store.delete_agent(&changed.id).await.expect(name),
            "{name}"
        );
        assert_eq!(
            store.agent_rows(None, 1000).await.expect(name).len(),
            cards.len() - 1,
            "{name}"
        );
        store.ping().await.expect(name);
    }
}

#[tokio::test]
async fn ratings_are_added_in_the_store_and_racing_ones_all_count() {
    const RACING: usize = 40;
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let cards = demo_cards().expect("cards");
        let mut rated = cards[0].clone();
        (rated.rating, rated.rating_count) = (4.0, 0);
        store.put_agent(&rated).await.expect(name);
        // A rating given at registration counts as the first one.
        let after = store
            .rate_agent(&rated.id, 2.0)
            .await
            .expect(name)
            .expect("a card")
            .card;
        assert_eq!((after.rating, after.rating_count), (3.0, 2), "{name}");
        let mut expected = rated.clone();
        (expected.rating, expected.rating_count) = (3.0, 2);
        assert_eq!(after, expected, "{name}: the rest of the card is kept");
        assert_eq!(
            store.agent(&rated.id).await.expect(name),
            Some(after),
            "{name}"
        );
        assert_eq!(
            store.rate_agent("nobody", 3.0).await.expect(name),
            None,
            "{name}"
        );

        let mut fresh = cards[1].clone();
        (fresh.rating, fresh.rating_count) = (0.0, 0);
        store.put_agent(&fresh).await.expect(name);
        let racing = (0..RACING).map(|i| {
            let (store, id) = (store.clone(), fresh.id.clone());
            async move {
                let rating = if i % 2 == 0 { 1.0 } else { 4.0 };
                store.rate_agent(&id, rating).await
            }
        });
        for result in futures_util::future::join_all(racing).await {
            result.expect(name).expect("a card");
        }
        let settled = store.agent(&fresh.id).await.expect(name).expect("a card");
        assert_eq!(settled.rating_count, RACING as u64, "{name}: none lost");
        assert!(
            (settled.rating - 2.5).abs() < 1e-9,
            "{name}: {}",
            settled.rating
        );
    }
}

fn turn(prompt: &str, opened_by: Option<&str>) -> baton::state::Turn {
    baton::state::Turn {
        prompt: prompt.into(),
        answers: Vec::new(),
        final_response: Some(format!("answer to {prompt}")),
        opened_by: opened_by.map(str::to_owned),
    }
}

/// Writes `cp` closing `closed` (and, on a fork's first write, copying `from`'s turns).
async fn put_closing(
    store: &dyn Store,
    cp: &Checkpoint,
    previous: Option<&ThreadState>,
    closed: &[baton::state::Turn],
    turns_from: Option<&str>,
) -> Result<(), StoreError> {
    put_with(store, cp, previous, None, closed, turns_from).await
}

fn prompts(turns: &[baton::store::LoggedTurn]) -> Vec<(usize, &str)> {
    turns
        .iter()
        .map(|t| (t.turn, t.body.prompt.as_str()))
        .collect()
}

#[tokio::test]
async fn the_turn_log_appends_with_its_checkpoint_copies_on_fork_and_goes_with_the_thread() {
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let store = store.as_ref();
        let v1 = checkpoint("log", 1, ThreadStatus::Completed);
        put_closing(store, &v1, None, &[], None).await.expect(name);
        assert!(store.turns("log", 0..10).await.expect(name).is_empty());

        // Version 2 closes turn 0.
        let mut v2 = checkpoint("log", 2, ThreadStatus::Completed);
        v2.state.earlier_turns = 1;
        let first = [turn("zero", Some("m0"))];
        put_closing(store, &v2, Some(&v1.state), &first, None)
            .await
            .expect(name);
        // A write that loses its compare-and-set appends nothing.
        let mut stale = checkpoint("log", 2, ThreadStatus::Completed);
        stale.state.earlier_turns = 2;
        let lost = put_closing(store, &stale, None, &[turn("lost", None)], None).await;
        assert!(matches!(lost, Err(StoreError::Conflict { .. })), "{name}");
        // Version 3 closes two at once (a state an older Baton wrote gives up all of its turns).
        let mut v3 = checkpoint("log", 3, ThreadStatus::Completed);
        v3.state.earlier_turns = 3;
        let two = [turn("one", None), turn("two", Some("m2"))];
        put_closing(store, &v3, Some(&v2.state), &two, None)
            .await
            .expect(name);

        let all = store.turns("log", 0..10).await.expect(name);
        assert_eq!(
            prompts(&all),
            [(0, "zero"), (1, "one"), (2, "two")],
            "{name}"
        );
        assert_eq!(all[0].body, first[0], "{name}: stored as written");
        let middle = store.turns("log", 1..2).await.expect(name);
        assert_eq!(prompts(&middle), [(1, "one")], "{name}");
        assert_eq!(
            store.turn_opened_by("log", "m2").await.expect(name),
            Some(2)
        );
        assert_eq!(
            store.turn_opened_by("log", "m0").await.expect(name),
            Some(0)
        );
        assert_eq!(
            store.turn_opened_by("log", "other").await.expect(name),
            None
        );
        assert_eq!(
            store.turn_opened_by("nothing", "m0").await.expect(name),
            None
        );

        // A fork at a version with 2 earlier turns that closes one of its own: origin's 0 and
        // 1, then its own 2 (not the origin's).
        let mut fork = checkpoint("fork", 1, ThreadStatus::Completed);
        fork.state.earlier_turns = 3;
        put_closing(store, &fork, None, &[turn("own", None)], Some("log"))
            .await
            .expect(name);
        let forked = store.turns("fork", 0..10).await.expect(name);
        assert_eq!(
            prompts(&forked),
            [(0, "zero"), (1, "one"), (2, "own")],
            "{name}"
        );
        assert_eq!(
            store.turn_opened_by("fork", "m0").await.expect(name),
            Some(0)
        );

        let with_log = store.stored_bytes("log").await.expect(name);
        assert!(with_log > 0, "{name}");
        assert!(
            store.delete_thread("log", 3, now_ms()).await.expect(name),
            "{name}"
        );
        assert!(
            store.turns("log", 0..10).await.expect(name).is_empty(),
            "{name}: the log goes with the thread"
        );
        assert_eq!(store.turn_opened_by("log", "m0").await.expect(name), None);
        assert_eq!(
            store.turns("fork", 0..10).await.expect(name).len(),
            3,
            "{name}"
        );
    }
}

/// A head state written by a Baton before the turn log (its earlier turns inside it, as
/// `history`) loads, is read as it is, and gives its turns to the log on its next write.
#[tokio::test]
async fn an_old_state_with_its_turns_inside_loads_and_moves_them_out_on_its_next_write() {
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let old: ThreadState = serde_json::from_value(serde_json::json!({
            "thread_id": "old", "status": "completed", "prompt": "What's the weather in Oslo",
            "max_results": 2, "final_response": "Cold.", "error": null,
            "history": [
                {"prompt": "What's the weather in Rome", "answers": [], "final_response": "Warm."},
                {"prompt": "What's the weather in Nice", "answers": [],
                 "final_response": "Mild.", "opened_by": "m-old"}]
        }))
        .expect("the old shape loads");
        // Written as the previous version did: the state whole, turns and all.
        let written = Checkpoint {
            thread_id: "old".into(),
            version: 1,
            step: 20,
            next: Node::End,
            state: old.clone(),
        };
        put(store.as_ref(), &written, None, None).await.expect(name);
        let engine = baton::app::engine_over(store.clone(), &baton::config::Settings::default())
            .await
            .expect("engine");
        let head = engine.checkpoint("old").await.expect(name);
        assert_eq!(head.state, old, "{name}: read as it is");
        assert_eq!(head.state.turn_index(), 2);
        let earlier = engine.earlier_turns(&head.state, 0..2).await.expect(name);
        assert_eq!(
            prompts(&earlier),
            [
                (0, "What's the weather in Rome"),
                (1, "What's the weather in Nice")
            ],
            "{name}"
        );
        assert_eq!(
            engine
                .turn_opened_by(&head.state, "m-old")
                .await
                .expect(name),
            Some(1)
        );

        let view = engine
            .start(baton::engine::StartRequest {
                thread_id: Some("old".into()),
                prompt: "What's the weather in Paris".into(),
                max_results: 2,
                opened_by: None,
                webhook: None,
                access: baton::access::Access::Open,
            })
            .await
            .expect(name);
        assert_eq!(view.status, ThreadStatus::Completed, "{name}");
        let head = engine.checkpoint("old").await.expect(name);
        assert_eq!(
            (head.state.earlier_turns, head.state.unlogged_turns.len()),
            (3, 0),
            "{name}: moved out"
        );
        let logged = store.turns("old", 0..10).await.expect(name);
        assert_eq!(
            prompts(&logged),
            [
                (0, "What's the weather in Rome"),
                (1, "What's the weather in Nice"),
                (2, "What's the weather in Oslo")
            ],
            "{name}: each once, in order"
        );
        assert_eq!(
            store.turn_opened_by("old", "m-old").await.expect(name),
            Some(1)
        );
        let summary = engine
            .threads(&baton::store::ThreadQuery {
                status: None,
                owner: None,
                after: None,
                limit: 10,
            })
            .await
            .expect(name);
        assert_eq!(
            (summary[0].turns, summary[0].prompt.as_str()),
            (4, "What's the weather in Rome"),
            "{name}"
        );
        // The version before the move is rebuilt in the shape it was written in.
        let before = store
            .checkpoint_at("old", 1)
            .await
            .expect(name)
            .expect("kept");
        assert_eq!(before.state, old, "{name}");
    }
}

#[tokio::test]
async fn every_card_write_sets_a_new_revision_and_snapshots_are_kept_in_parts() {
    use baton::store::snapshot_parts;
    for (name, store) in backends(StoreOptions::default()).await.stores {
        let cards = demo_cards().expect("cards");
        let mut written = Vec::new();
        for card in &cards {
            written.push(store.put_agent(card).await.expect(name));
        }
        let listed = store.agent_revisions(None, 1000).await.expect(name);
        let ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
        assert!(ids.is_sorted() && ids.len() == cards.len(), "{name}");
        let first = &cards[0];
        let revision_of = |listed: &[(String, Option<i64>)], id: &str| {
            listed.iter().find(|(i, _)| i == id).and_then(|(_, r)| *r)
        };
        assert_eq!(revision_of(&listed, &first.id), Some(written[0]), "{name}");
        let again = store.put_agent(first).await.expect(name);
        assert_ne!(again, written[0], "{name}: a rewrite is a new revision");
        store.rate_agent(&first.id, 4.0).await.expect(name);
        let after_rating = store.agent_revisions(None, 1000).await.expect(name);
        let rated = revision_of(&after_rating, &first.id).expect("a revision");
        assert!(rated != again && rated != 0, "{name}: a rating is a write");
        let rows = store
            .agent_rows_of(&[first.id.clone(), "nobody".to_owned()])
            .await
            .expect(name);
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(rows[0].revision, Some(rated), "{name}");
        let page = store
            .agent_revisions(Some(&listed[1].0), 2)
            .await
            .expect(name);
        assert_eq!(
            page,
            after_rating[2..4].to_vec(),
            "{name}: a page after an id"
        );

        assert_eq!(
            snapshot_parts::load(store.as_ref()).await.expect(name),
            None
        );
        // Three parts and a bit: each written alone, read back in order.
        let bytes: Vec<u8> = (0..snapshot_parts::PART_BYTES * 3 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let head = snapshot_parts::save(store.as_ref(), 7, &bytes)
            .await
            .expect(name)
            .expect("published");
        assert_eq!(head.parts, 4, "{name}");
        let loaded = snapshot_parts::load(store.as_ref())
            .await
            .expect(name)
            .expect("a snapshot");
        assert_eq!(loaded.head, head, "{name}");
        assert!(loaded.bytes == bytes, "{name}: the bytes read back");
        let newer = snapshot_parts::save(store.as_ref(), 8, b"newer")
            .await
            .expect(name)
            .expect("published");
        assert!(newer.snapshot_id > head.snapshot_id, "{name}");
        assert_eq!(
            store.snapshot_part(head.snapshot_id, 0).await.expect(name),
            None,
            "{name}: the older snapshot's parts are pruned"
        );
        let loaded = snapshot_parts::load(store.as_ref())
            .await
            .expect(name)
            .expect("a snapshot");
        assert_eq!(
            (loaded.head.format, loaded.bytes.as_slice()),
            (8, &b"newer"[..])
        );
        assert!(
            !store.publish_snapshot(&head).await.expect(name),
            "{name}: an older snapshot never replaces a newer one"
        );
    }
}
