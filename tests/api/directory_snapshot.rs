//! The directory's persisted snapshot: a directory started from it answers exactly as one loaded
//! card by card, whatever was written behind it (cards changed, removed, added, rated), and a
//! damaged snapshot is ignored. On a real SQLite file and a real PostgreSQL, in process and
//! through the real binary.

use std::sync::Arc;

use baton::agents::http::HttpAgents;
use baton::agents::policy::UrlPolicy;
use baton::card::AgentCard;
use baton::cli::bench_directory::generated_card;
use baton::directory::snapshot_writer::SnapshotWriter;
use baton::directory::{AgentDirectory, Directory, LoadPath};
use baton::store::{Store, StoreOptions};
use serde_json::Value;

use crate::helpers::{ServerProcess, TestPostgres, all_agents, http, temp_db};

const QUERIES: &[&str] = &[
    "weather forecast",
    "translate french",
    "currency exchange rates",
    "flight booking paris",
    "summarize documents",
    "stock price",
    "recipe",
];

fn card(i: usize) -> AgentCard {
    serde_json::from_value(generated_card(i)).expect("a generated card")
}

/// Everything a caller can see of a directory: every page, and each query's hits with their
/// scores and fit, and the API's search pages.
fn answers(directory: &Directory) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = directory.page(after.as_deref(), 37);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        out.extend(
            page.iter()
                .map(|c| serde_json::to_string(&**c).expect("json")),
        );
    }
    for query in QUERIES {
        let words: Vec<String> = query.split(' ').map(str::to_owned).collect();
        let hits = directory.search(&words, &[]).expect("search");
        let ranked = directory.rank(hits);
        out.push(format!("{query}: {} hits", ranked.len()));
        out.extend(
            ranked
                .iter()
                .map(|c| format!("{} {} {}", c.agent_id, c.relevance, c.fit)),
        );
        for skip in [0, 10] {
            let found = directory
                .find(query, &[], None, None, skip, 10)
                .expect("find");
            out.extend(found.iter().map(|(c, r)| format!("find {} {r}", c.id)));
        }
    }
    out
}

async fn loaded(store: &dyn Store) -> (Directory, LoadPath, usize) {
    let directory = Directory::new();
    let report = directory.load(store).await.expect("loaded");
    (directory, report.path, report.reloaded)
}

/// The whole scenario over one store; `damage` breaks the stored snapshot in the database.
async fn snapshot_matches_a_full_load(name: &str, store: Arc<dyn Store>, damage: &str) {
    for i in 0..300 {
        store.put_agent(&card(i)).await.expect(name);
    }
    let (first, path, reloaded) = loaded(store.as_ref()).await;
    assert_eq!((path, reloaded), (LoadPath::Full, 300), "{name}");
    let writer = SnapshotWriter::new(Arc::new(first), store.clone());
    assert!(writer.write_if_changed().await.expect(name), "{name}");
    assert!(
        !writer.write_if_changed().await.expect(name),
        "{name}: nothing changed since"
    );

    let (restored, path, reloaded) = loaded(store.as_ref()).await;
    assert_eq!((path, reloaded), (LoadPath::Snapshot, 0), "{name}");
    assert_eq!(restored.len(), 300, "{name}");

    // Behind the snapshot, straight into the store: changed, removed, added, rated.
    for i in [3, 150, 299] {
        let mut changed = card(i + 1000);
        changed.id = card(i).id;
        store.put_agent(&changed).await.expect(name);
    }
    for i in [0, 42, 298] {
        assert!(store.delete_agent(&card(i).id).await.expect(name), "{name}");
    }
    for i in 300..310 {
        store.put_agent(&card(i)).await.expect(name);
    }
    store
        .rate_agent(&card(7).id, 1.0)
        .await
        .expect(name)
        .expect("rated");
    let (behind, path, reloaded) = loaded(store.as_ref()).await;
    assert_eq!(path, LoadPath::Snapshot, "{name}");
    assert_eq!(
        reloaded,
        3 + 10 + 1,
        "{name}: changed, added and rated cards"
    );
    assert_eq!(behind.len(), 307, "{name}");

    // The same store with the snapshot damaged: ignored, every card loaded.
    let pool_url = damage;
    corrupt(pool_url).await;
    let (full, path, _) = loaded(store.as_ref()).await;
    assert_eq!(
        path,
        LoadPath::Full,
        "{name}: a damaged snapshot is ignored"
    );
    let expected = answers(&full);
    assert!(expected.len() > 307 + QUERIES.len(), "{name}");
    assert_eq!(answers(&behind), expected, "{name}");

    // The caught-up directory's own snapshot, and a start from that.
    let behind = Arc::new(behind);
    let writer = SnapshotWriter::new(behind.clone(), store.clone());
    assert!(writer.write_if_changed().await.expect(name), "{name}");
    let (again, path, reloaded) = loaded(store.as_ref()).await;
    assert_eq!((path, reloaded), (LoadPath::Snapshot, 0), "{name}");
    assert_eq!(answers(&again), expected, "{name}");

    // A card rated through the directory service is held with the revision the rating wrote:
    // the next snapshot holds it as current, and the start from it reloads nothing.
    let http = HttpAgents::new(UrlPolicy::default(), 1024).expect("a client");
    let service = AgentDirectory::new(behind.clone(), store.clone(), http);
    let rated = service.rate(&card(8).id, 5.0).await.expect(name);
    assert!(rated.rating > card(8).rating, "{name}: the rating counted");
    assert!(writer.write_if_changed().await.expect(name), "{name}");
    let (after_rating, path, reloaded) = loaded(store.as_ref()).await;
    assert_eq!(
        (path, reloaded),
        (LoadPath::Snapshot, 0),
        "{name}: the rated card is not reloaded"
    );
    assert_eq!(
        after_rating.get(&card(8).id).map(|c| c.rating),
        Some(rated.rating),
        "{name}"
    );
}

/// Overwrites the current snapshot's first part with other bytes.
async fn corrupt(url: &str) {
    use sqlx::{Connection, Executor};
    let sql = "UPDATE directory_snapshot_parts SET bytes = bytes || bytes \
               WHERE part = 0 AND snapshot_id = (SELECT snapshot_id FROM directory_snapshot)";
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
        let done = conn.execute(sql).await.expect("damaged");
        assert_eq!(done.rows_affected(), 1);
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        let done = conn.execute(sql).await.expect("damaged");
        assert_eq!(done.rows_affected(), 1);
    }
}

#[tokio::test]
async fn a_directory_from_its_snapshot_answers_as_one_loaded_in_full_on_sqlite_and_postgres() {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let sqlite = baton::store::connect(&url, &StoreOptions::default())
        .await
        .expect("sqlite");
    snapshot_matches_a_full_load("sqlite", sqlite, &url).await;
    let pg = TestPostgres::create().await;
    let postgres = baton::store::connect(&pg.url, &StoreOptions::default())
        .await
        .expect("postgres");
    snapshot_matches_a_full_load("postgres", postgres, &pg.url).await;
}

async fn register(base: &str, from: usize, to: usize) {
    for i in from..to {
        let response = http()
            .post(format!("{base}/api/agents"))
            .json(&generated_card(i))
            .send()
            .await
            .expect("register");
        assert!(response.status().is_success(), "{}", response.status());
    }
}

async fn searches(base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for query in QUERIES {
        let response = http()
            .get(format!("{base}/api/agents/search"))
            .query(&[("q", query)])
            .send()
            .await
            .expect("search");
        out.push(response.json().await.expect("json"));
    }
    out
}

/// SIGTERM, as an operator stops the server: the shutdown writes the last snapshot.
fn stop_gracefully(mut server: ServerProcess) {
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = server.child.wait().expect("exited");
    assert!(exited.success(), "{exited}");
}

#[tokio::test]
async fn the_binary_restarts_from_its_snapshot_with_the_cards_written_behind_it() {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let server = ServerProcess::start(&db, &["--no-demo-agents"]);
    register(&server.base, 0, 120).await;
    stop_gracefully(server);
    let store = baton::store::connect(&url, &StoreOptions::default())
        .await
        .expect("store");
    let head = store.snapshot_head().await.expect("head");
    assert!(head.is_some(), "the graceful stop wrote a snapshot");
    // Another server process registers more; then cards change straight in the database.
    let other = ServerProcess::start(
        &db,
        &["--no-demo-agents", "--directory-snapshot-interval", "0"],
    );
    register(&other.base, 120, 140).await;
    other.kill9();
    store.put_agent(&card(500)).await.expect("added");
    assert!(store.delete_agent(&card(5).id).await.expect("deleted"));
    let mut changed = card(900);
    changed.id = card(6).id;
    store.put_agent(&changed).await.expect("changed");
    assert_eq!(
        store.snapshot_head().await.expect("head"),
        head,
        "no snapshot since the graceful stop"
    );

    let restarted = ServerProcess::start(&db, &["--no-demo-agents"]);
    let listed = all_agents(&restarted.base, 50).await;
    let mut stored = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = store.agent_rows(after.as_deref(), 64).await.expect("rows");
        let Some(last) = rows.last() else { break };
        after = Some(last.id.clone());
        stored.extend(
            rows.iter()
                .map(|r| serde_json::from_str::<Value>(&r.json).expect("json")),
        );
    }
    assert_eq!(stored.len(), 120 + 20 + 1 - 1);
    assert_eq!(
        listed, stored,
        "the restarted directory lists what the store holds"
    );
    let from_snapshot = searches(&restarted.base).await;
    restarted.kill9();

    // The same database with no snapshot at all: every card loaded; the same answers.
    let mut conn = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&url).await.expect("sqlite")
    };
    {
        use sqlx::Executor;
        conn.execute("DELETE FROM directory_snapshot")
            .await
            .expect("head gone");
    }
    let full = ServerProcess::start(
        &db,
        &["--no-demo-agents", "--directory-snapshot-interval", "0"],
    );
    assert_eq!(searches(&full.base).await, from_snapshot);
    assert_eq!(all_agents(&full.base, 50).await, listed);
}
