//! Bad input and races: every refusal has the right status and a JSON body saying what is wrong.

use serde_json::json;

use crate::helpers::{
    assert_one_won, assert_refused, race_answers, spawn_app, spawn_app_with, thread_of,
};

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in [
        &b"{not json"[..],
        b"",
        b"{\"prompt\": \"x\"",
        b"{} trailing",
    ] {
        let (code, r) = app.post_raw("/api/chat", body.to_vec()).await;
        assert_eq!(code, 400, "{body:?}");
        assert!(r["error"].as_str().expect("error").contains("JSON"), "{r}");
    }
}

#[tokio::test]
async fn wrong_shapes_are_422_with_the_reason() {
    let app = spawn_app().await;
    let chat = vec![
        (json!({}), "prompt"),
        (json!({"prompt": 12}), "string"),
        (json!({"prompt": "   "}), "blank"),
        (json!({"prompt": "x", "max_results": 0}), "max_results"),
        (json!({"prompt": "x", "max_results": 51}), "max_results"),
        (json!({"prompt": "x", "max_results": -3}), "max_results"),
        (json!({"prompt": "x", "max_results": "five"}), "max_results"),
        (json!({"prompt": "x", "thread_id": ""}), "thread_id"),
        (json!({"prompt": "x", "thread_id": "a/b"}), "thread_id"),
        (
            json!({"prompt": "x", "thread_id": "x".repeat(129)}),
            "thread_id",
        ),
        (json!(["prompt"]), "object"),
        (json!("prompt"), "object"),
    ];
    let answer = vec![
        (json!({"thread_id": "t"}), "response"),
        (json!({"response": "x"}), "thread_id"),
        (json!({"response": "", "thread_id": "t"}), "blank"),
    ];
    for (path, cases) in [("/api/chat", chat), ("/api/chat/continue", answer)] {
        for (body, needle) in cases {
            let (code, r) = app.post(path, &body).await;
            assert_eq!(code, 422, "{path} {body}: {r}");
            let error = r["error"].as_str().expect("error");
            assert!(error.contains(needle), "{path} {body}: {error}");
        }
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(|s| s.max_body_bytes = 4096).await;
    let big = json!({ "prompt": "x".repeat(10_000) });
    let (code, r) = app.post("/api/chat", &big).await;
    assert_eq!(code, 413);
    assert!(r["error"].is_string());
    let (code, _) = app
        .post("/api/chat", &json!({"prompt": "weather in Oslo"}))
        .await;
    assert_eq!(code, 200, "small bodies still work");
}

#[tokio::test]
async fn default_body_limit_is_one_mebibyte() {
    let app = spawn_app().await;
    let big = json!({ "prompt": "x".repeat(1024 * 1024 + 10) });
    let (code, _) = app.post("/api/chat", &big).await;
    assert_eq!(code, 413);
}

#[tokio::test]
async fn unknown_threads_are_404_and_finished_ones_409() {
    let app = spawn_app().await;
    assert_refused(app.get("/api/chat/status/nope").await, 404, "nope");
    let (code, _) = app.answer("nope", "hello").await;
    assert_eq!(code, 404);
    let done = app.chat("Find me a weather agent").await;
    let (code, r) = app.answer(&thread_of(&done), "hello").await;
    assert_eq!(code, 409);
    assert_eq!(r["status"], "error");
    assert_eq!(r["thread_id"], done["thread_id"]);
    let (code, r) = app.get("/api/no/such/route").await;
    assert_eq!(code, 404);
    assert!(r["error"].is_string());
}

#[tokio::test]
async fn a_body_without_content_type_is_still_read() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/chat"))
        .body(r#"{"prompt":"Find me a weather agent"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn sixteen_racing_answers_one_wins() {
    let app = spawn_app().await;
    let r = app.chat("Help me analyze data but I need guidance").await;
    let thread = thread_of(&r);
    let replies = race_answers(&[app.base()], &thread, "I want to analyze sales data").await;
    assert_one_won(&replies);
    let state = app.state_of(&thread).await;
    assert_eq!(state["answers"].as_array().expect("answers").len(), 1);
    assert_eq!(state["status"], "completed");
}

#[tokio::test]
async fn answering_another_question_id_is_refused() {
    let app = spawn_app().await;
    let r = app.chat("convert some money").await;
    let thread = thread_of(&r);
    let (code, _) = app
        .answer_question(&thread, "100 USD to EUR", &json!("q9"))
        .await;
    assert_eq!(code, 409);
    let (code, r) = app
        .answer_question(&thread, "100 USD to EUR", &json!("q1"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(r["status"], "completed");
}

#[tokio::test]
async fn odd_text_never_breaks_a_thread() {
    let app = spawn_app().await;
    let long_word = "w".repeat(5000);
    let prompts = [
        "ẞ ticker: X and convert ẞ100 € to ¥",
        "Actually\u{0301} İnstead ﬁnd ſomething",
        "🌦️ weather in 東京 and translate 'こんにちは' into French",
        "\u{202e}rehtaew\u{202c} in Paris",
        "and and and then then.",
        "\"unterminated quote: summarize",
        "\u{0000}\u{0007} weather",
        long_word.as_str(),
        "...;;;!!!???",
    ];
    for prompt in prompts {
        let (code, r) = app.post("/api/chat", &json!({ "prompt": prompt })).await;
        assert_eq!(code, 200, "{prompt:?}: {r}");
        let status = r["status"].as_str().expect("status");
        assert!(
            ["completed", "pending_user_input"].contains(&status),
            "{prompt:?}: {r}"
        );
        if status == "pending_user_input" {
            let (code, r) = app
                .answer(&thread_of(&r), "Actually, ẞ never mind: 🌦️")
                .await;
            assert_eq!(code, 200, "{prompt:?}: {r}");
        }
    }
}

#[tokio::test]
async fn errors_axum_writes_itself_are_json_too() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/chat"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert!(body["error"].is_string(), "{body}");
    let (code, body) = app.get("/api/threads/t/checkpoints/latest").await;
    assert_eq!(code, 422, "{body}");
    let response = app
        .client
        .get(app.url("/ws/chat"))
        .send()
        .await
        .expect("sent");
    assert!(response.status().is_client_error());
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert!(body["error"].is_string(), "{body}");
    let (code, body) = app.get("/api/agents/search?min_rating=high").await;
    assert_eq!(code, 422, "{body}");
}

#[tokio::test]
async fn directory_refusals_have_their_status_and_no_thread_id() {
    let app = spawn_app().await;
    // The discover request's protocol is one of two words; anything else is 422 naming the field.
    for protocol in [json!("smtp"), json!("A2A"), json!(7)] {
        let (code, r) = app
            .discover(&json!({"url": "http://127.0.0.1:1", "protocol": protocol}))
            .await;
        assert_eq!(code, 422, "{protocol}: {r}");
        assert!(
            r["error"].as_str().expect("error").contains("protocol"),
            "{protocol}: {r}"
        );
    }
    // null is the default (A2A): the agent is then unreachable, 422.
    let (code, r) = app
        .discover(&json!({"url": "http://127.0.0.1:1", "protocol": null}))
        .await;
    assert_eq!(code, 422, "{r}");
    assert!(r.get("thread_id").is_none(), "{r}");
    let (code, r) = app
        .discover(&json!({"url": "ftp://127.0.0.1:1", "protocol": "mcp"}))
        .await;
    assert_eq!(code, 422, "{r}");
    let (code, r) = app.get("/api/agents/nobody").await;
    assert_eq!(code, 404, "{r}");
    assert_eq!(r["error"], "unknown agent nobody", "{r}");
    assert!(r.get("thread_id").is_none(), "{r}");
}
