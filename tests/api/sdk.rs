//! Baton driven as an A2A agent by another implementation: the Python a2a-sdk's client
//! (`tests/python/drive_baton.py`) reads the card, sends a prompt that makes Baton ask, answers on
//! the same task and reads the final response, in v1.0 and, from the card's compatibility
//! fields, in v0.3, each blocking and streaming. The SDK is a test-only dependency that `.ci/run` installs into
//! `target/py-a2a`; without it this test fails, saying how to install it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::{PYTHON_SDK_INSTALL, python};
use crate::helpers::{assert_contains_all, spawn_app};

/// Runs the script against `base` in `version`; returns what it printed.
async fn drive(base: String, version: &'static str, streaming: bool) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/drive_baton.py");
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(script)
            .args([
                base.as_str(),
                "Help me analyze data but I need guidance",
                "I want to analyze sales data",
                "--version",
                version,
            ])
            .args(streaming.then_some("--streaming"))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} did not start ({e}); {PYTHON_SDK_INSTALL}",
                    python.display()
                )
            })
    })
    .await
    .expect("the script ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named"),
        "{PYTHON_SDK_INSTALL}\n{stderr}"
    );
    assert!(output.status.success(), "drive_baton.py failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "drive_baton.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn the_python_sdk_client_gets_a_question_answers_it_and_reads_the_response() {
    let app = spawn_app().await;
    for (version, interface, streaming) in [
        ("1.0", "1.0", false),
        ("1.0", "1.0", true),
        ("0.3", "0.3.0", false),
        ("0.3", "0.3.0", true),
    ] {
        let seen = drive(app.base(), version, streaming).await;
        assert_eq!(seen["card_name"], "Baton", "{seen}");
        assert_eq!(seen["streams"], true, "{seen}");
        assert_eq!(seen["interface_version"][0], interface, "{seen}");
        assert_eq!(seen["asked_state"], "TASK_STATE_INPUT_REQUIRED", "{seen}");
        let question = seen["question"].as_str().unwrap_or_default();
        assert!(question.starts_with("What type of data"), "{seen}");
        let context = seen["context_id"].as_str().unwrap_or_default();
        assert_eq!(seen["task_id"], format!("{context}:0"), "{seen}");
        assert_eq!(
            seen["done_task_id"], seen["task_id"],
            "the answer went to the same task"
        );
        assert_eq!(seen["done_state"], "TASK_STATE_COMPLETED", "{seen}");
        assert_contains_all(
            seen["artifact"].as_str().unwrap_or_default(),
            &["Analysis of sales"],
        );
        assert_eq!(seen["get_state"], "TASK_STATE_COMPLETED", "{seen}");
        assert_eq!(seen["get_artifact"], seen["artifact"], "{seen}");
        // The SDK's conversation is an ordinary thread.
        let (_, status) = app.status_of(context).await;
        assert_eq!(status["status"], "completed", "{status}");
    }
}
