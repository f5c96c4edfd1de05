//! `baton chat` at a terminal: questions asked inline, answers read from standard input.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{ServerProcess, assert_contains_all, http, temp_db};

fn chat(args: &[&str], stdin: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton chat starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("answer written");
    let out = child.wait_with_output().expect("chat ends");
    assert!(
        out.status.success(),
        "chat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `baton chat` running the engine in its own process, over a fresh SQLite file.
fn chat_in_process(args: &[&str], stdin: &str) -> (String, String) {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--database-url", &url])
        .collect();
    chat(&args, stdin)
}

#[test]
fn chat_in_process_asks_at_the_terminal() {
    let (stdout, stderr) = chat_in_process(
        &["Help me analyze data but I need guidance"],
        "I want to analyze sales data\n",
    );
    assert_contains_all(&stdout, &["What type of data", "Analysis of sales data"]);
    assert!(stderr.contains("parse_prompt"), "progress shown: {stderr}");
}

#[test]
fn chat_against_a_server_over_websocket() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &[]);
    let (stdout, stderr) = chat(
        &["convert some money", "--server", &server.base],
        "100 USD to EUR\n",
    );
    assert_contains_all(&stdout, &["amount", "100 USD = "]);
    assert!(stderr.contains("execute_batch"), "progress shown: {stderr}");
}

#[test]
fn chat_leaves_a_thread_waiting_when_the_terminal_closes() {
    let (stdout, _) = chat_in_process(&["convert some money", "--thread-id", "later"], "");
    assert!(stdout.contains("thread later is waiting"), "{stdout}");
}

fn agents(server: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["agents", "--server", server])
        .args(args)
        .output()
        .expect("baton agents runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn agents_commands_manage_a_servers_directory() {
    let (dir, db) = temp_db();
    let server = ServerProcess::start(&db, &[]);
    let base = server.base.as_str();

    let (ok, out, _) = agents(base, &["list"]);
    assert!(ok && out.contains("demo.weather"), "{out}");
    let (ok, out, _) = agents(base, &["search", "forecast", "--min-rating", "4"]);
    assert!(
        ok && out
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("demo.weather")),
        "{out}"
    );

    let card = dir.path().join("card.json");
    std::fs::write(
        &card,
        r#"{"id": "geo", "name": "Geo", "description": "geocoding", "capabilities": ["geocode"],
            "endpoints": [{"endpoint": "http://127.0.0.1:9/geocode", "http_method": "GET"}]}"#,
    )
    .expect("card written");
    let (ok, out, err) = agents(base, &["add", &card.display().to_string()]);
    assert!(
        ok && out.contains("geo") && out.contains("rest"),
        "{out}{err}"
    );

    // The demo agents served over A2A, discovered by URL.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["demo-agents", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("demo agents start");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(demo.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("listening line");
    let demo_base = line
        .trim()
        .strip_prefix("demo agents listening on ")
        .expect("address")
        .to_owned();
    let (ok, out, err) = agents(base, &["discover", &format!("{demo_base}/news")]);
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(
        ok && out.contains("demo.news") && out.contains("a2a"),
        "{out}{err}"
    );

    let (ok, out, _) = agents(base, &["--json", "rate", "geo", "4"]);
    assert!(ok && out.contains("\"rating_count\": 1"), "{out}");
    let (ok, out, _) = agents(base, &["remove", "geo"]);
    assert!(ok && out.contains("removed geo"), "{out}");
    let (ok, _, err) = agents(base, &["remove", "geo"]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = agents(base, &["add", "/no/such/file.json"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_list_walks_every_page_of_a_large_directory() {
    use futures_util::StreamExt;

    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &["--no-demo-agents"]);
    let base = server.base.clone();
    // More cards than the server's largest page, so the list needs a second one.
    let count = baton::directory::service::MAX_PAGE + 150;
    let client = http();
    futures_util::stream::iter(0..count)
        .for_each_concurrent(16, |i| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let card = baton::cli::bench_directory::generated_card(i);
                let response = client
                    .post(format!("{base}/api/agents"))
                    .json(&card)
                    .send()
                    .await
                    .expect("registered");
                assert!(
                    response.status().is_success(),
                    "card {i}: {}",
                    response.status()
                );
            }
        })
        .await;
    let listed = tokio::task::spawn_blocking(move || agents(&base, &["list", "--json"]))
        .await
        .expect("the command ran");
    let (ok, out, err) = listed;
    assert!(ok, "{err}");
    let cards: Vec<serde_json::Value> = serde_json::from_str(&out).expect("a JSON array");
    let ids: std::collections::BTreeSet<&str> =
        cards.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(cards.len(), count, "every card listed once");
    assert_eq!(ids.len(), count, "no card listed twice");
}
