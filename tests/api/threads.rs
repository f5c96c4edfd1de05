//! Threads: the list (newest first, pages, status filter), delete (and the original system's
//! `DELETE /api/chat/{id}`), and forks (time travel), each on SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use baton::agents::a2a::server::{self, Handler, Versions};
use baton::agents::a2a::wire::{
    Message, Part, Role, RpcError, RpcRequest, Task, TaskState, TaskStatus,
};
use baton::config::Settings;
use baton::store::list_sql;
use serde_json::{Value, json};

use crate::helpers::{
    QueryPlans, TestApp, assert_refused, eventually, http, on_both_stores, serve_on_loopback,
    thread_of,
};

fn demo(_: &mut Settings) {}

/// DELETEs; returns status and the JSON body (`null` for a 204).
async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    let response = http()
        .delete(app.url(path))
        .send()
        .await
        .expect("delete sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    if status == 204 {
        assert!(text.is_empty(), "a 204 has no body: {text:?}");
        return (status, Value::Null);
    }
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("body is not JSON ({status}): {text:?}"));
    (status, body)
}

/// The ids a page lists, in order.
fn ids(page: &Value) -> Vec<String> {
    page["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("threads: {page}"))
        .iter()
        .map(|t| t["thread_id"].as_str().expect("id").to_owned())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (code, page) = app.get(&format!("/api/threads{query}")).await;
    assert_eq!(code, 200, "{query}: {page}");
    page
}

/// Starts a thread that completes at once; a pause after it keeps the threads' update times
/// apart, so the expected order does not rest on a tie-break.
async fn completed_thread(app: &TestApp) -> String {
    let r = app.chat("Find me a weather agent").await;
    assert_eq!(r["status"], "completed", "{r}");
    tokio::time::sleep(Duration::from_millis(3)).await;
    thread_of(&r)
}

#[tokio::test]
async fn the_list_is_newest_first_in_pages_that_neither_repeat_nor_skip() {
    on_both_stores(demo, |app| async move {
        let empty = list(&app, "").await;
        assert_eq!(empty, json!({"threads": [], "next_cursor": null}));
        let mut created = Vec::new();
        for _ in 0..5 {
            created.push(completed_thread(&app).await);
        }
        let waiting = app.chat("Help me analyze data but I need guidance").await;
        assert_eq!(waiting["status"], "pending_user_input");
        created.push(thread_of(&waiting));
        tokio::time::sleep(Duration::from_millis(3)).await;

        let page = list(&app, "").await;
        let newest_first: Vec<String> = created.iter().rev().cloned().collect();
        assert_eq!(ids(&page), newest_first);
        assert_eq!(page["next_cursor"], Value::Null);
        let first = &page["threads"][0];
        assert_eq!(first["status"], "pending_user_input");
        assert_eq!(first["question_for_user"], waiting["question_for_user"]);
        assert_eq!(first["prompt"], "Help me analyze data but I need guidance");
        assert_eq!(first["turns"], 1);
        assert!(first["version"].as_i64().is_some_and(|v| v > 1), "{first}");
        assert!(first["created_at"].as_i64() <= first["updated_at"].as_i64());
        assert_eq!(page["threads"][1]["question_for_user"], Value::Null);

        // A new turn on the oldest thread moves it to the front; it keeps its first prompt.
        let (code, second) = app.chat_in(&created[0], "What's the weather in Oslo").await;
        assert_eq!(code, 200, "{second}");
        tokio::time::sleep(Duration::from_millis(3)).await;
        let page = list(&app, "").await;
        let mut expected = vec![created[0].clone()];
        expected.extend(created[1..].iter().rev().cloned());
        assert_eq!(ids(&page), expected);
        assert_eq!(page["threads"][0]["turns"], 2);
        assert_eq!(page["threads"][0]["prompt"], "Find me a weather agent");

        // Pages of two, with new threads created between pages.
        let mut seen = Vec::new();
        let mut newer = Vec::new();
        let mut query = "?limit=2".to_owned();
        loop {
            let page = list(&app, &query).await;
            let listed = ids(&page);
            assert!(listed.len() <= 2, "{page}");
            seen.extend(listed);
            let Some(cursor) = page["next_cursor"].as_str() else {
                break;
            };
            newer.push(completed_thread(&app).await);
            query = format!("?limit=2&cursor={cursor}");
        }
        assert_eq!(seen, expected, "every thread once, in order");
        let fresh = list(&app, "").await;
        let mut now_expected: Vec<String> = newer.iter().rev().cloned().collect();
        now_expected.extend(expected);
        assert_eq!(
            ids(&fresh),
            now_expected,
            "the threads created meanwhile come first"
        );

        // The status filter, alone and with pages.
        let pending = list(&app, "?status=pending_user_input").await;
        assert_eq!(ids(&pending), vec![created[5].clone()]);
        let completed = list(&app, "?status=completed&limit=100").await;
        assert_eq!(ids(&completed).len(), now_expected.len() - 1);
        assert!(!ids(&completed).contains(&created[5]));
        let first_two = list(&app, "?status=completed&limit=2").await;
        let cursor = first_two["next_cursor"].as_str().expect("more pages");
        let rest = list(
            &app,
            &format!("?status=completed&limit=100&cursor={cursor}"),
        )
        .await;
        let mut paged = ids(&first_two);
        paged.extend(ids(&rest));
        assert_eq!(paged, ids(&completed));
        assert_eq!(
            ids(&list(&app, "?status=cancelled").await),
            Vec::<String>::new()
        );
    })
    .await;
}

#[tokio::test]
async fn bad_list_parameters_are_refused_naming_what_is_allowed() {
    on_both_stores(demo, |app| async move {
        let body = assert_refused(app.get("/api/threads?status=bogus").await, 422, "bogus");
        for status in [
            "processing",
            "pending_user_input",
            "completed",
            "error",
            "cancelled",
        ] {
            assert!(
                body["error"].as_str().unwrap_or("").contains(status),
                "{body}"
            );
        }
        for limit in ["0", "201", "ten", "-1"] {
            assert_refused(
                app.get(&format!("/api/threads?limit={limit}")).await,
                422,
                "limit must be an integer from 1 to 200",
            );
        }
        for cursor in ["zz", "abc", "00", "6162"] {
            assert_refused(
                app.get(&format!("/api/threads?cursor={cursor}")).await,
                422,
                "cursor",
            );
        }
        let (code, page) = app.get("/api/threads?limit=200").await;
        assert_eq!(code, 200, "{page}");
    })
    .await;
}

#[tokio::test]
async fn listing_walks_an_index_on_both_databases() {
    let mut plans = QueryPlans::new().await;
    for (filtered, after) in [(false, false), (true, false), (false, true), (true, true)] {
        let sql = list_sql(filtered, after);
        let index = if filtered {
            "threads_status_recent"
        } else {
            "threads_recent"
        };
        let plan = plans.sqlite(&sql).await;
        assert!(plan.contains(index), "sqlite {sql}:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sqlite sorts: {plan}");

        let mut explain = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"))).bind(10_i64);
        if filtered {
            explain = explain.bind("completed");
        }
        if after {
            explain = explain.bind(5_i64).bind("t");
        }
        let plan = plans.postgres(explain).await;
        assert!(
            plan.contains(&format!("Index Scan Backward using {index}")),
            "postgres {sql}:\n{plan}"
        );
        assert!(!plan.contains("Sort"), "postgres sorts: {plan}");
    }
}

#[tokio::test]
async fn a_deleted_thread_is_gone_with_its_history() {
    on_both_stores(demo, |app| async move {
        let gone = completed_thread(&app).await;
        let kept = completed_thread(&app).await;
        let waiting = thread_of(&app.chat("Help me analyze data but I need guidance").await);
        let (code, body) = delete(&app, &format!("/api/threads/{gone}")).await;
        assert_eq!((code, &body), (204, &Value::Null));
        for path in [
            format!("/api/chat/status/{gone}"),
            format!("/api/threads/{gone}/history"),
            format!("/api/threads/{gone}/checkpoint"),
            format!("/api/threads/{gone}/checkpoints/1"),
        ] {
            let (code, body) = app.get(&path).await;
            assert_eq!(code, 404, "{path}: {body}");
        }
        let listed = ids(&list(&app, "").await);
        assert!(
            !listed.contains(&gone) && listed.contains(&kept),
            "{listed:?}"
        );
        let again = assert_refused(
            delete(&app, &format!("/api/threads/{gone}")).await,
            404,
            &gone,
        );
        assert_eq!(again["thread_id"], gone.as_str());

        // A thread waiting for the user is deleted too, and cannot be answered afterwards.
        let (code, _) = delete(&app, &format!("/api/threads/{waiting}")).await;
        assert_eq!(code, 204);
        let (code, body) = app.answer(&waiting, "sales data").await;
        assert_eq!(code, 404, "{body}");

        // Its id is free again, and the new thread's history starts afresh.
        let (code, reborn) = app.chat_in(&gone, "Find me a weather agent").await;
        assert_eq!(code, 200, "{reborn}");
        let (_, history) = app.get(&format!("/api/threads/{gone}/history")).await;
        let history = history.as_array().expect("entries").clone();
        assert_eq!(history.last().expect("first")["version"], 1);
        assert_eq!(history.iter().filter(|e| e["node"] == "start").count(), 1);

        assert_refused(
            delete(&app, "/api/threads/bad%20id").await,
            422,
            "thread_id",
        );
    })
    .await;
}

fn slow_weather(s: &mut Settings) {
    s.demo_latency = vec![("weather".to_owned(), 2_500)];
}

#[tokio::test]
async fn a_running_thread_is_not_deleted() {
    on_both_stores(slow_weather, |app| async move {
        let thread = format!("run-{}", uuid::Uuid::now_v7().simple());
        let url = app.url("/api/chat");
        let body = json!({"prompt": "What's the weather in Paris", "thread_id": thread});
        let run = tokio::spawn(async move { http().post(url).json(&body).send().await });
        let path = format!("/api/threads/{thread}/checkpoint");
        eventually(
            "the run is in its agent call",
            Duration::from_secs(10),
            || async {
                let (code, cp) = app.get(&path).await;
                (code == 200 && cp["next"] == "execute_batch").then_some(())
            },
        )
        .await;
        let refused = assert_refused(
            delete(&app, &format!("/api/threads/{thread}")).await,
            409,
            "running",
        );
        assert_eq!(refused["thread_id"], thread.as_str());
        assert_refused(
            delete(&app, &format!("/api/chat/{thread}")).await,
            409,
            "running",
        );
        let done = run.await.expect("joined").expect("answered");
        assert_eq!(done.status().as_u16(), 200);
        let (_, status) = app.status_of(&thread).await;
        assert_eq!(
            status["status"], "completed",
            "the refused delete changed nothing"
        );
        let (code, _) = delete(&app, &format!("/api/threads/{thread}")).await;
        assert_eq!(code, 204);
    })
    .await;
}

#[tokio::test]
async fn the_original_systems_delete_keeps_its_shape() {
    on_both_stores(demo, |app| async move {
        let thread = completed_thread(&app).await;
        let (code, body) = delete(&app, &format!("/api/chat/{thread}")).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            body,
            json!({"message": format!("Conversation {thread} cleared successfully")})
        );
        let (code, _) = app.status_of(&thread).await;
        assert_eq!(code, 404);
        let (code, body) = delete(&app, &format!("/api/chat/{thread}")).await;
        assert_eq!(code, 404, "{body}");
        assert_eq!(body["detail"], "Conversation thread not found");
        assert_eq!(body["status"], "error");
        assert_eq!(body["thread_id"], thread.as_str());
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(&thread)),
            "{body}"
        );
    })
    .await;
}

/// A message as the agent received it: the task it continues, and its text parts.
type Received = (Option<String>, Vec<String>);

/// An A2A weather agent that asks which day on a first message, and answers a message that
/// continues its task, or a new one that carries an answer after the request (a fork's).
#[derive(Clone, Default)]
struct DayAsker {
    /// Each message received: its task id and its text parts.
    seen: Arc<Mutex<Vec<Received>>>,
}

impl DayAsker {
    fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }
}

fn task(state: TaskState, text: &str) -> Task {
    Task {
        id: Some("paris-task".to_owned()),
        context_id: Some("paris-context".to_owned()),
        status: TaskStatus {
            state,
            message: Some(Message::new(Role::Agent, vec![Part::Text(text.to_owned())])),
        },
        artifacts: Vec::new(),
        history: Vec::new(),
    }
}

#[async_trait]
impl Handler for DayAsker {
    async fn send(&self, message: Message) -> Result<Task, RpcError> {
        let texts: Vec<String> = message
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.clone()),
                Part::Data(_) => None,
            })
            .collect();
        self.seen
            .lock()
            .expect("lock")
            .push((message.task_id.clone(), texts.clone()));
        let day = texts.last().cloned().unwrap_or_default();
        Ok(if message.task_id.is_some() || texts.len() > 1 {
            task(TaskState::Completed, &format!("Paris on {day}: sunny"))
        } else {
            task(TaskState::InputRequired, "Which day do you mean?")
        })
    }
}

async fn rpc(State(agent): State<DayAsker>, headers: HeaderMap, request: RpcRequest) -> Response {
    server::answer(&request, &headers, Versions::Both, &agent).await
}

fn no_demo(s: &mut Settings) {
    s.no_demo_agents = true;
}

#[tokio::test]
async fn a_fork_of_a_waiting_thread_is_answered_apart_from_the_original() {
    on_both_stores(no_demo, |app| async move {
        let agent = DayAsker::default();
        let served = {
            let agent = agent.clone();
            serve_on_loopback(|_| Router::new().route("/", post(rpc)).with_state(agent)).await
        };
        let card = json!({
            "id": "paris", "name": "Paris Weather", "url": format!("{served}/"),
            "protocolVersion": "1.0", "description": "Weather forecasts for Paris",
            "skills": [{"id": "forecast", "name": "Weather forecast",
                        "description": "Forecast for Paris", "tags": ["weather", "forecast", "paris"]}]
        });
        let (code, stored) = app.register(&card).await;
        assert_eq!(code, 201, "{stored}");

        let original = app.chat("What's the weather in Paris").await;
        assert_eq!(original["status"], "pending_user_input", "{original}");
        let thread = thread_of(&original);
        let (_, head) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
        let version = head["version"].as_i64().expect("version");

        let (code, fork) = app
            .post(
                &format!("/api/threads/{thread}/fork"),
                &json!({"version": version, "thread_id": format!("{thread}-b")}),
            )
            .await;
        assert_eq!(code, 201, "{fork}");
        let forked = format!("{thread}-b");
        assert_eq!(fork["thread_id"], forked.as_str());
        assert_eq!(fork["status"], "pending_user_input");
        assert_eq!(fork["question_for_user"], original["question_for_user"]);
        assert_eq!(fork["task_agent_pairs"], original["task_agent_pairs"]);
        let (_, after_fork) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
        assert_eq!(after_fork, head, "the original is untouched");

        // The fork's history starts at the fork and names its origin.
        let (_, history) = app.get(&format!("/api/threads/{forked}/history")).await;
        let first = history.as_array().and_then(|h| h.last()).expect("entry");
        assert_eq!(first["version"], 1);
        assert_eq!(first["node"], "fork");
        assert_eq!(first["status"], "pending_user_input");
        assert_eq!(first["forked_from"], json!({"thread_id": thread, "version": version}));

        let (code, a) = app.answer(&thread, "Tuesday").await;
        assert_eq!(code, 200, "{a}");
        let (code, b) = app.answer(&forked, "Friday").await;
        assert_eq!(code, 200, "{b}");
        assert_eq!(a["status"], "completed");
        assert_eq!(b["status"], "completed");
        let (a, b) = (a["final_response"].to_string(), b["final_response"].to_string());
        assert!(a.contains("Tuesday") && !a.contains("Friday"), "{a}");
        assert!(b.contains("Friday") && !b.contains("Tuesday"), "{b}");

        // The original's answer went to the agent's task; the fork's opened a new call that
        // carries the request and its answer, so no agent task got two answers.
        let seen = agent.seen();
        assert_eq!(seen.len(), 3, "{seen:?}");
        let original_answer = seen.iter().find(|(_, t)| t.last().is_some_and(|t| t == "Tuesday"));
        assert_eq!(
            original_answer.map(|(task, texts)| (task.as_deref(), texts.len())),
            Some((Some("paris-task"), 1)),
            "{seen:?}"
        );
        let fork_answer = seen
            .iter()
            .find(|(_, t)| t.last().is_some_and(|t| t == "Friday"))
            .expect("the fork's answer reached the agent");
        assert_eq!(fork_answer.0, None, "{seen:?}");
        assert!(fork_answer.1[0].contains("weather in Paris"), "{seen:?}");

        // Cancelling or deleting one branch leaves the other alone.
        let (code, _) = delete(&app, &format!("/api/threads/{forked}")).await;
        assert_eq!(code, 204);
        let (code, status) = app.status_of(&thread).await;
        assert_eq!((code, &status["status"]), (200, &json!("completed")));
    })
    .await;
}

#[tokio::test]
async fn a_fork_of_a_finished_turn_takes_a_new_prompt_and_a_fork_of_a_running_one_runs_on() {
    on_both_stores(demo, |app| async move {
        let first = app.chat("What's the weather in Paris").await;
        assert_eq!(first["status"], "completed", "{first}");
        let thread = thread_of(&first);
        let (_, turn_one) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
        let end_of_turn_one = turn_one["version"].as_i64().expect("version");
        let (code, second) = app.chat_in(&thread, "Convert 100 USD to EUR").await;
        assert_eq!(code, 200, "{second}");

        let (code, fork) = app
            .post(
                &format!("/api/threads/{thread}/fork"),
                &json!({"version": end_of_turn_one}),
            )
            .await;
        assert_eq!(code, 201, "{fork}");
        let forked = thread_of(&fork);
        assert_ne!(forked, thread);
        assert_eq!(fork["status"], "completed");
        assert_eq!(fork["final_response"], first["final_response"]);

        let (code, other) = app
            .chat_in(&forked, "What will the weather be in Oslo")
            .await;
        assert_eq!(code, 200, "{other}");
        assert_eq!(other["status"], "completed", "{other}");
        let (_, fork_state) = app.get(&format!("/api/threads/{forked}/checkpoint")).await;
        let (code, earlier) = app.get(&format!("/api/threads/{forked}/turns")).await;
        assert_eq!(code, 200, "{earlier}");
        let turns = earlier["turns"].as_array().expect("turns");
        assert_eq!(
            (turns.len(), &earlier["earlier_turns"]),
            (1, &json!(1)),
            "the fork's earlier turn is the original's first: {earlier}"
        );
        assert_eq!(turns[0]["prompt"], "What's the weather in Paris");
        assert_eq!(
            fork_state["state"]["forked_from"],
            json!({"thread_id": thread, "version": end_of_turn_one}),
            "a new turn stays a fork"
        );
        let (_, original) = app.get(&format!("/api/threads/{thread}/checkpoint")).await;
        assert_eq!(original["state"]["prompt"], "Convert 100 USD to EUR");
        assert_eq!(
            original["state"]["final_response"],
            second["final_response"]
        );

        // Version 1 was written while the run was processing: the fork runs on from there.
        let (code, rerun) = app
            .post(
                &format!("/api/threads/{thread}/fork"),
                &json!({"version": 1}),
            )
            .await;
        assert_eq!(code, 201, "{rerun}");
        assert_eq!(rerun["status"], "completed", "{rerun}");
        assert_eq!(rerun["final_response"], first["final_response"]);
        let (_, history) = app
            .get(&format!("/api/threads/{}/history", thread_of(&rerun)))
            .await;
        let nodes: Vec<&str> = history
            .as_array()
            .expect("entries")
            .iter()
            .rev()
            .filter_map(|e| e["node"].as_str())
            .collect();
        assert_eq!(nodes.first(), Some(&"fork"), "{nodes:?}");
        assert!(nodes.contains(&"execute_batch"), "{nodes:?}");
    })
    .await;
}

#[tokio::test]
async fn fork_errors() {
    on_both_stores(demo, |app| async move {
        let thread = completed_thread(&app).await;
        let other = completed_thread(&app).await;
        let path = format!("/api/threads/{thread}/fork");
        assert_refused(
            app.post("/api/threads/nobody/fork", &json!({"version": 1}))
                .await,
            404,
            "nobody",
        );
        assert_refused(
            app.post(&path, &json!({"version": 999})).await,
            404,
            "version 999",
        );
        assert_refused(
            app.post(&path, &json!({"version": 1, "thread_id": other}))
                .await,
            409,
            "already exists",
        );
        assert_refused(
            app.post(&path, &json!({"version": 1, "thread_id": "bad id!"}))
                .await,
            422,
            "thread_id",
        );
        assert_refused(app.post(&path, &json!({})).await, 422, "version");
        assert_refused(
            app.post(&path, &json!({"version": "two"})).await,
            422,
            "version",
        );
        assert_refused(app.post_raw(&path, b"{".to_vec()).await, 400, "JSON");
        let (_, history) = app.get(&format!("/api/threads/{other}/history")).await;
        let entries = history.as_array().expect("entries");
        assert!(entries.iter().all(|e| e["node"] != "fork"), "{history}");
        let (_, status) = app.status_of(&other).await;
        assert_eq!(
            status["status"], "completed",
            "a refused fork left it alone"
        );
    })
    .await;
}
