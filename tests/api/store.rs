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

fn checkpoint(thread: &str, version: i64, status: ThreadStatus) -> Checkpoint {
    let mut state =
        ThreadState::new_turn(thread.into(), format!("prompt v{version}"), 5, Vec::new());
    state.status = status;
    Checkpoint {
        thread_id: thread.into(),
        version,
        step: version,
        next: Node::ParsePrompt,
        state,
    }
}

async fn put(
    store: &dyn Store,
    cp: &Checkpoint,
    previous: Option<&ThreadState>,
    lease: Option<&Lease>,
) -> Result<(), StoreError> {
    store
        .put_checkpoint(&CheckpointWrite {
            checkpoint: cp,
            node: Origin::Start,
            previous,
            worker: &WorkerId::new("test-writer"),
            lease,
        })
        .await
}

struct Backends {
    stores: Vec<(&'static str, Arc<dyn Store>)>,
    _dir: tempfile::TempDir,
    _pg: TestPostgres,
}

async fn backends(options: StoreOptions) -> Backends {
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
            cp.state.turns = (0..v)
                .map(|i| baton::state::Turn {
                    prompt: format!("turn {i}"),
                    answers: Vec::new(),
                    final_response: None,
                    opened_by: None,
                })
                .collect();
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
        let stored = store.agents().await.expect(name);
        assert_eq!(stored.len(), cards.len(), "{name}");
        assert!(stored.contains(&changed), "{name}");
        let rows = store.agent_rows(None, 1000).await.expect(name);
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
            store.agents().await.expect(name).len(),
            cards.len() - 1,
            "{name}"
        );
        store.ping().await.expect(name);
    }
}
