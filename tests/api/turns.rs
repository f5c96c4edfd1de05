//! Long threads: earlier turns live in the store's turn log, not in the head state. Through the
//! real server on SQLite and PostgreSQL, a thread of 30 turns driven over Baton's A2A face still
//! lists and gets its early turns, finds the turn a resent message opened, forks at an early
//! version with the right earlier turns, deletes its log with it, and keeps a head checkpoint
//! whose size does not grow with its turns.

use baton::store::StoreOptions;
use serde_json::{Value, json};

use crate::face::rpc;
use crate::helpers::{TestApp, on_both_stores};

const TURNS: usize = 30;

fn prompt(turn: usize) -> String {
    format!("What's the weather in Paris, turn {turn}")
}

/// A v1.0 `SendMessage` in thread `context` with this message id; returns the task.
async fn send(app: &TestApp, context: &str, message_id: &str, text: &str) -> Value {
    let message = json!({"messageId": message_id, "contextId": context, "role": "ROLE_USER",
        "parts": [{"text": text}]});
    let body = rpc(app, true, "SendMessage", json!({ "message": message })).await;
    body["result"]["task"].clone()
}

/// The head checkpoint: its version and the byte length of its state as JSON.
async fn head(app: &TestApp, thread: &str) -> (i64, usize, Value) {
    let (code, checkpoint) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
    assert_eq!(code, 200, "{checkpoint}");
    let state = checkpoint["state"].clone();
    (
        checkpoint["version"].as_i64().expect("version"),
        state.to_string().len(),
        state,
    )
}

#[tokio::test]
async fn a_thread_of_30_turns_keeps_its_early_turns_outside_a_head_that_does_not_grow() {
    on_both_stores(
        |_| {},
        |app| async move {
            let thread = format!("long-{}", uuid::Uuid::now_v7().simple());
            let mut versions = Vec::new();
            let mut head_bytes = Vec::new();
            for turn in 0..TURNS {
                let task = send(&app, &thread, &format!("m-{turn}"), &prompt(turn)).await;
                assert_eq!(task["id"], format!("{thread}:{turn}"), "{task}");
                assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{task}");
                let (version, bytes, state) = head(&app, &thread).await;
                assert_eq!(state["earlier_turns"], turn, "{state}");
                assert!(
                    state.get("history").is_none(),
                    "no turns in the head: {state}"
                );
                versions.push(version);
                head_bytes.push(bytes);
            }
            // The head at turn 30 is the head at turn 2 with other digits in it.
            let (at_2, at_30) = (head_bytes[1], head_bytes[TURNS - 1]);
            assert!(
                at_30 <= at_2 + 64,
                "the head grew with the turns: {at_2} bytes at turn 2, {at_30} at turn 30"
            );

            // ListTasks: every turn, newest first; an early one as it ended.
            let listed = rpc(&app, true, "ListTasks", json!({"contextId": thread})).await;
            let tasks = listed["result"]["tasks"].as_array().expect("tasks");
            let ids: Vec<String> = tasks
                .iter()
                .filter_map(|t| t["id"].as_str().map(str::to_owned))
                .collect();
            let expected: Vec<String> = (0..TURNS).rev().map(|n| format!("{thread}:{n}")).collect();
            assert_eq!(ids, expected);
            let third = &tasks[TURNS - 1 - 3];
            assert_eq!(third["status"]["state"], "TASK_STATE_COMPLETED", "{third}");
            assert_eq!(third["history"][0]["messageId"], "m-3", "{third}");
            assert_eq!(
                third["history"][0]["parts"][0]["text"],
                prompt(3),
                "{third}"
            );

            // GetTask of an early turn: the same task.
            let got = rpc(&app, true, "GetTask", json!({"id": format!("{thread}:3")})).await;
            let got = &got["result"];
            assert_eq!(
                (&got["id"], &got["status"], &got["history"]),
                (&third["id"], &third["status"], &third["history"]),
                "{got}"
            );
            let response = got["artifacts"][0]["parts"][0]["text"]
                .as_str()
                .unwrap_or("");
            assert!(response.contains("Weather in Paris"), "{got}");
            let beyond = rpc(
                &app,
                true,
                "GetTask",
                json!({"id": format!("{thread}:{TURNS}")}),
            )
            .await;
            assert_eq!(beyond["error"]["code"], -32001, "{beyond}");

            // The message that opened turn 3, sent again: turn 3, not a new turn.
            let again = send(&app, &thread, "m-3", &prompt(3)).await;
            assert_eq!(again, *got, "the resent message gets its own turn back");
            let (version, _, state) = head(&app, &thread).await;
            assert_eq!(
                (version, &state["earlier_turns"]),
                (versions[TURNS - 1], &json!(TURNS - 1)),
                "no turn was added"
            );

            // A fork at the end of turn 5 has turns 0 to 4 before it, and turn 5 as its own.
            let (code, fork) = app
                .post(
                    &format!("/api/threads/{thread}/fork"),
                    &json!({"version": versions[5]}),
                )
                .await;
            assert_eq!(code, 201, "{fork}");
            let forked = fork["thread_id"].as_str().expect("fork id").to_owned();
            let (code, earlier) = app.get(&format!("/api/threads/{forked}/turns")).await;
            assert_eq!(code, 200, "{earlier}");
            let prompts: Vec<&str> = earlier["turns"]
                .as_array()
                .expect("turns")
                .iter()
                .filter_map(|t| t["prompt"].as_str())
                .collect();
            let expected: Vec<String> = (0..5).map(prompt).collect();
            assert_eq!(prompts, expected, "{earlier}");
            assert_eq!(earlier["earlier_turns"], 5);
            let (_, _, fork_state) = head(&app, &forked).await;
            assert_eq!(fork_state["prompt"], prompt(5));

            // Pages of the log.
            let (_, page) = app
                .get(&format!("/api/threads/{thread}/turns?from=10&limit=5"))
                .await;
            assert_eq!(page["turns"][0]["turn"], 10, "{page}");
            assert_eq!(page["turns"][4]["prompt"], prompt(14), "{page}");
            assert_eq!(page["next_from"], 15, "{page}");
            let (code, bad) = app
                .get(&format!("/api/threads/{thread}/turns?limit=0"))
                .await;
            assert_eq!(code, 422, "{bad}");

            // Deleting the thread deletes its turn log; the fork keeps its own copy.
            let store = baton::store::connect(&app.database_url, &StoreOptions::default())
                .await
                .expect("the server's database");
            assert_eq!(
                store.turns(&thread, 0..100).await.expect("turns").len(),
                TURNS - 1
            );
            let code = app.delete(&format!("/api/threads/{thread}")).await;
            assert_eq!(code, 204);
            assert!(
                store
                    .turns(&thread, 0..100)
                    .await
                    .expect("turns")
                    .is_empty(),
                "the deleted thread's turns are gone"
            );
            assert_eq!(store.turns(&forked, 0..100).await.expect("turns").len(), 5);
        },
    )
    .await;
}
