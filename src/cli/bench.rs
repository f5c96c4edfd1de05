//! `baton bench`: N interactive conversations in process (start → question → answer →
//! completed), checkpointing every node, on each store named. Same workload as the Python peer's
//! `bench_inproc.py`, so the two can be compared in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use crate::app::{StartupError, build_engine};
use crate::config::Settings;
use crate::engine::{Engine, StartRequest};
use crate::state::ThreadStatus;
use crate::store::SqliteSync;

/// The peer's prompt and answer.
pub const PROMPT: &str = "Help me analyze data but I need guidance";
/// The answer that completes the conversation.
pub const ANSWER: &str = "I want to analyze sales data";

/// Flags of `baton bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Conversations measured per store.
    #[arg(long, default_value_t = 300)]
    pub n: usize,
    /// Conversations in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Stores to measure, comma-separated: memory, sqlite, postgres.
    #[arg(long, value_delimiter = ',', default_value = "memory,sqlite")]
    pub stores: Vec<String>,
    /// Database for the postgres run (its tables are created if missing; threads are added).
    #[arg(long, env = "BATON_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// PostgreSQL checkpoint writers for the postgres run (as `serve --pg-writers`).
    #[arg(long, default_value_t = Settings::default().pg_writers)]
    pub pg_writers: u32,
    /// PostgreSQL connections for the postgres run, the writers' included (as `serve
    /// --pg-pool-size`).
    #[arg(long, default_value_t = Settings::default().pg_pool_size)]
    pub pg_pool_size: u32,
    /// SQLite commit durability for the sqlite run.
    #[arg(long, value_parser = crate::config::sqlite_sync_parser(), default_value = "full")]
    pub sqlite_sync: SqliteSync,
    /// Unmeasured conversations first.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Instead of many conversations, one thread of this many turns: per-turn latency and bytes
    /// written per turn around turns 1, 10, 100, 500, 1000 and 2000 (`bench_turns`).
    #[arg(long)]
    pub turns: Option<usize>,
    /// Instead: register this many generated cards through the HTTP API and measure the
    /// directory (registrations/s as it grows, search, chat beside registrations, restart).
    #[arg(long)]
    pub directory_cards: Option<usize>,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown store {0:?} (use memory, sqlite or postgres with --postgres-url)")]
    UnknownStore(String),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("reading PostgreSQL's settings: {0}")]
    Postgres(#[source] sqlx::Error),
    #[error(transparent)]
    Directory(#[from] super::bench_directory::DirectoryBenchError),
}

/// Runs the benchmark, printing per store a readable line and a JSON line, and returns the
/// summary JSON (every store's figures).
pub async fn run(args: &BenchArgs) -> Result<Value, BenchError> {
    if let Some(turns) = args.turns {
        return super::bench_turns::run(args, turns.max(1)).await;
    }
    if let Some(cards) = args.directory_cards {
        return Ok(super::bench_directory::run(cards).await?);
    }
    let mut summary = json!({
        "bench": "baton.inproc",
        "n": args.n,
        "concurrency": args.concurrency,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    for store in &args.stores {
        let store = store.trim();
        let db_path = std::env::temp_dir().join(format!("baton-bench-{}.db", std::process::id()));
        let settings = store_settings(args, store, &db_path)?;
        let url = settings.database_url.clone();
        let engine = build_engine(&settings).await?;
        let mut result = measure(&engine, args).await;
        if store == "sqlite" {
            // Every conversation the file holds, the warm-up's included.
            let held = args.n + args.warmup;
            result["bytes_per_conversation"] = match crate::store::sqlite::checkpointed_bytes(
                &db_path.display().to_string(),
            )
            .await
            {
                Ok(bytes) => json!(bytes / u64::try_from(held.max(1)).unwrap_or(1)),
                Err(e) => {
                    eprintln!("cannot measure the database file: {e}");
                    Value::Null
                }
            };
        }
        drop(engine);
        let setting = match store {
            "sqlite" => {
                remove_db(&db_path);
                let sync = args.sqlite_sync.as_str().to_uppercase();
                result["sqlite_synchronous"] = json!(sync);
                format!("synchronous={sync}")
            }
            "postgres" => {
                let commit = synchronous_commit(&url).await?;
                result["pg_writers"] = json!(args.pg_writers);
                result["pg_pool_size"] = json!(args.pg_pool_size);
                result["synchronous_commit"] = json!(commit);
                format!(
                    "writers={} pool={} synchronous_commit={commit}",
                    args.pg_writers, args.pg_pool_size
                )
            }
            _ => String::new(),
        };
        let bytes = result["bytes_per_conversation"]
            .as_u64()
            .map(|b| format!("  {b} bytes/conversation"))
            .unwrap_or_default();
        let groups = match result["group_commits"].as_f64() {
            Some(count) if count > 0.0 => format!(
                "  {count} group commits of {:.1} writes, {:.3} ms each",
                result["writes_per_group"].as_f64().unwrap_or(0.0),
                result["group_commit_mean_ms"].as_f64().unwrap_or(0.0)
            ),
            _ => String::new(),
        };
        println!(
            "{store:8} {:9.1} conversations/s  turn p50 {:.3} ms  p99 {:.3} ms  errors {}  {setting}{bytes}{groups}",
            result["conversations_per_s"].as_f64().unwrap_or(0.0),
            result["turn_p50_ms"].as_f64().unwrap_or(0.0),
            result["turn_p99_ms"].as_f64().unwrap_or(0.0),
            result["errors"]
        );
        let mut line = result.clone();
        line["bench"] = json!("baton.inproc");
        line["store"] = json!(store);
        println!("{line}");
        summary[store] = result;
    }
    Ok(summary)
}

/// The server's `synchronous_commit`, which Baton leaves on: a checkpoint is answered only once
/// it is durable, so the figure is for durable commits.
async fn synchronous_commit(url: &str) -> Result<String, BenchError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(BenchError::Postgres)?;
    let setting = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await
        .map_err(BenchError::Postgres)?;
    conn.close().await.map_err(BenchError::Postgres)?;
    Ok(setting)
}

/// The settings a run on `store` uses: its URL (a fresh SQLite file at `db_path`), and the
/// flags' durability and PostgreSQL writers, so every bench measures a store configured alike.
pub(super) fn store_settings(
    args: &BenchArgs,
    store: &str,
    db_path: &std::path::Path,
) -> Result<Settings, BenchError> {
    let url = match store {
        "memory" => "memory://".to_owned(),
        "sqlite" => {
            remove_db(db_path);
            format!("sqlite://{}", db_path.display())
        }
        "postgres" => args
            .postgres_url
            .clone()
            .ok_or_else(|| BenchError::UnknownStore("postgres needs --postgres-url".to_owned()))?,
        other => return Err(BenchError::UnknownStore(other.to_owned())),
    };
    Ok(Settings {
        database_url: url,
        sqlite_sync: args.sqlite_sync,
        pg_writers: args.pg_writers,
        pg_pool_size: args.pg_pool_size,
        ..Settings::default()
    })
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The request that opens a turn of the benches' conversation (on `thread_id`, or a new thread).
pub(super) fn opening(thread_id: Option<String>) -> StartRequest {
    StartRequest {
        thread_id,
        prompt: PROMPT.to_owned(),
        max_results: 5,
        opened_by: None,
        webhook: None,
        access: crate::access::Access::Open,
    }
}

/// One conversation; its two turn latencies in ms, or what went wrong.
async fn conversation(engine: &Engine) -> Result<[f64; 2], String> {
    let t0 = Instant::now();
    let first = engine
        .start(opening(None))
        .await
        .map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    if first.status != ThreadStatus::PendingUserInput {
        return Err(format!("start ended {:?}", first.status));
    }
    let second = engine
        .answer(&first.thread_id, ANSWER, None)
        .await
        .map_err(|e| e.to_string())?;
    let t2 = Instant::now();
    if second.status != ThreadStatus::Completed {
        return Err(format!("answer ended {:?}", second.status));
    }
    Ok([
        (t1 - t0).as_secs_f64() * 1000.0,
        (t2 - t1).as_secs_f64() * 1000.0,
    ])
}

async fn measure(engine: &Engine, args: &BenchArgs) -> Value {
    for _ in 0..args.warmup {
        let _ = conversation(engine).await;
    }
    let groups_before = GroupCommits::of(engine);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let engine = engine.clone();
            let next = next.clone();
            let n = args.n;
            tokio::spawn(async move {
                let mut turns = Vec::new();
                let mut errors = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    match conversation(&engine).await {
                        Ok(t) => turns.extend(t),
                        Err(e) => errors.push(e),
                    }
                }
                (turns, errors)
            })
        })
        .collect();
    let mut turns = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        match worker.await {
            Ok((t, e)) => {
                turns.extend(t);
                errors.extend(e);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if let Some(first) = errors.first() {
        eprintln!("first error: {first}");
    }
    let groups = GroupCommits::of(engine).since(&groups_before);
    turns.sort_by(f64::total_cmp);
    json!({
        "group_commits": groups.count,
        "writes_per_group": round3(groups.writes / groups.count.max(1.0)),
        "group_commit_mean_ms": round3(groups.seconds * 1000.0 / groups.count.max(1.0)),
        "conversations": args.n,
        "wall_s": round3(wall),
        "conversations_per_s": round3(args.n as f64 / wall),
        "turns": turns.len(),
        "turn_p50_ms": round3(percentile(&turns, 0.50)),
        "turn_p99_ms": round3(percentile(&turns, 0.99)),
        "errors": errors.len(),
    })
}

/// The group commits of the store's writer (SQLite's or PostgreSQL's) so far, read from the
/// engine's metrics: how many, the writes they carried and the time they took.
#[derive(Debug, Default)]
struct GroupCommits {
    count: f64,
    writes: f64,
    seconds: f64,
}

impl GroupCommits {
    fn of(engine: &Engine) -> Self {
        let Ok(text) = engine
            .services()
            .metrics
            .render(crate::metrics::Exposition::Prometheus)
        else {
            return GroupCommits::default();
        };
        let mut groups = GroupCommits::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once(' ') else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            let Some(name) = name
                .strip_prefix("baton_sqlite_group_commit_")
                .or_else(|| name.strip_prefix("baton_pg_group_commit_"))
            else {
                continue;
            };
            match name {
                "size_count" => groups.count += value,
                "size_sum" => groups.writes += value,
                "duration_seconds_sum" => groups.seconds += value,
                _ => {}
            }
        }
        groups
    }

    fn since(self, before: &GroupCommits) -> Self {
        GroupCommits {
            count: self.count - before.count,
            writes: self.writes - before.writes,
            seconds: self.seconds - before.seconds,
        }
    }
}

/// Nearest-rank percentile of sorted values (as the peer computes it).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[i]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
