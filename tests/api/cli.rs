//! `baton chat` at a terminal: questions asked inline, answers read from standard input.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{ServerProcess, temp_db};

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

#[test]
fn chat_in_process_asks_at_the_terminal() {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let (stdout, stderr) = chat(
        &[
            "Help me analyze data but I need guidance",
            "--database-url",
            &url,
        ],
        "I want to analyze sales data\n",
    );
    assert!(stdout.contains("What type of data"), "{stdout}");
    assert!(stdout.contains("Analysis of sales data"), "{stdout}");
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
    assert!(stdout.contains("amount"), "{stdout}");
    assert!(stdout.contains("100 USD = "), "{stdout}");
    assert!(stderr.contains("execute_batch"), "progress shown: {stderr}");
}

#[test]
fn chat_leaves_a_thread_waiting_when_the_terminal_closes() {
    let (_dir, db) = temp_db();
    let url = format!("sqlite://{}", db.display());
    let (stdout, _) = chat(
        &[
            "convert some money",
            "--database-url",
            &url,
            "--thread-id",
            "later",
        ],
        "",
    );
    assert!(stdout.contains("thread later is waiting"), "{stdout}");
}
