//! The conversation API end to end: real server, real SQLite file, demo agents.

use serde_json::{Value, json};

use crate::helpers::{
    assert_completed_by, assert_completed_saying, assert_contains_all, assert_refused, final_text,
    primary_ids, question_text, spawn_app, spawn_app_with, thread_of,
};

#[tokio::test]
async fn a_clear_prompt_completes_in_one_call() {
    let app = spawn_app().await;
    let r = app.chat("Find me a weather agent").await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["requires_user_input"], false);
    assert_eq!(r["question_for_user"], Value::Null);
    assert_eq!(r["error_message"], Value::Null);
    assert_eq!(primary_ids(&r), ["demo.weather"]);
    let pair = &r["task_agent_pairs"][0];
    assert!(pair["task_name"].is_string());
    assert_eq!(pair["task_description"], "Find me a weather agent");
    assert_eq!(pair["primary"]["name"], "Weather");
    assert!(pair["primary"]["skills"][0]["tags"].is_array());
    assert!(pair["fallbacks"].is_array());
    let text = r["final_response"].as_str().expect("final response");
    assert!(text.contains("[demo data] Weather"), "{text}");
}

#[tokio::test]
async fn guidance_asks_then_completes_with_the_answer() {
    let app = spawn_app().await;
    let r = app.chat("Help me analyze data but I need guidance").await;
    assert_eq!(r["status"], "pending_user_input");
    assert_eq!(r["requires_user_input"], true);
    let question = question_text(&r);
    assert!(question.starts_with("What type of data"), "{question}");
    let thread = r["thread_id"].as_str().expect("thread id");

    let (code, s) = app.status_of(thread).await;
    assert_eq!(code, 200);
    assert_eq!(s["status"], "pending_user_input");
    assert_eq!(s["question_for_user"], question);

    let (code, done) = app.answer(thread, "I want to analyze sales data").await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["thread_id"], thread);
    assert_eq!(primary_ids(&done), ["demo.data-analysis"]);
    assert_contains_all(final_text(&done), &["Analysis of sales"]);

    let (_, s) = app.status_of(thread).await;
    assert_eq!(s["status"], "completed");
    assert_eq!(s["final_response"], done["final_response"]);
    assert_eq!(s["question_for_user"], Value::Null);
    assert_eq!(s["task_agent_pairs"], done["task_agent_pairs"]);

    assert_refused(app.answer(thread, "more").await, 409, "not waiting");
}

#[tokio::test]
async fn one_task_per_request() {
    let app = spawn_app().await;
    let r = app
        .chat("What's the weather in Paris and convert 100 USD to EUR")
        .await;
    assert_completed_by(&r, &["demo.weather", "demo.currency"]);
    assert_contains_all(final_text(&r), &["Weather in Paris", "100 USD = ", "EUR"]);
}

#[tokio::test]
async fn nothing_fits_asks_and_names_what_the_directory_can_do() {
    let app = spawn_app().await;
    let done = app
        .ask_and_answer(
            "Book a table for two at a restaurant",
            &[
                "Book a table",
                "Weather",
                "Currency Converter",
                "Translator",
                "News Digest",
            ],
            "Then tell me the weather in Rome",
        )
        .await;
    assert_completed_by(&done, &["demo.weather"]);
    assert_contains_all(final_text(&done), &["Weather in Rome"]);
}

#[tokio::test]
async fn a_thread_gives_up_on_a_task_after_repeated_unanswerable_clarifications() {
    let app = spawn_app().await;
    let r = app.chat("Book a table").await;
    let thread = thread_of(&r);
    let (_, r) = app.answer(&thread, "a restaurant booking").await;
    assert_eq!(r["status"], "pending_user_input", "asks a second time: {r}");
    let (_, r) = app.answer(&thread, "dinner reservation").await;
    assert_completed_saying(&r, &["not done"]);
}

#[tokio::test]
async fn a_missing_required_input_is_asked_for() {
    let app = spawn_app().await;
    let done = app
        .ask_and_answer("convert some money", &["amount"], "250 GBP to JPY")
        .await;
    assert_completed_saying(&done, &["250 GBP = ", "JPY"]);
}

#[tokio::test]
async fn several_questions_in_a_row() {
    let app = spawn_app().await;
    let r = app.chat("Convert some money and translate my notes").await;
    assert_eq!(r["status"], "pending_user_input");
    assert_eq!(r["question_id"], "q1");
    assert_contains_all(question_text(&r), &["amount"]);
    let thread = thread_of(&r);
    let (_, r) = app.answer(&thread, "100 USD to EUR").await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    assert_eq!(r["question_id"], "q2");
    assert_contains_all(question_text(&r), &["language"]);
    let (_, r) = app.answer(&thread, "into Spanish").await;
    // The translator itself asks (A2A input-required), after the converter has answered.
    assert_eq!(r["status"], "pending_user_input", "{r}");
    assert_eq!(r["question_id"], "q3");
    assert!(
        question_text(&r).starts_with("Translator asks: Which text"),
        "{r}"
    );
    let converted = app.state_of(&thread).await["results"]["t1"].clone();
    assert_eq!(
        converted["ok"], true,
        "the converter answered before the translator asked"
    );
    let (_, r) = app.answer(&thread, "Good morning, team").await;
    assert_completed_saying(
        &r,
        &[
            "100 USD = ",
            "Translation into Spanish of \"Good morning, team\"",
        ],
    );
    assert_eq!(
        app.state_of(&thread).await["results"]["t1"],
        converted,
        "the converter was not called again"
    );
}

#[tokio::test]
async fn two_agents_asking_at_once_wait_for_both_answers() {
    let app = spawn_app().await;
    let r = app
        .chat("Translate my notes into French and translate my letter into German")
        .await;
    assert_eq!(r["status"], "pending_user_input", "{r}");
    let pending = r["pending_questions"].as_array().expect("pending").clone();
    assert_eq!(pending.len(), 2, "{r}");
    assert_eq!(
        r["question_id"], pending[0]["question_id"],
        "question_for_user is the oldest"
    );
    let thread = thread_of(&r);
    // Answer the second question first, by id: the thread keeps waiting for the other.
    let german = pending
        .iter()
        .find(|q| q["question"].as_str().is_some_and(|t| t.contains("German")))
        .expect("german question");
    let (code, r) = app
        .answer_question(&thread, "Dear Sir", &german["question_id"])
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["status"], "pending_user_input");
    assert_eq!(r["pending_questions"].as_array().expect("pending").len(), 1);
    assert_contains_all(question_text(&r), &["French"]);
    let (_, r) = app.answer(&thread, "Meeting at noon").await;
    assert_completed_saying(
        &r,
        &[
            "Translation into French of \"Meeting at noon\"",
            "Translation into German of \"Dear Sir\"",
        ],
    );
}

#[tokio::test]
async fn an_answer_can_redirect_the_request() {
    let app = spawn_app().await;
    let r = app.chat("Help me analyze data but I need guidance").await;
    let (_, done) = app
        .answer(
            &thread_of(&r),
            "Actually, what's the latest news about robotics?",
        )
        .await;
    assert_completed_by(&done, &["demo.news"]);
    assert_contains_all(final_text(&done), &["robotics"]);
}

#[tokio::test]
async fn max_results_bounds_the_ranked_agents_shown() {
    let app = spawn_app().await;
    for max in [1_usize, 2, 5] {
        let (code, r) = app
            .post(
                "/api/chat",
                &json!({"prompt": "What's the weather in Oslo", "max_results": max}),
            )
            .await;
        assert_eq!(code, 200);
        for pair in r["task_agent_pairs"].as_array().expect("pairs") {
            let shown = 1 + pair["fallbacks"].as_array().expect("fallbacks").len();
            assert!(shown <= max, "{shown} agents shown with max_results {max}");
        }
        if max >= 2 {
            assert_eq!(
                r["task_agent_pairs"][0]["fallbacks"][0]["id"],
                "demo.climate"
            );
        }
    }
}

#[tokio::test]
async fn tasks_that_consume_output_run_after_their_source() {
    let app = spawn_app().await;
    let r = app
        .chat("Get the latest news about AI and then summarize it")
        .await;
    assert_completed_by(&r, &["demo.news", "demo.summarization"]);
    let state = app.state_of(&thread_of(&r)).await;
    assert_eq!(state["plan"], json!([["t1"], ["t2"]]));
    let summary = state["results"]["t2"]["output"].as_str().expect("summary");
    assert!(
        summary.contains("Top headlines on AI"),
        "summarizer got the news: {summary}"
    );
}

#[tokio::test]
async fn threads_are_isolated() {
    let app = spawn_app().await;
    let a = app.chat("Help me analyze data but I need guidance").await;
    let b = app.chat("convert some money").await;
    let (ta, tb) = (thread_of(&a), thread_of(&b));
    assert_ne!(ta, tb);
    let (_, done) = app.answer(&ta, "sales data").await;
    assert_eq!(done["status"], "completed");
    let (_, sb) = app.status_of(&tb).await;
    assert_eq!(sb["status"], "pending_user_input");
    assert_eq!(sb["question_for_user"], b["question_for_user"]);
    let (_, done_b) = app.answer(&tb, "10 EUR to USD").await;
    assert_eq!(done_b["status"], "completed");
    assert!(!final_text(&done_b).contains("Analysis"), "{done_b}");
}

#[tokio::test]
async fn a_client_thread_id_names_the_thread_and_later_prompts_are_new_turns() {
    let app = spawn_app().await;
    let id = "client-chosen.thread:1";
    let (code, r) = app.chat_in(id, "What's the weather in Lisbon").await;
    assert_eq!(code, 200);
    assert_eq!(r["thread_id"], id);
    assert_eq!(r["status"], "completed");

    // A new turn: the city comes from the earlier turn.
    let (code, r) = app.chat_in(id, "and the climate averages?").await;
    assert_eq!(code, 200, "{r}");
    assert_completed_saying(&r, &["Climate in Lisbon"]);

    // A turn that waits for an answer blocks new prompts on the thread.
    let (_, r) = app.chat_in(id, "convert money").await;
    assert_eq!(r["status"], "pending_user_input");
    assert_refused(app.chat_in(id, "weather").await, 409, "pending_user_input");
}

#[tokio::test]
async fn health_and_directory_listing() {
    let app = spawn_app().await;
    let (code, body) = app.get("/api/health").await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "ok");
    let (code, agents) = app.get("/api/agents").await;
    assert_eq!(code, 200);
    let ids: Vec<&str> = agents
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    for id in [
        "demo.weather",
        "demo.currency",
        "demo.data-analysis",
        "demo.news",
        "demo.translation",
        "demo.summarization",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let (code, card) = app.get("/api/agents/demo.weather").await;
    assert_eq!(code, 200);
    assert!(card["rating"].as_f64().expect("rating") > 0.0);
    assert!(card["price_per_call_usd"].is_number());
}

#[tokio::test]
async fn without_demo_agents_nothing_fits() {
    let app = spawn_app_with(|s| s.no_demo_agents = true).await;
    let r = app.chat("What's the weather in Paris").await;
    assert_eq!(r["status"], "pending_user_input");
    assert_contains_all(question_text(&r), &["directory is empty"]);
}
