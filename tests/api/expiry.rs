//! Bounded disk: `--thread-ttl` and `--waiting-thread-ttl` delete expired threads with their
//! history and webhook deliveries (SQLite and PostgreSQL), spare threads answered in time, give
//! SQLite's pages back (incremental vacuum), stop with the server, and `baton vacuum` switches an
//! older SQLite file to incremental vacuum.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use baton::config::Settings;
use baton::store::{self, Store, StoreOptions};
use serde_json::json;
use sqlx::{Connection, Row};

use crate::helpers::{
    TestApp, TestPostgres, chat_at, eventually, on_both_stores, spawn_app_with,
    spawn_stoppable_app_with, temp_db, thread_of, unreachable_base_url,
};
use crate::metrics::scrape;

const GUIDANCE: &str = "Help me analyze data but I need guidance";
const WEATHER: &str = "What is the weather in Oslo";

/// How long a test waits for the reaper (it sweeps every quarter of the shortest TTL).
const PATIENCE: Duration = Duration::from_secs(20);

/// A second handle on the server's database, to look at rows the API no longer shows.
async fn open_store(app: &TestApp) -> Arc<dyn Store> {
    store::connect(&app.database_url, &StoreOptions::default())
        .await
        .expect("store opens")
}

/// Waits until `thread` is no longer listed (and so, deleted).
async fn until_gone(app: &TestApp, thread: &str) {
    eventually(&format!("thread {thread} to expire"), PATIENCE, || async {
        let (code, page) = app.get("/api/threads?limit=100").await;
        assert_eq!(code, 200, "{page}");
        let listed = page["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .any(|t| t["thread_id"] == thread);
        (!listed).then_some(())
    })
    .await;
}

/// Asserts `thread` is there with `status`.
async fn assert_kept(app: &TestApp, thread: &str, status: &str) {
    let (code, body) = app.status_of(thread).await;
    assert_eq!(code, 200, "{thread} was deleted: {body}");
    assert_eq!(body["status"], status, "{body}");
}

fn finished_expire_after_a_second(s: &mut Settings) {
    s.thread_ttl = Some("1s".parse().expect("ttl"));
    s.webhook_attempts = 20;
    s.webhook_backoff_ms = 100;
    s.webhook_timeout_ms = 1_000;
}

#[tokio::test]
async fn finished_threads_expire_with_their_history_and_webhooks_while_waiting_ones_stay() {
    on_both_stores(finished_expire_after_a_second, |app| async move {
        // A receiver that never answers: the deliveries keep retrying while the threads expire.
        let down = format!("{}/hook", unreachable_base_url().await);
        let (code, finished) = app
            .post("/api/chat", &json!({"prompt": WEATHER, "webhook": down}))
            .await;
        assert_eq!((code, &finished["status"]), (200, &json!("completed")));
        let finished = thread_of(&finished);
        let (code, waiting) = app
            .post("/api/chat", &json!({"prompt": GUIDANCE, "webhook": down}))
            .await;
        assert_eq!(
            (code, &waiting["status"]),
            (200, &json!("pending_user_input"))
        );
        let waiting = thread_of(&waiting);

        until_gone(&app, &finished).await;
        let (code, body) = app.status_of(&finished).await;
        assert_eq!(code, 404, "{body}");
        let store = open_store(&app).await;
        assert!(store.history(&finished).await.expect("history").is_empty());
        assert!(
            store
                .deliveries(&finished)
                .await
                .expect("deliveries")
                .is_empty()
        );

        // The waiting thread, older than --thread-ttl by now, is kept whole, and its delivery
        // goes on being attempted: the expired thread's undelivered one broke nothing.
        assert_kept(&app, &waiting, "pending_user_input").await;
        assert!(!store.history(&waiting).await.expect("history").is_empty());
        eventually(
            "the waiting thread's delivery to be retried",
            PATIENCE,
            || async {
                let deliveries = store.deliveries(&waiting).await.expect("deliveries");
                (deliveries.len() == 1 && deliveries[0].attempts.len() >= 2).then_some(())
            },
        )
        .await;

        let expired = scrape(&app).await.sum("baton_threads_expired_total", &[]);
        assert!(expired >= 1.0, "baton_threads_expired_total = {expired}");
    })
    .await;
}

fn waiting_expire_after_two_seconds(s: &mut Settings) {
    s.thread_ttl = Some("1h".parse().expect("ttl"));
    s.waiting_thread_ttl = Some("2s".parse().expect("ttl"));
}

#[tokio::test]
async fn waiting_threads_expire_under_their_own_setting_and_one_answered_in_time_survives() {
    on_both_stores(waiting_expire_after_two_seconds, |app| async move {
        let answered = thread_of(&app.chat(GUIDANCE).await);
        let abandoned = thread_of(&app.chat(GUIDANCE).await);
        let finished = thread_of(&app.chat(WEATHER).await);
        // Answered before its two seconds are up: it is no longer a waiting thread, and its
        // clock starts again under --thread-ttl.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (code, body) = app.answer(&answered, "I want to analyze sales data").await;
        assert_eq!(
            (code, &body["status"]),
            (200, &json!("completed")),
            "{body}"
        );

        until_gone(&app, &abandoned).await;
        let store = open_store(&app).await;
        assert!(store.history(&abandoned).await.expect("history").is_empty());
        assert_kept(&app, &answered, "completed").await;
        assert_kept(&app, &finished, "completed").await;
    })
    .await;
}

#[tokio::test]
async fn two_postgres_reapers_delete_each_expired_thread_once() {
    let pg = TestPostgres::create().await;
    let on_pg = |s: &mut Settings| {
        s.database_url = pg.url.clone();
        s.thread_ttl = Some("1s".parse().expect("ttl"));
    };
    let apps = [spawn_app_with(on_pg).await, spawn_app_with(on_pg).await];
    // More than one batch (200), so the two reapers' batches meet.
    let threads = 300;
    let mut running = tokio::task::JoinSet::new();
    for n in 0..threads {
        let base = apps[n % 2].base();
        running.spawn(async move { chat_at(&base, WEATHER).await });
    }
    while let Some(done) = running.join_next().await {
        let (code, body) = done.expect("joined");
        assert_eq!(
            (code, &body["status"]),
            (200, &json!("completed")),
            "{body}"
        );
    }
    eventually("every thread to expire", PATIENCE, || async {
        let (_, page) = apps[0].get("/api/threads").await;
        page["threads"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    let mut expired = 0.0;
    for app in &apps {
        expired += scrape(app).await.sum("baton_threads_expired_total", &[]);
    }
    assert_eq!(
        expired,
        f64::from(u32::try_from(threads).expect("small")),
        "each deleted once"
    );
    drop(apps);
    drop(pg);
}

/// `PRAGMA name` on the SQLite file at `url`, read by a connection of its own.
async fn pragma(url: &str, name: &str) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .expect("sqlite opens");
    let value = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
        .fetch_one(&mut conn)
        .await
        .expect("pragma read")
        .try_get(0)
        .expect("integer");
    conn.close().await.expect("closed");
    value
}

#[tokio::test]
async fn expired_threads_give_their_pages_back_and_the_reaper_stops_with_the_server() {
    let (_dir, path) = temp_db();
    let url = format!("sqlite://{}", path.display());
    let on_file = |s: &mut Settings| s.database_url = url.clone();

    // Threads written with nothing expiring.
    let (app, server) = spawn_stoppable_app_with(on_file).await;
    for _ in 0..100 {
        app.chat(WEATHER).await;
    }
    server.stop().await;
    assert_eq!(pragma(&url, "auto_vacuum").await, 2, "incremental");
    let full = pragma(&url, "page_count").await;

    // The same file under a TTL: the threads go, and so do their pages.
    let (app, server) = spawn_stoppable_app_with(|s| {
        on_file(s);
        s.thread_ttl = Some("1s".parse().expect("ttl"));
    })
    .await;
    eventually("the file to shrink", PATIENCE, || async {
        let (_, page) = app.get("/api/threads").await;
        let empty = page["threads"].as_array().is_some_and(Vec::is_empty);
        let pages = pragma(&url, "page_count").await;
        let free = pragma(&url, "freelist_count").await;
        (empty && free == 0 && pages < full / 2).then_some(())
    })
    .await;
    server.stop().await;

    // Stopped, its reaper is gone too: a thread finished afterwards outlives the TTL.
    let (app, server) = spawn_stoppable_app_with(on_file).await;
    let survivor = thread_of(&app.chat(WEATHER).await);
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = open_store(&app).await;
    assert!(
        store
            .get_checkpoint(&survivor)
            .await
            .expect("read")
            .is_some(),
        "a stopped server's reaper deleted {survivor}"
    );
}

#[tokio::test]
async fn baton_vacuum_switches_an_older_sqlite_file_to_incremental_vacuum() {
    let (_dir, path) = temp_db();
    let url = format!("sqlite://{}", path.display());
    // A file made the way earlier versions made it: a table before any auto_vacuum setting.
    let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("sqlite creates");
    sqlx::query("CREATE TABLE older (x INTEGER)")
        .execute(&mut conn)
        .await
        .expect("table");
    conn.close().await.expect("closed");
    let baton = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .args(["--database-url", &url])
            .env("BATON_LOG", "warn")
            .output()
            .expect("baton runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "baton {args:?}: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };

    let (_, said) = baton(&["migrate"]);
    assert!(said.contains("baton vacuum"), "start-up says so: {said}");
    assert_eq!(
        pragma(&url, "auto_vacuum").await,
        0,
        "not switched silently"
    );

    let (done, _) = baton(&["vacuum"]);
    assert!(done.contains("incremental auto-vacuum on"), "{done}");
    assert_eq!(pragma(&url, "auto_vacuum").await, 2);
    let (_, said) = baton(&["migrate"]);
    assert!(!said.contains("baton vacuum"), "{said}");
}
