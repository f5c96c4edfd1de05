//! `baton bench --turns N`: one thread of N turns, each the bench's conversation (the prompt, the
//! planner's question, the answer, the response), on each store named. A long thread must cost
//! what a short one does, so this prints, for slices of turns around turns 1, 10, 100, 500, 1000
//! and 2000, the latency of a turn and the bytes its checkpoint writes carried.
//!
//! Bytes are counted from the store after each measured turn, outside the timed part: for every
//! checkpoint the turn wrote, the state it stored and its undo (the reverse delta its history row
//! keeps), plus the earlier turns it appended to the thread's turn log. That is what the writes
//! carried, whatever the database does with pages; `stored_bytes` would miss the head, which is
//! rewritten at every checkpoint.

use std::time::Instant;

use serde_json::{Value, json};

use super::bench::{ANSWER, BenchArgs, BenchError, opening, store_settings};
use crate::app::build_engine;
use crate::engine::Engine;
use crate::state::ThreadStatus;
use crate::store::{Store, delta};

/// Turns each figure is taken around (those beyond N are left out; N itself always is one).
const MARKS: [usize; 6] = [1, 10, 100, 500, 1000, 2000];

/// Turns per slice: a figure is the median (latency) or mean (bytes) of this many turns.
const SLICE: usize = 10;

/// Turns of a separate thread run first, so the first measured turn is not a cold one.
const WARMUP_TURNS: usize = 5;

/// The thread every turn is added to.
const THREAD: &str = "bench-long-thread";

/// One measured turn.
struct TurnFigure {
    latency_ms: f64,
    /// Bytes the turn's checkpoint writes carried (`None` outside the slices).
    written: Option<u64>,
    /// The head state's size after the turn.
    head: Option<u64>,
}

/// Runs one thread of `turns` turns on each store named, printing a readable line and a JSON line
/// per slice, and returns the summary.
pub async fn run(args: &BenchArgs, turns: usize) -> Result<Value, BenchError> {
    let mut summary = json!({
        "bench": "baton.turns",
        "turns": turns,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    for store in &args.stores {
        let store = store.trim();
        let db_path =
            std::env::temp_dir().join(format!("baton-bench-turns-{}.db", std::process::id()));
        let settings = store_settings(args, store, &db_path)?;
        let engine = build_engine(&settings).await?;
        // Ids of this run only, so a shared PostgreSQL database can be measured again.
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        let result = measure(&engine, store, turns, &run_id).await;
        drop(engine);
        if store == "sqlite" {
            remove_db(&db_path);
        }
        summary[store] = result;
    }
    Ok(summary)
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The slices of `turns` turns: for each mark, the `SLICE` turns from it (the last `SLICE` turns
/// for a mark too close to the end), labelled by the mark.
fn slices(turns: usize) -> Vec<(usize, std::ops::RangeInclusive<usize>)> {
    let mut marks: Vec<usize> = MARKS.iter().copied().filter(|m| *m < turns).collect();
    marks.push(turns);
    marks.dedup();
    marks
        .into_iter()
        .map(|mark| {
            let last = (mark + SLICE - 1).min(turns);
            let first = last.saturating_sub(SLICE - 1).max(1).min(mark);
            (mark, first..=last)
        })
        .collect()
}

async fn measure(engine: &Engine, store_name: &str, turns: usize, run_id: &str) -> Value {
    let warmup = format!("{THREAD}-warmup-{run_id}");
    for _ in 0..WARMUP_TURNS {
        if let Err(e) = turn(engine, &warmup).await {
            return json!({"error": format!("warm-up: {e}")});
        }
    }
    let thread = format!("{THREAD}-{run_id}");
    let slices = slices(turns);
    let measured = |n: usize| slices.iter().any(|(_, range)| range.contains(&n));
    let mut figures = Vec::with_capacity(turns);
    let started = Instant::now();
    for n in 1..=turns {
        let before = match engine.store().get_checkpoint(&thread).await {
            Ok(head) => head.map_or(0, |h| h.version),
            Err(e) => return json!({"error": format!("turn {n}: {e}")}),
        };
        let t0 = Instant::now();
        if let Err(e) = turn(engine, &thread).await {
            return json!({"error": format!("turn {n}: {e}")});
        }
        let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let (written, head) = if measured(n) {
            match written_by(engine.store().as_ref(), &thread, before).await {
                Ok((written, head)) => (Some(written), Some(head)),
                Err(e) => return json!({"error": format!("turn {n}: counting bytes: {e}")}),
            }
        } else {
            (None, None)
        };
        figures.push(TurnFigure {
            latency_ms,
            written,
            head,
        });
    }
    let wall = started.elapsed().as_secs_f64();
    let mut lines = Vec::new();
    for (mark, range) in &slices {
        let slice = &figures[range.start() - 1..*range.end()];
        let mut latencies: Vec<f64> = slice.iter().map(|f| f.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let p50 = latencies[latencies.len() / 2];
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        let written = mean_of(slice.iter().filter_map(|f| f.written));
        let head = mean_of(slice.iter().filter_map(|f| f.head));
        println!(
            "{store_name:7} turn {mark:5} (turns {}-{})  latency p50 {p50:7.3} ms  mean {mean:7.3} ms  written {written:9.0} B/turn  head {head:8.0} B",
            range.start(),
            range.end()
        );
        let line = json!({
            "bench": "baton.turns",
            "store": store_name,
            "turn": mark,
            "slice": [range.start(), range.end()],
            "latency_p50_ms": round3(p50),
            "latency_mean_ms": round3(mean),
            "bytes_written_per_turn": written.round(),
            "head_state_bytes": head.round(),
        });
        println!("{line}");
        lines.push(line);
    }
    let ratio = |key: &str| {
        let first = lines.first().and_then(|l| l[key].as_f64()).unwrap_or(0.0);
        let last = lines.last().and_then(|l| l[key].as_f64()).unwrap_or(0.0);
        if first > 0.0 {
            round3(last / first)
        } else {
            0.0
        }
    };
    json!({
        "turns": turns,
        "wall_s": round3(wall),
        "latency_last_over_first": ratio("latency_p50_ms"),
        "bytes_last_over_first": ratio("bytes_written_per_turn"),
        "slices": lines,
    })
}

/// One turn of the bench's conversation on `thread`: the prompt, which the planner answers with
/// a question, then the answer, which completes it.
async fn turn(engine: &Engine, thread: &str) -> Result<(), String> {
    let first = engine
        .start(opening(Some(thread.to_owned())))
        .await
        .map_err(|e| e.to_string())?;
    if first.status != ThreadStatus::PendingUserInput {
        return Err(format!("start ended {:?}", first.status));
    }
    let second = engine
        .answer(thread, ANSWER, None)
        .await
        .map_err(|e| e.to_string())?;
    if second.status != ThreadStatus::Completed {
        return Err(format!("answer ended {:?}", second.status));
    }
    Ok(())
}

/// What the checkpoints written after version `before` carried (each state, each undo, and the
/// earlier turns appended to the turn log), and the head state's size now.
async fn written_by(
    store: &dyn Store,
    thread: &str,
    before: i64,
) -> Result<(u64, u64), crate::store::StoreError> {
    let Some(head) = store.get_checkpoint(thread).await? else {
        return Ok((0, 0));
    };
    let mut previous = match before {
        0 => None,
        v => store.checkpoint_at(thread, v).await?.map(|c| c.state),
    };
    // The turns this one's first write appended to the log (the turn it closed).
    let logged_before = previous.as_ref().map_or(0, |p| p.turn_index());
    let mut written: u64 = store
        .turns(thread, logged_before..head.state.earlier_turns)
        .await?
        .iter()
        .map(|t| json_len(&t.body))
        .sum();
    let mut head_bytes = 0;
    for version in before + 1..=head.version {
        let Some(checkpoint) = store.checkpoint_at(thread, version).await? else {
            continue;
        };
        let state = json_len(&checkpoint.state);
        head_bytes = state;
        written += state;
        if let Some(previous) = &previous {
            written += delta::undo(previous, &checkpoint.state).to_string().len() as u64;
        }
        previous = Some(checkpoint.state);
    }
    Ok((written, head_bytes))
}

fn json_len(value: &impl serde::Serialize) -> u64 {
    serde_json::to_string(value).map_or(0, |s| s.len() as u64)
}

fn mean_of(values: impl Iterator<Item = u64>) -> f64 {
    let values: Vec<u64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<u64>() as f64 / values.len() as f64
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_start_at_their_mark_and_stay_inside_the_thread() {
        assert_eq!(
            slices(2000),
            vec![
                (1, 1..=10),
                (10, 10..=19),
                (100, 100..=109),
                (500, 500..=509),
                (1000, 1000..=1009),
                (2000, 1991..=2000)
            ]
        );
        assert_eq!(slices(5), vec![(1, 1..=5), (5, 1..=5)]);
        assert_eq!(slices(1), vec![(1, 1..=1)]);
    }
}
