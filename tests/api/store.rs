//! The store contract, run against every backend: compare-and-set on versions, races, listings.

use std::sync::Arc;

use baton::agents::builtin::demo_cards;
use baton::state::{Node, ThreadState, ThreadStatus};
use baton::store::memory::MemoryStore;
use baton::store::sqlite::SqliteStore;
use baton::store::{Checkpoint, Store, StoreError, StoreOptions};

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

async fn backends() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.db").display().to_string();
    let sqlite = SqliteStore::open(&path, &StoreOptions::default())
        .await
        .expect("sqlite");
    vec![
        ("memory", Arc::new(MemoryStore::default()), None),
        ("sqlite", Arc::new(sqlite), Some(dir)),
    ]
}

fn is_conflict(r: Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

#[tokio::test]
async fn versions_are_compare_and_set() {
    for (name, store, _dir) in backends().await {
        store
            .put_checkpoint(&checkpoint("a", 1, ThreadStatus::Processing))
            .await
            .expect(name);
        assert!(
            is_conflict(
                store
                    .put_checkpoint(&checkpoint("a", 1, ThreadStatus::Processing))
                    .await
            ),
            "{name}: create twice"
        );
        store
            .put_checkpoint(&checkpoint("a", 2, ThreadStatus::Processing))
            .await
            .expect(name);
        assert!(
            is_conflict(
                store
                    .put_checkpoint(&checkpoint("a", 2, ThreadStatus::Completed))
                    .await
            ),
            "{name}: stale"
        );
        assert!(
            is_conflict(
                store
                    .put_checkpoint(&checkpoint("a", 4, ThreadStatus::Completed))
                    .await
            ),
            "{name}: skip"
        );
        assert!(
            is_conflict(
                store
                    .put_checkpoint(&checkpoint("ghost", 3, ThreadStatus::Completed))
                    .await
            ),
            "{name}: missing"
        );
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
    for (name, store, _dir) in backends().await {
        store
            .put_checkpoint(&checkpoint("race", 1, ThreadStatus::PendingUserInput))
            .await
            .expect(name);
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut cp = checkpoint("race", 2, ThreadStatus::Processing);
                    cp.state.prompt = format!("writer {i}");
                    store.put_checkpoint(&cp).await
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
                    store
                        .put_checkpoint(&checkpoint(&format!("t{i}"), 1, ThreadStatus::Processing))
                        .await
                })
            })
            .collect();
        for w in writers {
            w.await.expect("joined").expect(name);
        }
        let mut unfinished = store.unfinished_threads().await.expect(name);
        unfinished.sort();
        assert_eq!(unfinished.len(), 65, "{name}: 64 new + the raced one");
    }
}

#[tokio::test]
async fn agent_cards_are_kept() {
    for (name, store, _dir) in backends().await {
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
