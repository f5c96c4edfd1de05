//! Store growth: a thread's history is kept as undos, so a long thread stores O(turns) bytes,
//! not O(turns²), on every backend that keeps history on disk.

use baton::app::engine_over;
use baton::config::Settings;
use baton::engine::{Engine, StartRequest};
use baton::store::{Store, StoreOptions};

use crate::helpers::TestPostgres;

async fn turns(engine: &Engine, thread: &str, from: usize, to: usize) {
    for turn in from..to {
        let view = engine
            .start(StartRequest {
                thread_id: Some(thread.to_owned()),
                prompt: format!("What's the weather in Paris, turn {turn}"),
                max_results: 2,
                opened_by: None,
                webhook: None,
                access: baton::access::Access::Open,
            })
            .await
            .expect("turn runs");
        assert_eq!(view.status.as_str(), "completed");
    }
}

async fn grows_linearly(name: &str, store: std::sync::Arc<dyn Store>) {
    let engine = engine_over(store.clone(), &Settings::default())
        .await
        .expect("engine");
    turns(&engine, "long", 0, 50).await;
    let at_50 = store.stored_bytes("long").await.expect("bytes");
    turns(&engine, "long", 50, 200).await;
    let at_200 = store.stored_bytes("long").await.expect("bytes");
    let ratio = at_200 as f64 / at_50 as f64;
    eprintln!("{name}: {at_50} bytes after 50 turns, {at_200} after 200 (x{ratio:.2})");
    // Linear growth gives about 4x; storing whole states per checkpoint would give about 16x.
    assert!(
        ratio < 5.0,
        "{name}: {at_50} -> {at_200} bytes is not linear (x{ratio:.2})"
    );
    let head = engine.checkpoint("long").await.expect("head");
    assert_eq!(
        head.state.earlier_turns, 199,
        "{name}: the head counts every earlier turn"
    );
    let logged = store.turns("long", 0..500).await.expect("turns");
    assert_eq!(
        logged.len(),
        199,
        "{name}: the log holds every earlier turn"
    );
    assert_eq!(logged[42].turn, 42);
    assert_eq!(
        logged[42].body.prompt,
        "What's the weather in Paris, turn 42"
    );
    let history = store.history("long").await.expect("history");
    assert_eq!(
        history.len() as i64,
        head.version,
        "{name}: retention 0 keeps every checkpoint"
    );
    let oldest = store
        .checkpoint_at("long", 1)
        .await
        .expect("read")
        .expect("kept");
    assert!(
        oldest.state.earlier_turns == 0,
        "{name}: the first checkpoint is rebuilt"
    );
    assert_eq!(oldest.state.prompt, "What's the weather in Paris, turn 0");
}

#[tokio::test]
async fn a_200_turn_thread_stores_linear_bytes() {
    let options = StoreOptions {
        retention: 0,
        ..StoreOptions::default()
    };
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("growth.db").display());
    grows_linearly(
        "sqlite",
        baton::store::connect(&url, &options).await.expect("sqlite"),
    )
    .await;
    let pg = TestPostgres::create().await;
    grows_linearly(
        "postgres",
        baton::store::connect(&pg.url, &options)
            .await
            .expect("postgres"),
    )
    .await;
}
