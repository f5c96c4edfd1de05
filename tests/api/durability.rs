//! State survives: every checkpoint round-trips through SQLite, and a server killed with SIGKILL
//! comes back with every thread as its last response said, resuming cut-short runs.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use baton::app::engine_over;
use baton::card::AgentCard;
use baton::config::Settings;
use baton::engine::{EngineError, StartRequest, Takeover};
use baton::state::{Node, ThreadStatus};
use baton::store::memory::MemoryStore;
use baton::store::sqlite::SqliteStore;
use baton::store::{
    Checkpoint, CheckpointWrite, HistoryEntry, Lease, LoggedTurn, Origin, Store, StoreError,
    StoreOptions, ThreadQuery, ThreadSummary,
};
use serde_json::json;

use crate::helpers::{
    ServerProcess, answer_at, assert_contains_all, assert_resumed_elsewhere, chat_at, eventually,
    final_text, get, post, start_half_done_run, temp_db, thread_of,
};

/// Writes through to SQLite, reads every checkpoint back (the head, and the version before it
/// rebuilt from the history), and remembers what it saw.
struct RoundTrip {
    inner: SqliteStore,
    seen: Mutex<Vec<Checkpoint>>,
}

#[async_trait]
impl Store for RoundTrip {
    async fn put_checkpoint(&self, write: &CheckpointWrite<'_>) -> Result<(), StoreError> {
        self.inner.put_checkpoint(write).await?;
        let checkpoint = write.checkpoint;
        let back = self
            .inner
            .get_checkpoint(&checkpoint.thread_id)
            .await?
            .expect("stored");
        assert_eq!(
            &back, checkpoint,
            "checkpoint changed on its way through SQLite"
        );
        let rebuilt = self
            .inner
            .checkpoint_at(&checkpoint.thread_id, checkpoint.version)
            .await?;
        assert_eq!(
            rebuilt.as_ref(),
            Some(checkpoint),
            "head rebuilt from history"
        );
        if let Some(previous) = write.previous {
            let before = self
                .inner
                .checkpoint_at(&checkpoint.thread_id, checkpoint.version - 1)
                .await?
                .expect("previous version kept");
            assert_eq!(
                &before.state, previous,
                "previous state rebuilt from the undo"
            );
        }
        self.seen.lock().expect("lock").push(back);
        Ok(())
    }
    async fn get_checkpoint(&self, thread_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.get_checkpoint(thread_id).await
    }
    async fn history(&self, thread_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.history(thread_id).await
    }
    async fn checkpoint_at(
        &self,
        thread_id: &str,
        version: i64,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.checkpoint_at(thread_id, version).await
    }
    async fn list_threads(&self, query: &ThreadQuery) -> Result<Vec<ThreadSummary>, StoreError> {
        self.inner.list_threads(query).await
    }
    async fn delete_thread(
        &self,
        thread_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.delete_thread(thread_id, version, now).await
    }
    async fn stored_bytes(&self, thread_id: &str) -> Result<u64, StoreError> {
        self.inner.stored_bytes(thread_id).await
    }
    async fn turns(
        &self,
        thread_id: &str,
        positions: std::ops::Range<usize>,
    ) -> Result<Vec<LoggedTurn>, StoreError> {
        self.inner.turns(thread_id, positions).await
    }
    async fn turn_opened_by(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<usize>, StoreError> {
        self.inner.turn_opened_by(thread_id, message_id).await
    }
    async fn expired_runs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.inner.expired_runs(now).await
    }
    async fn threads_by_status(
        &self,
    ) -> Result<Vec<(baton::state::ThreadStatus, u64)>, StoreError> {
        self.inner.threads_by_status().await
    }
    async fn renew_lease(&self, thread_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        self.inner.renew_lease(thread_id, lease).await
    }
    async fn put_agent(&self, card: &AgentCard) -> Result<i64, StoreError> {
        self.inner.put_agent(card).await
    }
    async fn agent_rows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<baton::store::CardRow>, StoreError> {
        self.inner.agent_rows(after, limit).await
    }
    async fn agent(&self, id: &str) -> Result<Option<AgentCard>, StoreError> {
        self.inner.agent(id).await
    }
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_agent(id).await
    }
    async fn rate_agent(
        &self,
        id: &str,
        rating: f64,
    ) -> Result<Option<baton::store::RatedCard>, StoreError> {
        self.inner.rate_agent(id, rating).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn every_state_the_engine_reaches_round_trips_through_sqlite() {
    let (_dir, db) = temp_db();
    let inner = SqliteStore::open(&db.display().to_string(), &StoreOptions::default())
        .await
        .expect("sqlite");
    // An agent that always fails, ranked first for weather: exercises retries and fallback.
    let broken: AgentCard = serde_json::from_value(json!({
        "id": "test.broken-weather", "name": "Broken Weather", "url": "builtin://missing", "protocol": "builtin",
        "description": "Weather forecasts for Paris that never arrive", "rating": 5.0,
        "skills": [{"id": "forecast", "name": "Weather forecast", "description": "Forecast",
                    "tags": ["weather", "forecast", "paris"]}]
    }))
    .expect("card");
    inner.put_agent(&broken).await.expect("registered");
    let store = Arc::new(RoundTrip {
        inner,
        seen: Mutex::new(Vec::new()),
    });
    let settings = Settings {
        agent_attempts: 2,
        ..Settings::default()
    };
    let engine = engine_over(store.clone(), &settings).await.expect("engine");
    // Each conversation: a prompt (on a thread the client names, or a new one), then the answers
    // to its questions; the last one must complete it.
    let conversations: [(&str, Option<&str>, &[&str]); 5] = [
        (
            "Help me analyze data but I need guidance",
            None,
            &["I want to analyze sales data"],
        ),
        (
            "Book a table",
            None,
            &["restaurant please", "still a restaurant"],
        ),
        // The translator asks for the text itself (an agent's question).
        (
            "Convert money and translate my notes",
            Some("turns"),
            &["100 USD to EUR", "French", "My notes"],
        ),
        // A second turn of the same thread.
        (
            "Get the news about AI and then summarize it",
            Some("turns"),
            &[],
        ),
        (
            "What's the weather in Paris and convert 3 EUR to USD",
            None,
            &[],
        ),
    ];
    let mut last = None;
    for (prompt, thread, answers) in conversations {
        let mut view = engine
            .start(StartRequest {
                thread_id: thread.map(str::to_owned),
                prompt: prompt.to_owned(),
                max_results: 3,
                opened_by: None,
                webhook: None,
                access: baton::access::Access::Open,
            })
            .await
            .unwrap_or_else(|e| panic!("{prompt}: {e}"));
        for answer in answers {
            view = engine
                .answer(&view.thread_id, answer, None)
                .await
                .unwrap_or_else(|e| panic!("{prompt} / {answer}: {e}"));
        }
        assert_eq!(view.status.as_str(), "completed", "{prompt}");
        last = Some(view);
    }
    let w = last.expect("the weather thread");
    let view = engine.status(&w.thread_id).await.expect("status");
    assert_eq!(view.status.as_str(), "completed");
    let cp = engine.checkpoint(&w.thread_id).await.expect("cp");
    let weather = &cp.state.results["t1"];
    assert!(
        weather.outcome.is_done(),
        "fell back to a working agent: {weather:?}"
    );
    assert_eq!(weather.outcome.agent_id(), Some("demo.weather"));
    assert_eq!(
        weather.attempts, 2,
        "one try of the broken agent (its error is not worth a retry), then the fallback"
    );

    let seen = store.seen.lock().expect("lock");
    let nexts: BTreeSet<&str> = seen.iter().map(|c| c.next.as_str()).collect();
    for node in Node::ALL {
        assert!(
            nexts.contains(node.as_str()),
            "no checkpoint before {}",
            node.as_str()
        );
    }
    let statuses: BTreeSet<&str> = seen.iter().map(|c| c.state.status.as_str()).collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["completed", "pending_user_input", "processing"])
    );
    assert!(seen.len() > 50, "{} checkpoints", seen.len());
}

#[tokio::test]
async fn kill_9_keeps_finished_and_waiting_threads() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &[]);
    let (_, done) = chat_at(&server.base, "What's the weather in Paris").await;
    let (_, waiting) = chat_at(&server.base, "Help me analyze data but I need guidance").await;
    assert_eq!(waiting["status"], "pending_user_input");
    server.kill9();

    let server = ServerProcess::start(&db, &[]);
    let (code, s) = get(
        &server.base,
        &format!("/api/chat/status/{}", thread_of(&done)),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["final_response"], done["final_response"]);
    assert_eq!(s["task_agent_pairs"], done["task_agent_pairs"]);
    let thread = thread_of(&waiting);
    let (_, s) = get(&server.base, &format!("/api/chat/status/{thread}")).await;
    assert_eq!(s["status"], "pending_user_input");
    assert_eq!(s["question_for_user"], waiting["question_for_user"]);
    let (code, r) = answer_at(&server.base, &thread, "I want to analyze sales data").await;
    assert_eq!(code, 200);
    assert_eq!(r["status"], "completed");
}

#[tokio::test]
async fn kill_9_mid_batch_resumes_without_calling_answered_agents_again() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &["--demo-latency", "weather=5000"]);
    // The fast agent's answer is checkpointed while the slow one is still out.
    let (before, request) = start_half_done_run(&server.base, &server.base, "crash-1").await;
    server.kill9();
    let _ = request.await;

    let server = ServerProcess::start(&db, &[]);
    let after =
        assert_resumed_elsewhere(&server.base, "crash-1", &before, Duration::from_secs(20)).await;
    assert_eq!(after["state"]["results"]["t1"]["ok"], true);
    let (_, s) = get(&server.base, "/api/chat/status/crash-1").await;
    assert_eq!(s["status"], "completed");
    assert_contains_all(final_text(&s), &["Weather in Paris", "100 USD = "]);
}

#[tokio::test]
async fn ratings_and_registered_agents_survive_a_restart() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &[]);
    let (code, rated) = post(
        &server.base,
        "/api/agents/demo.weather/rate",
        json!({"rating": 1}),
    )
    .await;
    assert_eq!(code, 200);
    let card = json!({"id": "kept", "name": "Kept", "description": "kept across restarts",
                      "capabilities": ["kept"], "endpoints": [{"endpoint": "http://127.0.0.1:9/k"}]});
    assert_eq!(post(&server.base, "/api/agents", card).await.0, 201);
    server.kill9();
    let server = ServerProcess::start(&db, &[]);
    let (_, weather) = get(&server.base, "/api/agents/demo.weather").await;
    assert_eq!(
        weather["rating"], rated["rating"],
        "the demo card kept its rating"
    );
    assert_eq!(weather["rating_count"], 2);
    let (code, _) = get(&server.base, "/api/agents/kept").await;
    assert_eq!(code, 200, "the index was rebuilt from the database");
    let (_, hits) = get(&server.base, "/api/agents/search?q=kept").await;
    assert_eq!(hits[0]["agent"]["id"], "kept");
}

/// A run whose lease another process took stops its node at the next heartbeat: it does not wait
/// for its slow agent, and writes nothing after the takeover (two engines on one memory store
/// stand for two processes).
#[tokio::test]
async fn a_run_that_loses_its_lease_stops_without_writing() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(0));
    let slow = engine_over(
        store.clone(),
        &Settings {
            lease_ms: 300,
            demo_latency: vec![("weather".into(), 60_000)],
            ..Settings::default()
        },
    )
    .await
    .expect("slow engine");
    let other = engine_over(
        store.clone(),
        &Settings {
            lease_ms: 300,
            ..Settings::default()
        },
    )
    .await
    .expect("other engine");
    let slow_worker = slow.services().worker.clone();
    let run = tokio::spawn(async move {
        slow.start(StartRequest {
            thread_id: Some("lost-lease".into()),
            prompt: "What's the weather in Paris and convert 100 USD to EUR".into(),
            max_results: 3,
            opened_by: None,
            webhook: None,
            access: baton::access::Access::Open,
        })
        .await
    });
    eventually(
        "currency result checkpointed",
        Duration::from_secs(10),
        || async {
            let cp = store.get_checkpoint("lost-lease").await.ok()??;
            cp.state.results.contains_key("t2").then_some(())
        },
    )
    .await;
    // The memory store is not shared, so at "start-up" the other engine takes the run at once,
    // as a process does whose lease watch found the first one's lease expired.
    let taken = other
        .take_over_expired_runs(Takeover::AtStartup)
        .await
        .expect("takeover");
    assert_eq!(taken, 1);
    let outcome = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the run stopped at its next heartbeat, not after its agent's minute")
        .expect("joined");
    assert!(
        matches!(outcome, Err(EngineError::Conflict(_))),
        "{outcome:?}"
    );
    eventually(
        "taken-over run completed",
        Duration::from_secs(10),
        || async {
            let cp = store.get_checkpoint("lost-lease").await.ok()??;
            (cp.state.status == ThreadStatus::Completed).then_some(())
        },
    )
    .await;
    let history = store.history("lost-lease").await.expect("history");
    let takeover = history
        .iter()
        .find(|e| e.node == Origin::Takeover)
        .expect("takeover in the history")
        .version;
    let late: Vec<_> = history
        .iter()
        .filter(|e| e.version >= takeover && e.worker == slow_worker)
        .collect();
    assert!(late.is_empty(), "written after losing the lease: {late:?}");
}
