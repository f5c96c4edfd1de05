//! No internals in errors: a store that fails under a running binary is told to the client in
//! words it can act on, never with the database's message or a file path; the body carries the
//! request id its `x-request-id` header gives, and the `--log-json` line with that id has the
//! cause.

use serde_json::{Value, json};

use crate::helpers::{LoggingServer, chat_at, http, temp_db, thread_of};

/// Sends `request`; returns status, `x-request-id` and the JSON body.
async fn answered(request: reqwest::RequestBuilder) -> (u16, String, Value) {
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an x-request-id header")
        .to_owned();
    let body = response.json().await.expect("a JSON body");
    (status, id, body)
}

/// What a client must never read in an error: the database's own words, its names, its path.
fn assert_no_internals(body: &Value, db_path: &str) {
    let text = body.to_string();
    for internal in [
        "no such table",
        "_moved_away",
        "returned from database",
        "sqlx",
        "SQLITE",
        "sqlite",
        db_path,
    ] {
        assert!(!text.contains(internal), "{internal:?} in {body}");
    }
}

#[tokio::test]
async fn a_failing_store_is_told_without_internals_and_logged_under_the_request_id() {
    let (_dir, db) = temp_db();
    let db_path = db.display().to_string();
    let server = LoggingServer::start(&db);
    let base = server.server.base.clone();

    // Before the store breaks: a thread to read back, and a 4xx that carries its id too.
    let (code, reply) = chat_at(&base, "What's the weather in Paris").await;
    assert_eq!(code, 200, "{reply}");
    let thread = thread_of(&reply);
    let (code, id, body) = answered(http().get(format!("{base}/api/chat/status/nope"))).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["request_id"], id.as_str(), "{body}");

    // The tables move away underneath the running server.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db_path}"))
        .await
        .expect("the server's file");
    for table in ["threads", "agents"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} RENAME TO {table}_moved_away"
        )))
        .execute(&pool)
        .await
        .expect("renamed");
    }
    pool.close().await;

    // A read (the id made by the server) and a write (the id the caller chose).
    let (code, read_id, read) =
        answered(http().get(format!("{base}/api/chat/status/{thread}"))).await;
    assert_eq!(code, 503, "{read}");
    assert_eq!(read["request_id"], read_id.as_str(), "{read}");
    assert_no_internals(&read, &db_path);
    let error = read["error"].as_str().expect("error");
    assert!(
        error.contains("thread store") && error.contains("try again"),
        "{error}"
    );
    assert_eq!(read["error_message"], read["error"]);

    let (code, write_id, write) = answered(
        http()
            .post(format!("{base}/api/agents/demo.weather/rate"))
            .header("x-request-id", "broken-store-rate-1")
            .json(&json!({"rating": 5})),
    )
    .await;
    assert_eq!(code, 503, "{write}");
    assert_eq!(write_id, "broken-store-rate-1");
    assert_eq!(write["request_id"], "broken-store-rate-1", "{write}");
    assert_no_internals(&write, &db_path);
    assert!(
        write["error"]
            .as_str()
            .is_some_and(|e| e.contains("agent directory store")),
        "{write}"
    );

    let lines = server.kill_and_read_log();
    let logged = |id: &str| -> Value {
        lines
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|o| o["level"] == "ERROR" && o["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no error line for request {id}: {lines:#?}"))
    };
    for (id, table) in [(read_id.as_str(), "threads"), (write_id.as_str(), "agents")] {
        let line = logged(id);
        let cause = line["fields"]["error"].as_str().expect("error field");
        assert!(
            cause.contains(&format!("no such table: {table}")),
            "the log has the cause: {line}"
        );
        assert_eq!(line["fields"]["status"], 503, "{line}");
        let in_request = line["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|s| s["name"] == "request" && s["request_id"] == id)
        });
        assert!(in_request, "inside the request's span: {line}");
    }
}
